"""Numpy GPT: layers as forward/backward pairs, the model, AdamW + schedules, generation,
checkpoints.

Public API (other parts of sft-sweep code against these names):

``GPTConfig(n_layer, n_head, n_embd, n_mlp, block_size, init_std, vocab_size, dtype)``
    the shape (``config.ModelShape``, shared with the job config) plus vocabulary and dtype,
    validated in ``__post_init__`` (``ConfigError``); dtype ``"float32"`` or ``"float64"``.
``GPT(config, seed=0, threads=1)``
    ``params`` (name -> view into the flat buffer ``flat_params``), ``num_params``,
    ``set_threads(n)``, ``loss_and_grads(ids, targets, mask, segment_ids=None,
    normalizer=None, positions=None) -> (float, grads)``,
    ``logits(ids, segment_ids=None, positions=None)`` (B, T, V),
    ``token_nll(ids, targets, segment_ids=None, positions=None)`` (B, T).
    Returned gradients live in a fresh buffer per call: the caller owns them.
    ``threads`` Python workers split the batch, one BLAS thread each. Not re-entrant:
    use one model from one thread at a time.
    Architecture: token + position embeddings, pre-LN blocks (fused-QKV causal attention,
    GELU MLP with the tanh approximation), final LN, head tied to the token embedding.
``reference.logits(params, config, ids, segment_ids=None, positions=None)``
    the same model written plainly (forward only): where to read how it works.
``AdamW(params, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0, decay_embeddings=False,
grad_clip=1.0)``
    ``step(grads, lr) -> grad norm before clipping``, ``state_dict()``,
    ``load_state_dict(d)``, ``t``.
``lr_at(step, total_steps, peak_lr, schedule, warmup_steps=0, min_lr=0.0)``
``generate(model, prompts, max_new_tokens, *, stop_ids=(), temperature=0.0, top_k=0,
top_p=1.0, rng=None, use_cache=True) -> list of new tokens per prompt``
``save_checkpoint(path, model, optimizer=None, step=0, rng_state=None, extra=None)``,
``load_checkpoint(path, model, optimizer=None) -> {"step", "rng_state", "extra"}``,
``read_checkpoint_config(path) -> GPTConfig``.
"""

from .checkpoint import load_checkpoint, read_checkpoint_config, save_checkpoint
from .generate import generate
from .gpt import GPT, GPTConfig
from .optim import AdamW, lr_at

__all__ = [
    "GPT", "GPTConfig", "AdamW", "lr_at", "generate", "save_checkpoint", "load_checkpoint",
    "read_checkpoint_config",
]
