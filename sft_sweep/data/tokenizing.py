"""The tokenizer a job's config names (``tokenizer=bytes|bpe``), built in one place.

``bytes`` needs nothing; ``bpe`` is trained on the job's pre-training documents (the world's
prose, or ``data.pretrain_text`` without its held-out share) and cached content-addressed in
``pretrain.cache_dir`` (sft_sweep/bpe.py), so every job, ``sft-sweep-inspect``, chat and eval
of the same settings read the same ids.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Sequence

from ..bpe import bpe_cached, training_key
from ..errors import ConfigError
from ..tokenizer import ByteTokenizer

if TYPE_CHECKING:
    from ..config import Config

_MEMO: dict[tuple, Any] = {}


def cache_root(cfg: Config, base_dir: str | None) -> str:
    """``pretrain.cache_dir``, relative paths taken from ``base_dir`` (where sft-sweep started)."""
    root = os.path.expanduser(cfg.pretrain.cache_dir)
    if not os.path.isabs(root) and base_dir is not None:
        root = os.path.join(base_dir, root)
    return root


def build_tokenizer(cfg: Config, base_dir: str | None, docs: Sequence[str]) -> Any:
    """The job's tokenizer: ``ByteTokenizer`` for ``bytes``; for ``bpe`` the BPE trained on the
    pre-training documents ``docs`` (``prepare.tokenizer_for`` reads them from the config)."""
    t = getattr(cfg, "tokenizer", None)
    name = getattr(t, "name", "bytes")
    if name == "bytes":
        return ByteTokenizer()
    if name != "bpe":
        raise ConfigError(f"tokenizer.name={name!r}: must be bytes or bpe")
    root = cache_root(cfg, base_dir)
    key = (training_key(docs, t.vocab_size), root)
    if key not in _MEMO:
        try:
            _MEMO[key] = bpe_cached(docs, int(t.vocab_size), root)
        except ValueError as e:
            raise ConfigError(str(e)) from None
    return _MEMO[key]
