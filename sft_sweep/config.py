"""Structured configs: the schema every composed Hydra config must fit.

Registered in Hydra's ConfigStore as ``sft_sweep_schema``; ``conf/config.yaml`` lists it first in
its defaults, so group files (``conf/model/mini.yaml`` ...) merge into typed nodes. A misspelt key
or a value of the wrong type therefore fails at composition time, before any work starts.
Value checks that types cannot express (lr > 0, heads divide width, ...) live in ``validate``.

Every default lives here and only here: a file of ``conf/`` states just what its option changes,
so ``Config()`` in code and a Hydra run without overrides are the same configuration.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import MISSING, DictConfig, OmegaConf, open_dict
from omegaconf.errors import MissingMandatoryValue, ValidationError

from .bpe import MIN_VOCAB
from .data.examples import LENGTH_POLICIES
from .data.loss_weights import LOSS_NORMS
from .data.quality import QualityConfig
from .data.templates import MASK_MODES, TEMPLATE_NAMES
from .data.world import WorldConfig
from .dirnames import register_resolver, sweep_dir_of  # noqa: F401 - sweep_dir_of: read through the schema by analysis
from .errors import ConfigError
from .jobfiles import flatten
from .nn.config import ModelShape
from .nn.optim import SCHEDULES
from .setting import Setting, SettingIndex, group, setting
from .tokenizer import model_vocab_size

#: Where a job's instruction data comes from (``data.source``).
DATA_SOURCES = ("world", "files")
#: The parts of summary.json an objective (``eval.objective``) may point into.
OBJECTIVE_ROOTS = ("final", "base", "forgetting_pct")
#: What trains in SFT (``peft.method``): every weight, low-rank adapters, or the last (first) blocks.
PEFT_METHODS = ("full", "lora", "freeze")
#: The linear layers LoRA may adapt (``peft.targets``), named as in the model's parameters.
LORA_TARGETS = ("attn.qkv", "attn.proj", "mlp.fc", "mlp.proj")

# Descriptions shared by several settings, and of the fields of groups defined below the schema.
LEARNING_RATE = dict(role="lr", label="learning rate", short="lr", show="sci", log=True,
                     colors=("viridis", 0.0, 0.85))
SEED = dict(role="seed", label="seed", short="seed", colors=("Greys", 0.4, 0.9))
MODEL_SETTINGS = {"n_layer": Setting(headline=13), "n_embd": Setting(headline=14),
                  "block_size": Setting(headline=15)}
WORLD_SETTINGS = {
    "seed": Setting(**SEED),
    "train_subset": Setting(off=0, role="data_size"),
    "low_quality_fraction": Setting(role="noise"),
    "multi_turn_fraction": Setting(role="multi_turn"),
    "system_fraction": Setting(role="system_prompts"),
    "long_prompt_fraction": Setting(role="long_prompts"),
    "n_train": Setting(role="train_conversations"),
    "n_eval": Setting(role="eval_questions"),
    "n_eval_multi_turn": Setting(off=0, role="multi_turn_questions"),
    "system_contrast": Setting(off=False),
    "n_eval_system": Setting(off=0),
    "caps_doc_fraction": Setting(off=0.0),
}


@dataclass
class ModelConf(ModelShape):
    """The model's shape (declared once, in ``ModelShape``) and a name for reports."""

    name: str = setting("mini", role="model", label="model", short="model", colors="Dark2", base=False,
                        headline=1, apart=4)


@dataclass
class DatasetConf:
    """One instruction-data file (used when ``data.source`` is ``files``)."""

    path: str = MISSING
    format: str = setting("auto", role="format", label="data format", short="format",
                          colors="Set2")  # auto | alpaca | sharegpt | messages | chatml
    role_map: dict[str, str] = field(default_factory=dict)
    on_bad_record: str = "error"  # error | skip
    # Train on at most this many of the file's training conversations (0: all): a seeded subset,
    # nested across sizes (the 50 are among the 100); the held-out split is taken first, unchanged.
    max_examples: int = setting(0, off=0)


def _text_paths(value: Any) -> Any:
    """``data.pretrain_text`` as given when it is null or one path (so a single-file config, its
    hash included, stays what it was), else a list of non-empty path strings."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) or OmegaConf.is_list(value):
        paths = list(value)
        for i, p in enumerate(paths):
            if not isinstance(p, str) or not p:
                raise ConfigError(f"data.pretrain_text[{i}] must be a file path, got {p!r}")
        if not paths:
            raise ConfigError("data.pretrain_text is an empty list; give a file, a list of files, or null")
        return paths
    raise ConfigError(f"data.pretrain_text must be a file path or a list of file paths, got {value!r}")


@dataclass
class DataConf:
    name: str = setting("world", headline=2, apart=1)
    source: str = setting("world", headline=3, apart=2)  # world: the built-in synthetic world | files: datasets below
    # Settings of the synthetic world (source=world), e.g. data.world.n_countries=60.
    world: WorldConfig = group(WorldConfig, fields=WORLD_SETTINGS)
    # name -> DatasetConf fields. Untyped in the schema so that a new dataset can be added from the
    # command line (+data.datasets.NAME.path=...); __post_init__ checks and converts each entry.
    datasets: dict[str, Any] = setting(factory=dict, entries=DatasetConf)
    # Raw text (.txt / .jsonl with "text") for pre-training, replay and the forgetting metric when
    # source=files: one file, or a list of files read in order as one text
    # (data.pretrain_text=[c4.jsonl,wiki.txt]); null uses the synthetic world's prose. Typed Any
    # because the schema cannot say "a string or a list of strings"; __post_init__ checks it.
    pretrain_text: Any = None
    val_fraction: float = 0.05  # files: share of conversations held out for evaluation
    # The largest data file read (datasets and pretrain_text), in MiB: a bigger one is refused
    # before it is read. Only regular files are read at all (no FIFO, device or socket).
    max_file_mb: float = setting(256.0, hashed=False)
    quality: QualityConfig = group(QualityConfig)

    def __post_init__(self) -> None:
        self.pretrain_text = _text_paths(self.pretrain_text)
        known = list(DatasetConf.__dataclass_fields__)
        converted: dict[str, DatasetConf] = {}
        for name, d in self.datasets.items():
            if isinstance(d, DatasetConf):
                converted[name] = d
                continue
            if not isinstance(d, dict):
                raise ConfigError(f"data.datasets.{name} must be a mapping with keys {known}, got {d!r}")
            unknown = sorted(set(d) - set(known))
            if unknown:
                raise ConfigError(f"data.datasets.{name}: unknown key(s) {unknown}; known: {known}")
            if not isinstance(d.get("path"), str) or not d.get("path"):
                raise ConfigError(f"data.datasets.{name}.path is required (data.datasets.{name}.path=FILE)")
            converted[name] = DatasetConf(**d)
        self.datasets = converted


#: The tokenizers of the ``tokenizer`` group (``tokenizer.name``).
TOKENIZER_NAMES = ("bytes", "bpe")


@dataclass
class TokenizerConf:
    """How text becomes token ids. ``bytes``: one id per UTF-8 byte (260 ids with the special
    tokens). ``bpe``: a byte-level BPE of ``vocab_size`` ids (special tokens included) trained on
    the job's pre-training text and cached in ``pretrain.cache_dir`` (sft_sweep/bpe.py);
    ``vocab_size`` is read only for ``bpe``. The model's vocabulary follows the tokenizer."""

    # the byte tokenizer, which every earlier job used: absent from hashes, and with it the size
    name: str = setting("bytes", off="bytes", role="tokenizer", label="tokenizer", short="tokenizer",
                        colors="Set2")
    vocab_size: int = setting(1024, only_when=("name", "bpe"), role="vocab", label="vocabulary size", short="vocab",
                              log=True)


@dataclass
class TemplateConf:
    name: str = setting("chatml", role="template", label="chat template", short="template", colors="tab10",
                        headline=4, apart=5)  # chatml | alpaca | plain
    mask: str = setting("assistant", role="mask")  # assistant | last | all


@dataclass
class OptimConf:
    lr: float = setting(3e-4, **LEARNING_RATE, headline=5)
    schedule: str = setting("cosine", headline=6)  # constant | linear | cosine
    warmup_steps: int = 10
    min_lr_ratio: float = 0.1  # the schedule decays to lr * min_lr_ratio
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0  # global-norm clipping; 0 disables
    # A decoupled pull toward the weights SFT started from: after each update
    # theta -= lr * l2_to_base * (theta - theta_start), for every trained parameter. 0: off.
    l2_to_base: float = setting(0.0, off=0.0, role="pull", label="pull toward the base (L2)", short="l2 to base")


@dataclass
class MixConf:
    # The fraction of training sequences that are raw pre-training windows.
    replay_ratio: float = setting(0.0, role="replay", label="replay ratio", short="replay", show="percent",
                                  colors=("Greens", 0.45, 0.95), headline=10)
    weights: dict[str, float] = field(default_factory=dict)  # per dataset name (source=files)


@dataclass
class PeftConf:
    """What SFT trains. ``full``: every weight. ``lora``: a low-rank change ``scale * A @ B`` of each
    target matrix, the base weights frozen (A drawn as PEFT draws it, B = 0, so step 0 is the base
    exactly; scale = alpha / rank, or alpha / sqrt(rank) with rslora). ``freeze``: only the last
    ``trainable_layers`` blocks and the final LayerNorm train (negative: the first n blocks)."""

    method: str = setting("full", off="full", role="method", label="fine-tuning method", short="method",
                          colors="Set1")  # full | lora | freeze
    rank: int = setting(8, only_when=("method", "lora"), role="rank", label="LoRA rank", short="rank", log=True)
    alpha: float = setting(16.0, only_when=("method", "lora"), label="LoRA alpha", short="alpha")
    rslora: bool = setting(False, only_when=("method", "lora"), label="rank-stabilised LoRA", short="rslora")
    targets: list[str] = setting(factory=lambda: list(LORA_TARGETS), only_when=("method", "lora"),
                                 role="lora_targets", label="LoRA targets", short="targets", show="list")
    trainable_layers: int = setting(2, only_when=("method", "freeze"), role="trainable_blocks",
                                    label="trainable blocks", short="blocks")
    train_embeddings: bool = setting(False, only_when=("method", "freeze"), role="train_embeddings",
                                     label="embeddings trained", short="embeddings")


@dataclass
class TrainConf:
    epochs: int = setting(2, role="epochs", label="epochs", noun="number of epochs", short="epochs",
                          colors=("Blues", 0.45, 0.95), headline=7)
    batch_size: int = setting(16, headline=9)
    grad_accum: int = 1
    max_steps: int = setting(0, headline=8)  # 0: as many as the epochs give
    truncation: str = "truncate"  # truncate | drop
    pack: bool = False
    # How the loss weighs trained tokens: tokens (each the same) | sequence (each sequence the
    # same) | length (each token 1 / its sequence's length); see sft_sweep/data/loss_weights.py
    loss_norm: str = setting("tokens", role="loss_norm")
    eval_interval: int = 50
    log_interval: int = setting(10, hashed=False)
    checkpoint_interval: int = setting(50, hashed=False)
    seed: int = setting(0, **SEED, headline=11)
    threads: int = setting(0, hashed=False, machine=True)  # compute threads for this job; 0: all cores
    # A job diverged (and fails with reason "diverged") when a training loss, or an evaluation
    # loss, exceeds diverge_factor * ln(vocab_size): that many times the loss of a uniform guess.
    # NaN / inf always count. 0 disables the bound.
    diverge_factor: float = 2.0
    # NEFTune: uniform(-1, 1) * neftune_alpha / sqrt(L * d) added to the input embeddings of every
    # training step (L the padded sequence length, d the width); never at evaluation. 0: off.
    neftune_alpha: float = setting(0.0, off=0.0, role="neftune", label="NEFTune alpha", short="neftune")


@dataclass
class EvalConf:
    max_items: int = setting(100, role="eval_items")  # per evaluation set (held-out answers, knowledge probe)
    max_new_tokens: int = 48
    raw_windows: int = 64  # held-out pre-training windows for the raw-text (forgetting) loss
    n_samples: int = 6  # base vs tuned generations saved to samples.jsonl
    batch_size: int = 32
    # The number a Hydra sweeper optimises; a dotted path into summary.json.
    objective: str = setting("final.answer_mc_acc", hashed=False)
    # Several objectives (multi-objective Optuna search, one direction each): when not empty the job
    # returns this list of values instead of eval.objective's single value.
    objectives: list[str] = setting(factory=list, hashed=False)
    # Decoding controls of the greedy answers (sft_sweep/nn/generate.py), recorded with the
    # metrics: a logit penalty on tokens the answer already produced (1.0: off) and the length of
    # n-grams an answer may not repeat (0: off).
    repetition_penalty: float = setting(1.0, off=1.0)
    no_repeat_ngram: int = setting(0, off=0)
    # Evaluations during training (every train.eval_interval steps) generate and score only this
    # many items of each set, spread evenly and the same every time (0: all of them); their losses
    # use every item. The base's and the final evaluation always use every item.
    # It decides only the evaluations between the base's and the final one: a job that ran before
    # with every item there keeps its hash at the default.
    periodic_items: int = setting(20, off=20)
    # Weight blends evaluated after training: each t gives (1 - t) * base + t * tuned, evaluated
    # like the final model and recorded in summary.json's "blends". Empty: none.
    blend: list[float] = setting(factory=list, off=[], base_eval=False, role="blend", label="blend weights",
                                 short="blend", show="list")


@dataclass
class PretrainConf:
    steps: int = setting(1200, headline=12, role="pretrain_steps")
    batch_size: int = 16
    lr: float = setting(3e-3, **LEARNING_RATE)
    warmup_steps: int = 50
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    # The learning-rate schedule and the global-norm clipping of pre-training (0 disables it); at
    # these values a base model keeps the key it had before they were settings.
    schedule: str = setting("cosine", off="cosine")  # constant | linear | cosine
    grad_clip: float = setting(1.0, off=1.0)
    seed: int = setting(0, **SEED)
    # Relative paths are taken from the directory sft-sweep started in.
    cache_dir: str = setting("runs/cache", hashed=False, machine=True)
    # Compute threads while pre-training; 0: every core (the sweep's other jobs wait).
    threads: int = setting(0, hashed=False, machine=True)
    # A base model checkpoint (model.npz of this package) to fine-tune instead of pre-training one;
    # relative paths are taken from the directory sft-sweep started in. Its shape must match model.*.
    init_from: Optional[str] = setting(None, off=None)
    # Equal pre-training wall time across tokenizers: the measured cost of one pre-training step of
    # a model with this many ids (the model's vocabulary: 260 for bytes, tokenizer.vocab_size for
    # bpe), relative to the step that pretrain.steps counts (1.0). When the job's vocabulary is
    # listed, its base pre-trains round(pretrain.steps / cost) steps (pretrain_steps), so every
    # listed tokenizer gets the time of pretrain.steps reference steps. A fixed table, written with
    # the measurement that chose it (conf/experiment/tokenizers.yaml), keeps each base reproducible:
    # the base's cache key holds the steps it trained, never the table. Empty: pretrain.steps.
    step_cost: dict[int, float] = setting(factory=dict, off={}, base=False, role="step_cost")


@dataclass
class TensorBoardConf:
    log_dir: str = "tensorboard"  # inside the job directory


@dataclass
class MlflowConf:
    # A local SQLite store (a path ending in .db; a relative path is taken from the directory
    # sft-sweep started in), a file-store directory, or any tracking URI: http://host:5000, databricks ...
    tracking_uri: str = "runs/mlflow.db"
    experiment_name: Optional[str] = None  # None: the config's name
    log_model: bool = True  # model.npz as an artifact of the run


@dataclass
class LoggerConf:
    """Experiment trackers beside the job's own files (metrics.jsonl, summary.json: always written)."""

    tensorboard: Optional[TensorBoardConf] = None
    mlflow: Optional[MlflowConf] = None


@dataclass
class Config:
    name: str = "default"  # experiment name: names the sweep directory
    # The model's shape and the pre-training settings make the base model (with the tokenizer's
    # merges, part of the text's digest); the data, tokenizer, template, eval and model groups decide what the base model's evaluation measures.
    model: ModelConf = group(ModelConf, base=True, base_eval=True, fields=MODEL_SETTINGS)
    data: DataConf = group(DataConf, base_eval=True)
    tokenizer: TokenizerConf = group(TokenizerConf, base_eval=True)
    template: TemplateConf = group(TemplateConf, base_eval=True)
    optim: OptimConf = group(OptimConf)
    peft: PeftConf = group(PeftConf)
    mix: MixConf = group(MixConf)
    train: TrainConf = group(TrainConf)
    eval: EvalConf = group(EvalConf, base_eval=True)
    pretrain: PretrainConf = group(PretrainConf, base=True)
    # Experiment trackers copy what a job computes elsewhere.
    logger: LoggerConf = group(LoggerConf, hashed=False)


# conf/config.yaml names sweep job directories with this resolver; every process that runs a
# job imports this module (the CLI, joblib and submitit workers) before Hydra resolves the name.
register_resolver()


def register_configs() -> None:
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="sft_sweep_schema", node=Config)


def _check(ok: bool, key: str, value: Any, rule: str, problems: list[str]) -> None:
    if not ok:
        problems.append(f"{key}={value!r}: {rule}")


def _check_choice(key: str, value: Any, choices: tuple[str, ...], problems: list[str]) -> None:
    _check(value in choices, key, value, "must be " + ", ".join(choices[:-1]) + f" or {choices[-1]}", problems)


def _non_finite(node: Any, prefix: str, problems: list[str]) -> None:
    """Every float setting (in dataclasses and dicts, at any depth) must be a finite number: no
    setting here gives inf or NaN a meaning, and they would only fail later, mid-work."""
    if dataclasses.is_dataclass(node):
        items = [(f.name, getattr(node, f.name)) for f in dataclasses.fields(node)]
    elif isinstance(node, dict):
        items = list(node.items())
    else:
        return
    for name, value in items:
        key = f"{prefix}.{name}" if prefix else str(name)
        if isinstance(value, float) and not math.isfinite(value):
            problems.append(f"{key}={value!r}: must be a finite number")
        else:
            _non_finite(value, key, problems)


def validate(cfg: Config) -> None:
    """Raise ConfigError listing every value that breaks a rule."""
    p: list[str] = []
    _non_finite(cfg, "", p)
    # the name is a directory's name below runs/ (hydra.run.dir, hydra.sweep.dir), never a path
    _check(cfg.name not in ("", ".", "..") and "/" not in cfg.name and "\0" not in cfg.name, "name", cfg.name,
           "must be a name, not a path (no '/'; not '.' or '..')", p)
    m = cfg.model
    for k in ("n_layer", "n_head", "n_embd", "n_mlp", "block_size"):
        _check(getattr(m, k) >= 1, f"model.{k}", getattr(m, k), "must be >= 1", p)
    _check(m.n_head >= 1 and m.n_embd % max(m.n_head, 1) == 0, "model.n_head", m.n_head,
           f"must divide model.n_embd={m.n_embd}", p)
    _check(m.init_std > 0, "model.init_std", m.init_std, "must be > 0", p)
    _check_choice("data.source", cfg.data.source, DATA_SOURCES, p)
    if cfg.data.source == "world":
        try:
            cfg.data.world.validate()
        except ConfigError as e:
            p.append(f"data.{e}")
    if cfg.data.source == "files":
        _check(len(cfg.data.datasets) > 0, "data.datasets", dict(cfg.data.datasets),
               "source=files needs at least one dataset (data.datasets.NAME.path=...)", p)
    _check(cfg.data.max_file_mb > 0, "data.max_file_mb", cfg.data.max_file_mb, "must be > 0 (MiB)", p)
    _check(0.0 < cfg.data.val_fraction < 1.0, "data.val_fraction", cfg.data.val_fraction, "must be in (0, 1)", p)
    _check_choice("tokenizer.name", cfg.tokenizer.name, TOKENIZER_NAMES, p)
    if cfg.tokenizer.name == "bpe":
        _check(cfg.tokenizer.vocab_size >= MIN_VOCAB, "tokenizer.vocab_size", cfg.tokenizer.vocab_size,
               f"must be >= {MIN_VOCAB} (256 bytes, at least one merge, the special tokens)", p)
    _check_choice("template.name", cfg.template.name, TEMPLATE_NAMES, p)
    _check_choice("template.mask", cfg.template.mask, MASK_MODES, p)
    o = cfg.optim
    _check(o.lr > 0, "optim.lr", o.lr, "must be > 0", p)
    _check_choice("optim.schedule", o.schedule, SCHEDULES, p)
    _check(o.warmup_steps >= 0, "optim.warmup_steps", o.warmup_steps, "must be >= 0", p)
    _check(0.0 <= o.min_lr_ratio <= 1.0, "optim.min_lr_ratio", o.min_lr_ratio, "must be in [0, 1]", p)
    _check(o.weight_decay >= 0, "optim.weight_decay", o.weight_decay, "must be >= 0", p)
    _check(0.0 <= o.beta1 < 1.0 and 0.0 <= o.beta2 < 1.0, "optim.beta1/beta2", (o.beta1, o.beta2),
           "must be in [0, 1)", p)
    _check(o.grad_clip >= 0, "optim.grad_clip", o.grad_clip, "must be >= 0 (0 disables clipping)", p)
    _check(o.eps > 0, "optim.eps", o.eps, "must be > 0", p)
    _check(o.l2_to_base >= 0, "optim.l2_to_base", o.l2_to_base, "must be >= 0 (0: off)", p)
    pe = cfg.peft
    _check_choice("peft.method", pe.method, PEFT_METHODS, p)
    if pe.method == "lora":
        _check(pe.rank >= 1, "peft.rank", pe.rank, "must be >= 1", p)
        _check(pe.alpha > 0, "peft.alpha", pe.alpha, "must be > 0", p)
        _check(len(pe.targets) > 0 and all(t in LORA_TARGETS for t in pe.targets) and
               len(set(pe.targets)) == len(pe.targets), "peft.targets", list(pe.targets),
               "must list distinct names among " + ", ".join(LORA_TARGETS), p)
    if pe.method == "freeze":
        n = cfg.model.n_layer
        _check(pe.trainable_layers != 0 and abs(pe.trainable_layers) <= n, "peft.trainable_layers",
               pe.trainable_layers, f"must be 1..{n} (the last n blocks) or -1..-{n} (the first n)", p)
    _check(0.0 <= cfg.mix.replay_ratio < 1.0, "mix.replay_ratio", cfg.mix.replay_ratio, "must be in [0, 1)", p)
    for name, w in cfg.mix.weights.items():
        _check(w > 0, f"mix.weights.{name}", w, "must be > 0", p)
        if cfg.data.source == "files":
            _check(name in cfg.data.datasets, f"mix.weights.{name}", w, "names no dataset in data.datasets", p)
    t = cfg.train
    _check(t.epochs >= 1, "train.epochs", t.epochs, "must be >= 1", p)
    _check(t.batch_size >= 1, "train.batch_size", t.batch_size, "must be >= 1", p)
    _check(t.grad_accum >= 1, "train.grad_accum", t.grad_accum, "must be >= 1", p)
    _check(t.max_steps >= 0, "train.max_steps", t.max_steps, "must be >= 0 (0: no limit)", p)
    _check_choice("train.truncation", t.truncation, LENGTH_POLICIES, p)
    _check_choice("train.loss_norm", t.loss_norm, LOSS_NORMS, p)
    for k in ("eval_interval", "log_interval", "checkpoint_interval"):
        _check(getattr(t, k) >= 1, f"train.{k}", getattr(t, k), "must be >= 1", p)
    _check(0 <= t.seed < 2**32, "train.seed", t.seed, "must be in [0, 2**32)", p)
    _check(t.threads >= 0, "train.threads", t.threads, "must be >= 0 (0: all cores)", p)
    _check(t.diverge_factor >= 0, "train.diverge_factor", t.diverge_factor,
           "must be >= 0 (a multiple of ln(vocab_size); 0 disables the divergence bound)", p)
    _check(t.neftune_alpha >= 0, "train.neftune_alpha", t.neftune_alpha, "must be >= 0 (0: off)", p)
    e = cfg.eval
    for k in ("max_items", "max_new_tokens", "raw_windows", "batch_size"):
        _check(getattr(e, k) >= 1, f"eval.{k}", getattr(e, k), "must be >= 1", p)
    _check(e.n_samples >= 0, "eval.n_samples", e.n_samples, "must be >= 0", p)
    _check(e.repetition_penalty > 0, "eval.repetition_penalty", e.repetition_penalty, "must be > 0 (1.0: off)", p)
    _check(e.no_repeat_ngram >= 0, "eval.no_repeat_ngram", e.no_repeat_ngram, "must be >= 0 (0: off)", p)
    _check(e.periodic_items >= 0, "eval.periodic_items", e.periodic_items, "must be >= 0 (0: every item)", p)
    _check(all(0.0 <= t <= 1.0 for t in e.blend) and len(set(e.blend)) == len(e.blend), "eval.blend",
           list(e.blend), "must list distinct weights t in [0, 1] ((1 - t) * base + t * tuned)", p)
    named = [("eval.objective", e.objective)] + [(f"eval.objectives[{i}]", o) for i, o in enumerate(e.objectives)]
    for key, obj in named:
        _check(obj.split(".")[0] in OBJECTIVE_ROOTS, key, obj,
               "must be final.<metric>, base.<metric> or forgetting_pct", p)
    pt = cfg.pretrain
    _check(pt.steps >= 0, "pretrain.steps", pt.steps, "must be >= 0", p)
    _check(pt.batch_size >= 1, "pretrain.batch_size", pt.batch_size, "must be >= 1", p)
    _check(pt.lr > 0, "pretrain.lr", pt.lr, "must be > 0", p)
    _check_choice("pretrain.schedule", pt.schedule, SCHEDULES, p)
    _check(pt.grad_clip >= 0, "pretrain.grad_clip", pt.grad_clip, "must be >= 0 (0 disables clipping)", p)
    _check(0 <= pt.seed < 2**32, "pretrain.seed", pt.seed, "must be in [0, 2**32)", p)
    _check(pt.threads >= 0, "pretrain.threads", pt.threads, "must be >= 0 (0: all cores)", p)
    _check(all(c > 0 for c in pt.step_cost.values()), "pretrain.step_cost", dict(pt.step_cost),
           "every cost must be > 0 (a step's time relative to the reference step)", p)
    if pt.step_cost and not p:
        vocab = model_vocab_size(cfg.tokenizer)
        _check(vocab in pt.step_cost, "pretrain.step_cost", dict(pt.step_cost),
               f"lists no cost for this job's vocabulary ({vocab} ids); add {vocab}: <cost>", p)
    if p:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(p))


def pretrain_steps(cfg: Config) -> int:
    """The steps the job's base pre-trains: ``pretrain.steps``, or with ``pretrain.step_cost``
    that many reference steps' time at this vocabulary's cost (at least 1 when steps > 0)."""
    steps = cfg.pretrain.steps
    if not cfg.pretrain.step_cost or steps == 0:
        return steps
    cost = cfg.pretrain.step_cost[model_vocab_size(cfg.tokenizer)]
    return max(1, round(steps / cost))


def to_object(cfg: DictConfig) -> Config:
    """The typed Config of a composed DictConfig (interpolations resolved, Hydra's node dropped)."""
    if "hydra" in cfg:
        cfg = cfg.copy()
        with open_dict(cfg):
            del cfg["hydra"]
    try:
        obj = OmegaConf.to_object(cfg)
    except MissingMandatoryValue as e:
        raise ConfigError(f"{e.full_key} is required (set it with {e.full_key}=...)") from None
    except ValidationError as e:  # raised by a dataclass __post_init__, wrapped by OmegaConf
        cause = e.__cause__ if isinstance(e.__cause__, ConfigError) else None
        raise (cause or ConfigError(str(e))) from None
    if not isinstance(obj, Config):  # composed without the schema (e.g. a bare yaml)
        obj = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Config), cfg))
    return obj  # type: ignore[return-value]


def config_dict(cfg: DictConfig) -> dict[str, Any]:
    """The job config as plain containers, without Hydra's own node."""
    d = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(d, dict)
    d.pop("hydra", None)
    return d


def stable_hash(obj: Any, n: int = 16) -> str:
    """Content hash of a JSON-able object (key order does not matter)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:n]


# The one rule for every cache key (the job's config hash, the base model's key, the base
# evaluation's key) reads the settings' descriptions (``sft_sweep.setting``):
# - settings that change where or how fast a job runs, or what it reports to a sweeper, but not
#   what it computes, are not hashed: re-running a sweep with more threads still skips its
#   finished jobs and reuses its base model;
# - options added later count only when they differ from their "off" value (None: when set), so
#   that earlier jobs keep their hashes and bases their keys;
# - options that mean something only under another setting's value count only then: a full
#   fine-tuning job's hash is that of a config with no peft group at all.
SETTINGS = SettingIndex(Config)

NON_SEMANTIC_GROUPS = tuple(k for k, g in SETTINGS.groups.items() if "." not in k and g.hashed is False)
NON_SEMANTIC_KEYS = tuple(k for k in SETTINGS.keys(hashed=False) if k.split(".")[0] not in NON_SEMANTIC_GROUPS)
UNSET_IS_ABSENT = tuple(k for k, s in SETTINGS.settings.items() if s.is_off_value and s.off is None)
OFF_IS_ABSENT = {k: s.off for k, s in SETTINGS.settings.items()
                 if s.is_off_value and s.off is not None and SETTINGS.WILDCARD not in k}
ONLY_WHEN = {k: (f"{k.rpartition('.')[0]}.{s.only_when[0]}", s.only_when[1])
             for k, s in SETTINGS.settings.items() if s.only_when}


def _counts(key: str, value: Any, values: dict[str, Any], prefix: str) -> bool:
    rules = SETTINGS.rules(key)
    if rules.only_when:
        sibling, needed = rules.only_when
        if values.get(f"{key.rpartition('.')[0]}.{sibling}".removeprefix(prefix)) != needed:
            return False
    if not rules.hashed:
        return False
    return not (rules.is_off_value and value == rules.off)


def semantic(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``values`` (dotted keys below ``prefix``) without what no hash counts: settings that are not
    hashed, settings at their "off" value, and settings whose condition (``only_when``) fails."""
    return {k: v for k, v in values.items() if _counts(f"{prefix}{k}", v, values, prefix)}


def config_hash(cfg_dict: dict[str, Any]) -> str:
    return stable_hash(semantic(flatten(cfg_dict)))


# The groups that decide what a base model's evaluation measures, and the settings of those
# groups that concern only the tuned model.
BASE_EVAL_GROUPS = tuple(k for k, g in SETTINGS.groups.items() if "." not in k and g.base_eval)
NOT_BASE_EVAL_KEYS = tuple(k for k, s in SETTINGS.settings.items()
                           if k.split(".")[0] in BASE_EVAL_GROUPS and not s.base_eval)


def base_eval_key(cfg_dict: dict[str, Any]) -> str:
    """Key of a base model's cached evaluation (the model's own key names the base). On files
    (``data.source=files``) the held-out split is drawn with ``train.seed`` (data.prepare), so the
    seed decides which conversations the base is evaluated on and is part of the key there; the
    world's held-out items do not move with it, and its keys stay as they were."""
    flat = semantic(flatten(cfg_dict))
    picked = {k: v for k, v in flat.items() if SETTINGS.rules(k).base_eval}
    if flat.get("data.source") == "files":
        picked["train.seed"] = flat.get("train.seed")
    return stable_hash(picked)


def base_settings(cfg: Config) -> dict[str, dict[str, Any]]:
    """What determines the base weights besides the text, per group: the settings described as
    keying the base model (the model's shape, not its name: the same shape under another name is
    the same model; the pre-training settings that change results), as hashed."""
    out: dict[str, dict[str, Any]] = {}
    for name in (f.name for f in dataclasses.fields(Config)):
        values = {k: v for k, v in vars(getattr(cfg, name)).items() if SETTINGS.rules(f"{name}.{k}").base} \
            if dataclasses.is_dataclass(getattr(cfg, name)) else {}
        if values:
            out[name] = semantic(values, f"{name}.")
    return out
