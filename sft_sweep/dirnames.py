"""Sweep job directory names that every file system accepts.

Hydra names a sweep's job directory after its overrides (``hydra.job.override_dirname``). A
sweep over many settings makes names longer than a file name may be (255 bytes on most file
systems) and the job cannot create its directory. ``short_dirname`` keeps a name that fits and
shortens a longer one deterministically: a readable prefix cut at an override boundary, then
``~`` and a hash of the full name, so distinct override sets stay distinct and a re-run lands
in the same directory. The full overrides stay in the job's ``.hydra/overrides.yaml``.
"""

from __future__ import annotations

import hashlib

from omegaconf import OmegaConf

#: Longest name kept as it is, in bytes (file systems allow 255; a margin for suffixes).
MAX_NAME_BYTES = 200
_PREFIX_BYTES = 150
RESOLVER = "sft_sweep_dirname"


def short_dirname(name: str, max_bytes: int = MAX_NAME_BYTES) -> str:
    raw = name.encode("utf-8")
    if len(raw) <= max_bytes:
        return name
    digest = hashlib.sha256(raw).hexdigest()[:12]
    prefix = raw[:_PREFIX_BYTES].decode("utf-8", errors="ignore")
    if "," in prefix:
        prefix = prefix[: prefix.rindex(",")]
    return f"{prefix}~{digest}"


def register_resolver() -> None:
    """``${sft_sweep_dirname:...}`` for conf/config.yaml's ``hydra.sweep.subdir``."""
    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, lambda name: short_dirname(str(name)))
