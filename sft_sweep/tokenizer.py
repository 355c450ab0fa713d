"""Byte-level tokenizer: ids 0-255 are raw UTF-8 bytes, special tokens follow.

Ordinary text never yields a special id: ``encode`` works on bytes only, so a user who
types ``<|im_end|>`` gets ten byte ids. Special ids enter a sequence only through an
explicit call (``special(...)`` or the named ``*_id`` attributes), which is what makes
chat templates safe against prompt text that imitates their markers.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

N_BYTES = 256

# Order fixes the ids (256, 257, ...); append new tokens at the end so old checkpoints stay valid.
SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|pad|>",
)


def special_ids(vocab_size: int) -> dict[str, int]:
    """The special tokens' ids in a vocabulary of ``vocab_size`` ids: every tokenizer of this
    package puts them last, in ``SPECIAL_TOKENS`` order (so ``<|pad|>`` is ``vocab_size - 1``)."""
    first = vocab_size - len(SPECIAL_TOKENS)
    return {name: first + i for i, name in enumerate(SPECIAL_TOKENS)}


def model_vocab_size(tokenizer_conf: Any) -> int:
    """The number of ids of the tokenizer a config names (``tokenizer.name``,
    ``tokenizer.vocab_size``): the model's vocabulary, known before any tokenizer is trained."""
    name = getattr(tokenizer_conf, "name", "bytes")
    if name == "bytes":
        return N_BYTES + len(SPECIAL_TOKENS)
    if name == "bpe":
        return int(tokenizer_conf.vocab_size)
    raise ValueError(f"unknown tokenizer {name!r}; choose bytes or bpe")


def decode_ids(ids: Iterable[int], bytes_of, special_names: dict[int, str], vocab_size: int,
               skip_special: bool = False) -> str:
    """Text of ``ids`` for a tokenizer whose token i stands for ``bytes_of(i)`` (None: not a byte
    token). Byte runs are decoded together so multi-byte characters survive, and an invalid UTF-8
    run (a model can emit one) becomes U+FFFD rather than an exception; special ids render as their
    names unless ``skip_special``; any other id is a ValueError."""
    parts: list[str] = []
    run = bytearray()
    for raw in ids:
        i = int(raw)
        piece = bytes_of(i)
        if piece is not None:
            run += piece
            continue
        if run:
            parts.append(run.decode("utf-8", errors="replace"))
            run = bytearray()
        if i in special_names:
            if not skip_special:
                parts.append(special_names[i])
        else:
            raise ValueError(f"token id {i} is outside the vocabulary (0..{vocab_size - 1})")
    if run:
        parts.append(run.decode("utf-8", errors="replace"))
    return "".join(parts)


class ByteTokenizer:
    """Bytes plus a fixed list of special tokens."""

    name = "bytes"

    def __init__(self) -> None:
        self.special_tokens: dict[str, int] = {
            name: N_BYTES + i for i, name in enumerate(SPECIAL_TOKENS)
        }
        self._special_names = {i: name for name, i in self.special_tokens.items()}
        self.vocab_size = N_BYTES + len(SPECIAL_TOKENS)
        self.eot_id = self.special_tokens["<|endoftext|>"]
        self.im_start_id = self.special_tokens["<|im_start|>"]
        self.im_end_id = self.special_tokens["<|im_end|>"]
        self.pad_id = self.special_tokens["<|pad|>"]
        # bytes of text each id stands for (specials: none), for per-byte measures
        self.byte_lengths = np.array([1] * N_BYTES + [0] * len(SPECIAL_TOKENS), dtype=np.int64)
        self.token_bytes: list[bytes] = [bytes([b]) for b in range(N_BYTES)] + [b""] * len(SPECIAL_TOKENS)

    def token_text(self, token_id: int) -> str:
        """One token as text for display (a byte that is part of a character escaped)."""
        i = int(token_id)
        if i in self._special_names:
            return self._special_names[i]
        return bytes([i]).decode("utf-8", errors="backslashreplace")

    def encode(self, text: str) -> list[int]:
        """UTF-8 bytes of ``text`` as ids; never returns a special id."""
        if not isinstance(text, str):
            raise TypeError(f"ByteTokenizer.encode expects str, got {type(text).__name__}")
        return list(text.encode("utf-8"))

    def special(self, name: str) -> int:
        """The id of a special token by its text, e.g. ``special("<|im_end|>")``."""
        try:
            return self.special_tokens[name]
        except KeyError:
            known = ", ".join(self.special_tokens)
            raise KeyError(f"unknown special token {name!r}; known: {known}") from None

    def is_special(self, token_id: int) -> bool:
        return token_id in self._special_names

    def decode(self, ids: Iterable[int], skip_special: bool = False) -> str:
        """Text of ``ids``. Special ids render as their names unless ``skip_special``.

        Byte runs are decoded together so multi-byte characters survive; an invalid
        UTF-8 run (a model can emit one) becomes U+FFFD rather than an exception.
        """
        return decode_ids(ids, lambda i: bytes((i,)) if 0 <= i < N_BYTES else None, self._special_names,
                          self.vocab_size, skip_special)
