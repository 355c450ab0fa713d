"""Checkpoints as plain ``.npz``: parameters, optimizer moments, step, RNG state, metadata.

No pickle anywhere: metadata (config, step, RNG state, extra) is one JSON string stored as
a 0-d unicode array, and loading uses ``allow_pickle=False``, so a checkpoint from an
untrusted source cannot run code. Writes go to a temporary file in the target directory
and are moved into place with ``os.replace``: a crash leaves the old file or the new one,
never half of one.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from typing import Any

import numpy as np

from ..errors import CheckpointError, ConfigError
from ..atomicio import atomic_path
from .gpt import GPT, GPTConfig, param_table
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


# The metadata member (a JSON string) is small; a larger one is not ours.
MAX_META_BYTES = 16 << 20
# Bytes per parameter a checkpoint may unpack to: float64 weights and two optimizer moments with
# room to spare, so only a damaged or crafted archive is refused.
BYTES_PER_PARAM = 32
_NPY_HEADER_MAX = 10_000


def _member_header(z: zipfile.ZipFile, info: zipfile.ZipInfo) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) an .npy member's header claims, read without reading its data."""
    with z.open(info) as f:
        major, _ = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(f, max_header_size=_NPY_HEADER_MAX)
    return shape, dtype


def _check_sizes(path: str, z: zipfile.ZipFile, cfg: GPTConfig) -> None:
    """Refuses, before any array is read, an archive that unpacks to more than its model can need
    (a zip bomb) and a member whose header claims more than the member holds or, for a parameter,
    another shape than its config gives: so a crafted file costs no memory."""
    shapes = {f"param/{name}.npy": shape for name, shape in param_table(cfg)}
    n_params = sum(math.prod(shape) for shape in shapes.values())
    total = sum(i.file_size for i in z.infolist())
    limit = n_params * BYTES_PER_PARAM + MAX_META_BYTES
    if total > limit:
        raise CheckpointError(f"checkpoint {path} unpacks to {total} bytes, more than the {limit} a model of "
                              f"{n_params} parameters can need: a damaged or crafted archive, not read")
    for info in z.infolist():
        if info.filename == "meta.npy":
            continue
        name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
        try:
            shape, dtype = _member_header(z, info)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
            raise CheckpointError(f"checkpoint {path}: member {name} is not a readable array "
                                  f"({type(e).__name__})") from None
        n = math.prod(shape)
        if n * dtype.itemsize > info.file_size:
            raise CheckpointError(f"checkpoint {path}: member {name} claims {n} elements of {dtype} in "
                                  f"{info.file_size} bytes: a damaged or crafted archive, not read")
        if info.filename in shapes and shape != shapes[info.filename]:
            raise CheckpointError(f"checkpoint {path}: parameter {name[6:]!r} has shape {shape}, its "
                                  f"config gives {shapes[info.filename]}")


def _open(path) -> tuple[dict, dict[str, np.ndarray]]:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            if "meta" not in z.files:
                raise CheckpointError(f"checkpoint {path} has no metadata; not an sft-sweep checkpoint")
            if z.zip.getinfo("meta.npy").file_size > MAX_META_BYTES:
                raise CheckpointError(f"checkpoint {path}: its metadata unpacks to more than "
                                      f"{MAX_META_BYTES} bytes; not an sft-sweep checkpoint")
            meta = _meta(path, z["meta"])
            _check_sizes(path, z.zip, _config(path, meta))
            arrays = {k: z[k] for k in z.files if k != "meta"}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
        # numpy's own text for bytes that are not an .npz suggests loading them with pickle:
        # advice nobody should follow for a damaged file, so it is not passed on.
        raise CheckpointError(f"checkpoint {path} is not a readable .npz archive (corrupt or "
                              f"truncated: {type(e).__name__})") from None
    return meta, arrays


def _meta(path: str, value: np.ndarray) -> dict:
    try:
        meta = json.loads(str(value))
    except ValueError as e:
        raise CheckpointError(f"checkpoint {path} has corrupt metadata: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or "config" not in meta:
        raise CheckpointError(f"checkpoint {path} is not in the {FORMAT} format")
    return meta


def _config(path: str, meta: dict) -> GPTConfig:
    try:
        return GPTConfig.from_dict(meta["config"])
    except (ConfigError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"checkpoint {path} has an unusable model config: {e}") from None


def check_checkpoint(path) -> GPTConfig:
    """Reads a whole checkpoint as ``load_checkpoint`` would, without a model: its config, when its
    every parameter is there with the shape the config gives and finite; else CheckpointError."""
    meta, arrays = _open(path)
    cfg = _config(os.fspath(path), meta)
    _check_params(os.fspath(path), arrays, dict(param_table(cfg)))
    return cfg


def _check_params(path: str, arrays: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]]) -> None:
    for name, shape in shapes.items():
        key = "param/" + name
        if key not in arrays:
            raise CheckpointError(f"checkpoint {path} lacks parameter {name!r}")
        if arrays[key].shape != shape:
            raise CheckpointError(
                f"checkpoint {path}: parameter {name!r} has shape {arrays[key].shape}, "
                f"model expects {shape}")
    bad = [name for name in shapes if not np.isfinite(arrays["param/" + name]).all()]
    if bad:
        raise CheckpointError(f"checkpoint {path}: parameter(s) {bad[:5]} hold NaN or infinite values; "
                              "the weights are unusable")
    extra_keys = sorted(k[6:] for k in arrays if k.startswith("param/") and k[6:] not in shapes)
    if extra_keys:
        raise CheckpointError(f"checkpoint {path} has parameters the model lacks: {extra_keys[:5]}")


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
    _check_params(os.fspath(path), arrays, {name: p.shape for name, p in model.params.items()})
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
