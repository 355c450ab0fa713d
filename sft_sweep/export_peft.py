"""A LoRA job's adapters in PEFT's format, beside the exported base model.

``sft-sweep-export`` writes a LoRA job's merged weights as any job's; with the job's
``adapter.npz`` and its base model at hand it also writes

    OUT_DIR/base/      the base model as a transformers GPT-2 checkpoint
    OUT_DIR/adapter/   adapter_config.json + adapter_model.safetensors

so that ``peft.PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(OUT_DIR/base),
OUT_DIR/adapter)`` computes what the merged checkpoint computes.

The mapping: our adapter of a weight W (inputs, outputs) is A (inputs, r) and B (r, outputs) with
W = W_base + scale * A @ B. PEFT keeps ``lora_A.weight`` (r, inputs) and ``lora_B.weight``
(outputs, r) and multiplies by lora_alpha / r (or / sqrt(r) with ``use_rslora``); GPT-2's
``Conv1D`` stores weights as (inputs, outputs), hence ``fan_in_fan_out``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .errors import CheckpointError
from .jobfiles import atomic_path, write_json

# Our linear layer -> GPT-2's module, after ``transformer.h.<i>.``.
_MODULES = {"attn.qkv": "attn.c_attn", "attn.proj": "attn.c_proj", "mlp.fc": "mlp.c_fc", "mlp.proj": "mlp.c_proj"}
_PREFIX = "base_model.model.transformer.h."


def read_adapter(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """The metadata and the A / B arrays of an ``adapter.npz``."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(str(arrays.pop("meta")))
    except (OSError, ValueError, KeyError) as e:
        raise CheckpointError(f"{path} is not a readable adapter file ({type(e).__name__}: {e})") from None
    for key in ("rank", "alpha", "rslora", "targets"):
        if key not in meta:
            raise CheckpointError(f"{path}: the adapter's metadata lacks {key!r}")
    return meta, arrays


def peft_tensors(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """PEFT's state dict of our adapters (``h.0.attn.qkv.lora_A`` -> ``...h.0.attn.c_attn.lora_A.weight``)."""
    out = {}
    for name, value in arrays.items():
        layer, rest = name[2:].split(".", 1)  # "h.<i>.<linear>.lora_X"
        linear, which = rest.rsplit(".", 1)
        out[f"{_PREFIX}{layer}.{_MODULES[linear]}.{which}.weight"] = np.ascontiguousarray(value.T)
    return out


def peft_config(meta: dict, base_dir: Path) -> dict:
    modules = "|".join(_MODULES[t].replace(".", r"\.") for t in meta["targets"])
    return {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": str(base_dir),
        "r": int(meta["rank"]), "lora_alpha": float(meta["alpha"]), "use_rslora": bool(meta["rslora"]),
        "lora_dropout": 0.0, "bias": "none", "fan_in_fan_out": True, "inference_mode": True,
        # a full-name pattern: GPT-2 calls both the attention's and the MLP's output "c_proj"
        "target_modules": rf".*\.h\.\d+\.({modules})", "modules_to_save": None,
    }


def export_adapter(adapter_path: Path, out_dir: Path, base_dir: Path) -> list[Path]:
    """Writes ``adapter_config.json`` and ``adapter_model.safetensors`` into ``out_dir``."""
    from safetensors.numpy import save_file

    meta, arrays = read_adapter(adapter_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / "adapter_model.safetensors"
    with atomic_path(weights) as tmp:
        save_file(peft_tensors(arrays), str(tmp), metadata={"format": "pt"})
    write_json(out_dir / "adapter_config.json", peft_config(meta, base_dir.resolve()))
    return [weights, out_dir / "adapter_config.json"]


__all__ = ["export_adapter", "peft_config", "peft_tensors", "read_adapter"]
