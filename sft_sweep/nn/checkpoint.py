"""Checkpoints as plain ``.npz``: parameters, optimizer moments, step, RNG state, metadata.

No pickle anywhere: metadata (config, step, RNG state, extra) is one JSON string stored as
a 0-d unicode array, and loading uses ``allow_pickle=False``, so a checkpoint from an
untrusted source cannot run code. Writes go to a temporary file in the target directory
and are moved into place with ``os.replace``: a crash leaves the old file or the new one,
never half of one.
"""

from __future__ import annotations

import json
import os
import zipfile
from typing import Any

import numpy as np

from ..errors import CheckpointError
from ..atomicio import atomic_path
from .gpt import GPT, GPTConfig
from .optim import AdamW

FORMAT = "sft-sweep-gpt-v1"
# init_std only shapes the initial draw; a checkpoint's weights supersede it.
_IGNORED_CONFIG_FIELDS = ("init_std",)


def save_checkpoint(path, model: GPT, optimizer: AdamW | None = None, step: int = 0,
                    rng_state: dict | None = None, extra: dict | None = None,
                    adapter: dict[str, np.ndarray] | None = None) -> None:
    """Writes ``path`` atomically (exactly that name; no ``.npz`` is appended). ``adapter``: the
    trained values that are not the model's weights (LoRA's A and B), to resume from."""
    path = os.fspath(path)
    meta = {
        "format": FORMAT,
        "config": model.config.to_dict(),
        "step": int(step),
        "rng_state": rng_state,
        "extra": extra,
        "has_optimizer": optimizer is not None,
        "param_names": list(model.params),
    }
    try:
        meta_text = json.dumps(meta)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint metadata (rng_state / extra) is not JSON-able: {e}") from e
    arrays: dict[str, np.ndarray] = {"meta": np.array(meta_text)}
    for name, p in model.params.items():
        arrays["param/" + name] = p
    if optimizer is not None:
        for key, value in optimizer.state_dict().items():
            arrays["opt/" + key] = np.asarray(value)
    for name, value in (adapter or {}).items():
        arrays["adapter/" + name] = np.asarray(value)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def _config_diff(saved: dict, cfg: GPTConfig) -> list[str]:
    mine = cfg.to_dict()
    diffs = []
    for key in sorted(set(saved) | set(mine)):
        if key in _IGNORED_CONFIG_FIELDS:
            continue
        if saved.get(key) != mine.get(key):
            diffs.append(f"{key}: checkpoint {saved.get(key)!r} vs model {mine.get(key)!r}")
    return diffs


def read_checkpoint_config(path) -> GPTConfig:
    """The GPTConfig a checkpoint was saved with (to build a matching model)."""
    meta, _ = _open(path)
    return GPTConfig.from_dict(meta["config"])


def _open(path) -> tuple[dict, dict[str, np.ndarray]]:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
        # numpy's own text for bytes that are not an .npz suggests loading them with pickle:
        # advice nobody should follow for a damaged file, so it is not passed on.
        raise CheckpointError(f"checkpoint {path} is not a readable .npz archive (corrupt or "
                              f"truncated: {type(e).__name__})") from None
    if "meta" not in arrays:
        raise CheckpointError(f"checkpoint {path} has no metadata; not an sft-sweep checkpoint")
    try:
        meta = json.loads(str(arrays.pop("meta")))
    except ValueError as e:
        raise CheckpointError(f"checkpoint {path} has corrupt metadata: {e}") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or "config" not in meta:
        raise CheckpointError(f"checkpoint {path} is not in the {FORMAT} format")
    return meta, arrays


def load_checkpoint(path, model: GPT, optimizer: AdamW | None = None) -> dict[str, Any]:
    """Loads weights (and optimizer state) in place; returns {"step", "rng_state", "extra",
    "adapter"} (``adapter``: the arrays saved as such, name -> array, possibly empty).

    Refuses, with a message naming what differs, a checkpoint of another configuration, and
    one whose weights hold NaN or inf. Nothing is modified unless every check passes.
    """
    meta, arrays = _open(path)
    diffs = _config_diff(meta["config"], model.config)
    if diffs:
        raise CheckpointError(
            f"checkpoint {path} was saved from another model configuration: " + "; ".join(diffs))
    for name, p in model.params.items():
        key = "param/" + name
        if key not in arrays:
            raise CheckpointError(f"checkpoint {path} lacks parameter {name!r}")
        if arrays[key].shape != p.shape:
            raise CheckpointError(
                f"checkpoint {path}: parameter {name!r} has shape {arrays[key].shape}, "
                f"model expects {p.shape}")
    bad = [name for name in model.params if not np.isfinite(arrays["param/" + name]).all()]
    if bad:
        raise CheckpointError(f"checkpoint {path}: parameter(s) {bad[:5]} hold NaN or infinite values; "
                              "the weights are unusable")
    extra_keys = sorted(k[6:] for k in arrays if k.startswith("param/") and k[6:] not in model.params)
    if extra_keys:
        raise CheckpointError(f"checkpoint {path} has parameters the model lacks: {extra_keys[:5]}")
    opt_state = None
    if optimizer is not None:
        opt_state = {k[4:]: v for k, v in arrays.items() if k.startswith("opt/")}
        if not opt_state:
            raise CheckpointError(f"checkpoint {path} holds no optimizer state")
        try:
            optimizer.check_state_dict(opt_state)
        except ValueError as e:
            raise CheckpointError(f"checkpoint {path}: {e}") from e
    for name, p in model.params.items():
        p[...] = arrays["param/" + name]
    if opt_state is not None:
        optimizer.load_state_dict(opt_state)
    return {"step": int(meta.get("step", 0)), "rng_state": meta.get("rng_state"),
            "extra": meta.get("extra"),
            "adapter": {k[8:]: v for k, v in arrays.items() if k.startswith("adapter/")}}
