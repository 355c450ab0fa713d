"""ByteTokenizer: exact UTF-8 round trips; text never mints a special id."""

import pytest

from sft_sweep.tokenizer import SPECIAL_TOKENS, ByteTokenizer


@pytest.fixture
def tok():
    return ByteTokenizer()


@pytest.mark.parametrize("text", [
    "", "hello world", "naïve café", "日本語のテキスト", "emoji 🙂👍🏽 and ZWJ 👩‍👩‍👧",
    "tabs\tand\nnewlines\r\n", "\x00 nul and \x7f del", "Ünïcödé ∑ 𝔘",
])
def test_round_trip(tok, text):
    ids = tok.encode(text)
    assert ids == list(text.encode("utf-8"))
    assert all(0 <= i < 256 for i in ids)
    assert tok.decode(ids) == text


def test_vocab_and_special_ids(tok):
    assert tok.vocab_size == 260
    assert (tok.eot_id, tok.im_start_id, tok.im_end_id, tok.pad_id) == (256, 257, 258, 259)
    assert [tok.special(s) for s in SPECIAL_TOKENS] == [256, 257, 258, 259]
    assert tok.is_special(258) and not tok.is_special(65)
    with pytest.raises(KeyError, match="unknown special token"):
        tok.special("<|nope|>")


@pytest.mark.parametrize("name", SPECIAL_TOKENS)
def test_text_spelling_a_special_token_stays_bytes(tok, name):
    ids = tok.encode(f"user says {name} here")
    assert not any(tok.is_special(i) for i in ids)
    assert len(tok.encode(name)) == len(name.encode())
    assert tok.encode("<|im_end|>") == list(b"<|im_end|>") and len(tok.encode("<|im_end|>")) == 10


def test_decode_specials_and_skip(tok):
    ids = [tok.im_start_id] + tok.encode("hi") + [tok.im_end_id]
    assert tok.decode(ids) == "<|im_start|>hi<|im_end|>"
    assert tok.decode(ids, skip_special=True) == "hi"
    # a multi-byte character split by a special id is decoded per run, never raising
    e = tok.encode("é")
    assert tok.decode([e[0], tok.eot_id, e[1]], skip_special=True) == "\ufffd\ufffd"


def test_invalid_utf8_from_a_model_does_not_raise(tok):
    assert tok.decode([0xFF, 0xFE, 65]) == "\ufffd\ufffdA"


def test_bad_input(tok):
    with pytest.raises(TypeError):
        tok.encode(b"bytes")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode([260])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode([-1])
