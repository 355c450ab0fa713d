"""The tokenizer a finished job used, found from its config (for chat, export and inspection).

``bytes`` (or a job from before the tokenizer group) needs nothing. For ``bpe`` the job's config
is read back into the schema and its tokenizer rebuilt the way the job built it: from the cache
in ``pretrain.cache_dir`` (paths relative to the directory the job was started in), trained
again from the job's pre-training text if the cache entry is gone (training is deterministic).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf

from .config import Config, to_object
from .data.prepare import tokenizer_for
from .errors import SftSweepError
from .tokenizer import ByteTokenizer


def launch_dir(job_dir: Path | None) -> str | None:
    """The directory the job was started in (Hydra's runtime cwd), when it still exists."""
    if job_dir is None:
        return None
    try:
        hydra_cfg = yaml.safe_load((Path(job_dir) / ".hydra" / "hydra.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None
    cwd = ((hydra_cfg.get("hydra") or {}).get("runtime") or {}).get("cwd")
    return str(cwd) if cwd and Path(cwd).is_dir() else None


def job_tokenizer(config: dict[str, Any], job_dir: Path | None = None) -> Any:
    """The tokenizer of a job whose (nested) config is ``config``."""
    name = str((config.get("tokenizer") or {}).get("name") or "bytes")
    if name == "bytes":
        return ByteTokenizer()
    plain = {k: v for k, v in config.items() if k != "hydra"}
    try:
        cfg: Config = to_object(OmegaConf.merge(OmegaConf.structured(Config), plain))
        return tokenizer_for(cfg, launch_dir(job_dir))
    except Exception as e:  # noqa: BLE001 - any failure here means: cannot rebuild the tokenizer
        where = f" of {job_dir}" if job_dir is not None else ""
        raise SftSweepError(f"cannot rebuild the {name} tokenizer{where} (tokenizer.vocab_size="
                            f"{(config.get('tokenizer') or {}).get('vocab_size')}): {e}") from None
