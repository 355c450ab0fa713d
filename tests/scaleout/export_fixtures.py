"""A small GPT whose every parameter differs from its initial value, saved as an sft-sweep checkpoint.

At initialisation LayerNorm weights are 1 and biases 0, so a mapping that swapped or dropped them
would go unnoticed; these weights make every parameter matter to the logits.
"""

from pathlib import Path

import numpy as np

from sft_sweep.data.conversation import Conversation, Turn
from sft_sweep.nn import GPT, GPTConfig, save_checkpoint

SHAPE = dict(n_layer=2, n_head=4, n_embd=32, n_mlp=80, block_size=96)

CONVERSATIONS = [
    [Turn("user", "What is the capital of Varnia?"), Turn("assistant", "Ostrel.")],
    [Turn("system", "Answer in one word."), Turn("user", "Colour of the sky?"),
     Turn("assistant", "Blue"), Turn("user", "And grass, ünïcode ✓?"), Turn("assistant", "Green")],
    [Turn("user", "Look it up"), Turn("assistant", "calling the tool"), Turn("tool", "42"),
     Turn("assistant", "It is 42.")],
]


def perturbed_model(seed: int = 0) -> GPT:
    model = GPT(GPTConfig(**SHAPE), seed=seed)
    rng = np.random.default_rng(seed + 1)
    for name, p in model.params.items():
        if p.ndim == 1:  # LayerNorm weights around 1, every bias away from 0
            centre = 1.0 if name.endswith((".w", "lnf.w")) else 0.0
            p[...] = centre + rng.normal(0.0, 0.2, size=p.shape)
        else:
            p[...] = rng.normal(0.0, 0.15, size=p.shape)
    return model


def saved_model(tmp_path: Path, seed: int = 0) -> tuple[GPT, Path]:
    model = perturbed_model(seed)
    path = tmp_path / "model.npz"
    save_checkpoint(path, model)
    return model, path


def conversations() -> list[Conversation]:
    return [Conversation(turns) for turns in CONVERSATIONS]


def messages(conv: Conversation) -> list[dict]:
    return [{"role": t.role, "content": t.content} for t in conv.turns]
