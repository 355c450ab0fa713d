"""Sweep job directory names that every file system accepts.

Hydra names a sweep's job directory after its overrides (``hydra.job.override_dirname``). A
sweep over many settings makes names longer than a file name may be (255 bytes on most file
systems) and the job cannot create its directory. ``short_dirname`` keeps a name that fits and
shortens a longer one deterministically: a readable prefix cut at an override boundary, then
``~`` and a hash of the full name, so distinct override sets stay distinct and a re-run lands
in the same directory. The full overrides stay in the job's ``.hydra/overrides.yaml``.

A value that is a file path (``data.datasets.main.path=../data/train.json``) would put the job
several directories deep, where nothing that lists a sweep's jobs looks. Such a value is named
by its file name and a short digest of the whole path (two files of the same name in different
folders stay apart): ``data.datasets.main.path=train.json~3f9a1c``; a list of paths by all its
file names: ``data.pretrain_text=c4.jsonl+wiki.txt~5e20b7``.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

#: Longest name kept as it is, in bytes (file systems allow 255; a margin for suffixes).
MAX_NAME_BYTES = 200
_PREFIX_BYTES = 150
RESOLVER = "sft_sweep_dirname"


# Hydra joins ``key=value`` overrides with commas; a comma inside a value is not followed by a key.
_OVERRIDE_START = re.compile(r",(?=[\w.+~@-]+=)")
_SEPARATORS = ("/", "\\")


def _digest(text: str, n: int) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:n]


def _file_name(path: str) -> str:
    return re.split(r"[/\\]", path.rstrip("/\\"))[-1] or "path"


def one_level(name: str) -> str:
    """``name`` with every path-like override value replaced by ``file_name~digest``."""
    parts = []
    for part in _OVERRIDE_START.split(name):
        key, eq, value = part.partition("=")
        if eq and any(sep in value for sep in _SEPARATORS):
            # a list of paths ("[a/c4.jsonl,b/wiki.txt]") is named by all its file names
            items = value[1:-1].split(",") if value.startswith("[") and value.endswith("]") else [value]
            file_name = "+".join(_file_name(v.strip()) for v in items)
            part = f"{key}={file_name}~{_digest(value, 6)}"
        parts.append(part)
    return ",".join(parts)


def short_dirname(name: str, max_bytes: int = MAX_NAME_BYTES) -> str:
    name = one_level(name)
    raw = name.encode("utf-8")
    if len(raw) <= max_bytes:
        return name
    digest = _digest(name, 12)
    prefix = raw[:_PREFIX_BYTES].decode("utf-8", errors="ignore")
    if "," in prefix:
        prefix = prefix[: prefix.rindex(",")]
    return f"{prefix}~{digest}"


def register_resolver() -> None:
    """``${sft_sweep_dirname:...}`` for conf/config.yaml's ``hydra.sweep.subdir``."""
    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, lambda name: short_dirname(str(name)))


def sweep_dir_of(config: Any) -> Path:
    """``hydra.sweep.dir`` of a Hydra config, made absolute against the launch directory."""
    raw = OmegaConf.select(config, "hydra.sweep.dir", default=None)
    if raw is None:
        raise ValueError("the config has no hydra.sweep.dir")
    path = Path(str(raw))
    if not path.is_absolute():
        cwd = OmegaConf.select(config, "hydra.runtime.cwd", default=None)
        path = (Path(str(cwd)) if cwd else Path(os.getcwd())) / path
    return path
