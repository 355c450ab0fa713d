"""A byte-level BPE tokenizer trained on the job's pre-training text (``tokenizer=bpe``).

Layout of the ids, chosen so that the byte tokenizer is this one with no merges:

- ``0..255``: the single bytes, id b is byte b (any UTF-8 text encodes: a byte never merged
  stays a byte token);
- ``256 .. V-5``: the merged tokens, in the order the trainer learnt them;
- ``V-4 .. V-1``: the special tokens of ``SPECIAL_TOKENS`` in that order, so ``pad_id`` is
  always ``V - 1`` and ``eot_id`` ``V - 4``, as for ``ByteTokenizer``.

The merges are learnt by Hugging Face ``tokenizers`` (a BPE trainer over GPT-2's byte-level
pre-tokenization) and then written into this layout. Special tokens are never part of the
training text and never added to the encoding model, so no merge spans a marker and text that
spells ``<|im_end|>`` encodes as ordinary text; a special id enters a sequence only through
``special(...)`` or the ``*_id`` attributes, as with ``ByteTokenizer``.

Trained tokenizers are cached content-addressed (``bpe_cached``): the key is the digest of
the training documents and the vocabulary size, the file is the tokenizer's own JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from .atomicio import write_atomic
from .tokenizer import N_BYTES, SPECIAL_TOKENS, decode_ids

#: Bump when the layout or the training recipe changes: it is part of the cache key.
BPE_FORMAT = 1
#: The smallest vocabulary: the bytes, one merge, the specials.
MIN_VOCAB = N_BYTES + 1 + len(SPECIAL_TOKENS)


def byte_symbols() -> list[str]:
    """The printable character standing for each byte in byte-level BPE files (GPT-2's
    convention, which Hugging Face's ``ByteLevel`` pre-tokenizer uses): printable Latin-1
    bytes stand for themselves, the others map in byte order to code points from 256 up."""
    keep = set(range(ord("!"), ord("~") + 1)) | set(range(0xA1, 0xAC + 1)) | set(range(0xAE, 0xFF + 1))
    out, extra = [], 0
    for b in range(N_BYTES):
        if b in keep:
            out.append(chr(b))
        else:
            out.append(chr(N_BYTES + extra))
            extra += 1
    return out


_SYMBOLS = byte_symbols()
_SYMBOL_BYTE = {s: b for b, s in enumerate(_SYMBOLS)}


def symbol_bytes(token: str) -> bytes:
    """The bytes a byte-level token string stands for."""
    return bytes(_SYMBOL_BYTE[ch] for ch in token)


def _pre_tokenizer():
    from tokenizers import pre_tokenizers

    return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)


class BPETokenizer:
    """Byte-level BPE with the same interface as ``ByteTokenizer``."""

    name = "bpe"

    def __init__(self, merges: Sequence[tuple[str, str]]) -> None:
        from tokenizers import Tokenizer, decoders, models

        self.merges = [(str(a), str(b)) for a, b in merges]
        vocab = {s: b for b, s in enumerate(_SYMBOLS)}
        for a, b in self.merges:
            if a not in vocab or b not in vocab:
                raise ValueError(f"merge {a!r} + {b!r} uses a token that no earlier merge made")
            if a + b in vocab:
                raise ValueError(f"merge {a!r} + {b!r} repeats the token {a + b!r}")
            vocab[a + b] = len(vocab)
        self.vocab = vocab
        n = len(vocab)
        self.special_tokens: dict[str, int] = {t: n + i for i, t in enumerate(SPECIAL_TOKENS)}
        self._special_names = {i: t for t, i in self.special_tokens.items()}
        self.vocab_size = n + len(SPECIAL_TOKENS)
        self.eot_id = self.special_tokens["<|endoftext|>"]
        self.im_start_id = self.special_tokens["<|im_start|>"]
        self.im_end_id = self.special_tokens["<|im_end|>"]
        self.pad_id = self.special_tokens["<|pad|>"]
        by_id = [b""] * self.vocab_size
        for s, i in vocab.items():
            by_id[i] = symbol_bytes(s)
        self.token_bytes: list[bytes] = by_id  # specials: b"" (they stand for no text)
        self.byte_lengths = np.array([len(b) for b in by_id], dtype=np.int64)
        model = Tokenizer(models.BPE(vocab=dict(vocab), merges=list(self.merges)))
        model.pre_tokenizer = _pre_tokenizer()
        model.decoder = decoders.ByteLevel()
        self._hf = model

    # ---- the ByteTokenizer interface -----------------------------------------------------
    def encode(self, text: str) -> list[int]:
        """Ids of ``text``; never returns a special id (a spelt marker is ordinary text)."""
        if not isinstance(text, str):
            raise TypeError(f"BPETokenizer.encode expects str, got {type(text).__name__}")
        if not text:
            return []
        text.encode("utf-8")  # a lone surrogate fails here as it does for ByteTokenizer
        return list(self._hf.encode(text, add_special_tokens=False).ids)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        for t in texts:
            if not isinstance(t, str):
                raise TypeError(f"BPETokenizer.encode_batch expects str, got {type(t).__name__}")
            t.encode("utf-8")
        return [list(e.ids) for e in self._hf.encode_batch(list(texts), add_special_tokens=False)]

    def special(self, name: str) -> int:
        try:
            return self.special_tokens[name]
        except KeyError:
            known = ", ".join(self.special_tokens)
            raise KeyError(f"unknown special token {name!r}; known: {known}") from None

    def is_special(self, token_id: int) -> bool:
        return token_id in self._special_names

    def decode(self, ids: Iterable[int], skip_special: bool = False) -> str:
        """Text of ``ids``: the tokens' bytes joined and read as UTF-8 (an invalid run, which a
        model can emit, becomes U+FFFD); special ids render as their names unless skipped."""
        def bytes_of(i: int) -> bytes | None:
            return self.token_bytes[i] if 0 <= i < self.vocab_size and i not in self._special_names else None

        return decode_ids(ids, bytes_of, self._special_names, self.vocab_size, skip_special)

    def token_text(self, token_id: int) -> str:
        """One token as text for display: its bytes as UTF-8 (a partial character escaped)."""
        i = int(token_id)
        if i in self._special_names:
            return self._special_names[i]
        return self.token_bytes[i].decode("utf-8", errors="backslashreplace")

    # ---- files ---------------------------------------------------------------------------
    def to_json(self) -> str:
        """This tokenizer as Hugging Face ``tokenizer.json`` text (byte-level BPE, our ids),
        without the special tokens (``hf_tokenizer_json`` adds them for outside tools)."""
        return self._hf.to_str()

    def hf_tokenizer_json(self) -> dict:
        """``tokenizer.json`` for outside tools: the same model and ids, the specials added at
        their ids. Outside tools split text that spells a special token into that token."""
        d = json.loads(self.to_json())
        d["added_tokens"] = [{"id": self.special_tokens[t], "content": t, "single_word": False, "lstrip": False,
                              "rstrip": False, "normalized": False, "special": True} for t in SPECIAL_TOKENS]
        return d

    @classmethod
    def from_json(cls, text: str, source: str = "tokenizer JSON") -> "BPETokenizer":
        try:
            d = json.loads(text)
            model = d["model"]
            if model.get("type") != "BPE":
                raise ValueError(f"model type {model.get('type')!r}, not BPE")
            merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
            tok = cls(merges)
            if tok.vocab != model["vocab"]:
                raise ValueError("its vocabulary is not the byte-level layout of its merges")
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"{source}: not a byte-level BPE tokenizer of this package ({e})") from None
        return tok

    @property
    def digest(self) -> str:
        """Content hash of the merges (which fix every id): names the tokenizer in cache keys."""
        h = hashlib.sha256(json.dumps([BPE_FORMAT, self.merges], ensure_ascii=True).encode())
        return h.hexdigest()[:16]


def train_bpe(docs: Iterable[str], vocab_size: int) -> BPETokenizer:
    """Learn ``vocab_size - 256 - len(SPECIAL_TOKENS)`` merges on ``docs``.

    Raises ValueError when the text is too small to give that many merges (every word already
    one token), naming how many it gave."""
    from tokenizers import Tokenizer, models, trainers

    if vocab_size < MIN_VOCAB:
        raise ValueError(f"tokenizer.vocab_size={vocab_size}: must be at least {MIN_VOCAB} (256 bytes, "
                         f"one merge, {len(SPECIAL_TOKENS)} special tokens)")
    n_merges = vocab_size - N_BYTES - len(SPECIAL_TOKENS)
    hf = Tokenizer(models.BPE())
    hf.pre_tokenizer = _pre_tokenizer()
    trainer = trainers.BpeTrainer(vocab_size=N_BYTES + n_merges, min_frequency=2, show_progress=False,
                                  initial_alphabet=list(_SYMBOLS), special_tokens=[])
    hf.train_from_iterator(docs, trainer=trainer)
    learnt = json.loads(hf.to_str())["model"]["merges"]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in learnt]
    if len(merges) < n_merges:
        raise ValueError(f"tokenizer.vocab_size={vocab_size} needs {n_merges} merges, but the pre-training "
                         f"text gives only {len(merges)} (pairs seen at least twice); lower "
                         f"tokenizer.vocab_size to at most {N_BYTES + len(merges) + len(SPECIAL_TOKENS)}")
    return BPETokenizer(merges[:n_merges])


def training_key(docs: Sequence[str], vocab_size: int) -> str:
    """Cache key of a trained tokenizer: its training text, its size and the recipe."""
    h = hashlib.sha256()
    h.update(json.dumps({"format": BPE_FORMAT, "vocab_size": int(vocab_size)}).encode())
    for d in docs:
        b = d.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()[:16]


def bpe_cached(docs: Sequence[str], vocab_size: int, cache_dir: str | os.PathLike | None) -> BPETokenizer:
    """The tokenizer trained on ``docs``: read from ``cache_dir/tokenizers/`` when there, else
    trained and written there atomically. Training is deterministic, so two jobs that train it
    at once write the same file; each then uses what the file holds. ``cache_dir`` None: trained,
    not cached."""
    if cache_dir is None:
        return train_bpe(docs, vocab_size)
    path = Path(cache_dir) / "tokenizers" / f"bpe-{training_key(docs, vocab_size)}.json"

    def load() -> BPETokenizer | None:
        if not path.is_file():
            return None
        try:
            tok = BPETokenizer.from_json(path.read_text(encoding="utf-8"), source=str(path))
        except (OSError, UnicodeDecodeError, ValueError):
            return None  # unreadable: trained again and replaced
        return tok if tok.vocab_size == vocab_size else None

    tok = load()
    if tok is None:
        text = train_bpe(docs, vocab_size).to_json()
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, text)
        tok = load()
        if tok is None:
            raise OSError(f"the trained tokenizer written to {path} could not be read back")
    return tok
