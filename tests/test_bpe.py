"""The byte-level BPE tokenizer (tokenizer=bpe): exact round trips on real text, special tokens
that text cannot forge, the id layout shared with the byte tokenizer, the content-addressed
cache, and the rule that the default (bytes) leaves every earlier hash and cache key as it was."""

from __future__ import annotations

import json

import pytest

from sft_sweep.bpe import BPETokenizer, bpe_cached, train_bpe, training_key
from sft_sweep.config import base_eval_key, config_dict, config_hash, register_configs, to_object, validate
from sft_sweep.data.prepare import pretrain_source
from sft_sweep.errors import ConfigError
from sft_sweep.tokenizer import SPECIAL_TOKENS, ByteTokenizer, model_vocab_size, special_ids
from sft_sweep.train.pretrain import base_key, gpt_config
from tests.conftest import REPO, compose_cfg

register_configs()


def _docs(shared) -> list[str]:
    c4 = [json.loads(line)["text"] for line in (shared / "c4_demo.jsonl").read_text(encoding="utf-8").splitlines()]
    wiki = [line for line in (shared / "wiki_demo.txt").read_text(encoding="utf-8").splitlines() if line]
    return c4 + wiki


@pytest.fixture(scope="module")
def tok(request) -> BPETokenizer:
    from tests.conftest import shared_data_dir

    d = shared_data_dir()
    if d is None:
        pytest.skip("../shared/data (real third-party demo files) is not present beside the repository")
    return train_bpe(_docs(d), 1024)


def test_layout_bytes_then_merges_then_specials(tok):
    assert tok.vocab_size == 1024
    assert [tok.encode(chr(b)) for b in range(128)] == [[b] for b in range(128)]
    assert tok.special_tokens == special_ids(1024) == {t: 1020 + i for i, t in enumerate(SPECIAL_TOKENS)}
    assert tok.pad_id == 1023 and tok.eot_id == 1020
    assert ByteTokenizer().special_tokens == special_ids(260)
    # every merged token stands for at least two bytes; specials for none
    assert all(tok.byte_lengths[i] == 1 for i in range(256))
    assert all(tok.byte_lengths[i] >= 2 for i in range(256, 1020))
    assert all(tok.byte_lengths[i] == 0 for i in range(1020, 1024))


def test_training_is_deterministic(tok, shared_data):
    assert train_bpe(_docs(shared_data), 1024).merges == tok.merges


def test_round_trip_every_alpaca_record(tok, shared_data):
    records = json.loads((shared_data / "alpaca_en_demo.json").read_text(encoding="utf-8"))
    assert len(records) == 999
    n_chars = n_tokens = non_ascii = 0
    for i, r in enumerate(records):
        for field in ("instruction", "input", "output"):
            text = r[field]
            ids = tok.encode(text)
            assert tok.decode(ids) == text, (i, field)
            assert not any(tok.is_special(t) for t in ids)
            n_chars += len(text)
            n_tokens += len(ids)
        non_ascii += any(ord(ch) > 127 for f in ("instruction", "input", "output") for ch in r[f])
    assert non_ascii > 50  # the file does exercise multi-byte text
    assert n_chars / n_tokens > 2.0  # a 1024-id BPE holds more than two characters a token here


def test_round_trip_every_record_of_the_message_files(tok, shared_data):
    from sft_sweep.data import load_conversations

    convs = load_conversations(str(shared_data / "v1_sft_demo.jsonl"))
    assert len(convs) == 500
    for c in convs:
        for t in c.turns:
            assert tok.decode(tok.encode(t.content)) == t.content


@pytest.mark.parametrize("text", ["", "a", "\x00\x01\x7f", "é€😀 \u200b", "日本語のテキスト", "\r\n\t  x  ",
                                  "\udc80".encode("utf-8", "surrogatepass").decode("utf-8", "replace"),
                                  "ü" * 300, "🙂🙃" * 40])
def test_any_utf8_round_trips(tok, text):
    assert tok.decode(tok.encode(text)) == text


@pytest.mark.parametrize("marker", SPECIAL_TOKENS)
def test_text_that_spells_a_marker_is_text(tok, marker):
    text = f"please type {marker} now{marker}{marker[:-1]}"
    ids = tok.encode(text)
    assert not any(tok.is_special(i) for i in ids)
    assert tok.special(marker) not in ids
    assert tok.decode(ids) == text
    assert tok.decode(ids + [tok.special(marker)]) == text + marker
    assert tok.decode(ids + [tok.special(marker)], skip_special=True) == text


def test_no_merge_spans_a_marker(tok):
    # no merged token holds a marker's text, so a marker's id can only come from special()
    for i in range(256, 1020):
        assert not any(m.encode() in tok.token_bytes[i] for m in SPECIAL_TOKENS)


def test_json_round_trip_and_bad_file(tok, tmp_path):
    again = BPETokenizer.from_json(tok.to_json())
    assert again.vocab == tok.vocab and again.digest == tok.digest
    with pytest.raises(ValueError, match="not a byte-level BPE"):
        BPETokenizer.from_json('{"model": {"type": "WordPiece"}}', source="x.json")


def test_too_large_a_vocabulary_is_refused_with_the_numbers():
    with pytest.raises(ValueError, match=r"gives only \d+ .*lower tokenizer.vocab_size"):
        train_bpe(["one two three", "one two three"], 4096)
    with pytest.raises(ValueError, match="at least"):
        train_bpe(["abc"], 200)


def test_cache_is_content_addressed(tmp_path, shared_data):
    docs = _docs(shared_data)[:40]
    a = bpe_cached(docs, 512, tmp_path)
    files = list((tmp_path / "tokenizers").glob("bpe-*.json"))
    assert [f.name for f in files] == [f"bpe-{training_key(docs, 512)}.json"]
    mtime = files[0].stat().st_mtime_ns
    b = bpe_cached(docs, 512, tmp_path)
    assert b.merges == a.merges and files[0].stat().st_mtime_ns == mtime  # read, not trained again
    files[0].write_text("garbage")  # a corrupt entry is trained again and replaced
    assert bpe_cached(docs, 512, tmp_path).merges == a.merges
    assert training_key(docs[:-1], 512) != training_key(docs, 512) != training_key(docs, 1024)


# Recorded before the tokenizer group existed: the default (bytes) must keep them.
OLD_KEYS = {
    (): ("bd1e3a8d8a5a8258", "c4a84b777f8b11aa", "6a1ad9a03aac54bc"),
    ("experiment=smoke",): ("8e594ff6706e4c95", "044c53446eb89e0e", "03e7eb9dccaef192"),
}


@pytest.mark.parametrize("overrides", list(OLD_KEYS))
@pytest.mark.parametrize("extra", [(), ("tokenizer=bytes",), ("tokenizer=bytes", "tokenizer.vocab_size=2048")])
def test_bytes_keeps_every_earlier_hash_and_cache_key(overrides, extra):
    node = compose_cfg(list(overrides) + list(extra))
    cfg = to_object(node)
    d = config_dict(node)
    assert d["tokenizer"]["name"] == "bytes"
    got = (config_hash(d), base_eval_key(d), base_key(cfg, pretrain_source(cfg, str(REPO))))
    assert got == OLD_KEYS[overrides]
    assert gpt_config(cfg).vocab_size == 260 == model_vocab_size(cfg.tokenizer)


def test_bpe_changes_hash_base_key_and_model_vocab(tmp_path):
    over = ["experiment=smoke", f"pretrain.cache_dir={tmp_path}"]
    node = compose_cfg(over + ["tokenizer=bpe"])
    cfg = to_object(node)
    d = config_dict(node)
    assert (config_hash(d), base_eval_key(d)) != OLD_KEYS[("experiment=smoke",)][:2]
    src = pretrain_source(cfg, str(REPO))
    assert src["tokenizer"]["name"] == "bpe" and src["tokenizer"]["vocab_size"] == 1024
    key = base_key(cfg, src)
    assert key != OLD_KEYS[("experiment=smoke",)][2]
    assert gpt_config(cfg).vocab_size == 1024
    other = to_object(compose_cfg(over + ["tokenizer=bpe", "tokenizer.vocab_size=512"]))
    assert base_key(other, pretrain_source(other, str(REPO))) != key
    assert list((tmp_path / "tokenizers").glob("bpe-*.json"))  # trained once, cached


def test_bad_tokenizer_settings_are_refused():
    with pytest.raises(ConfigError, match="tokenizer.name='words'"):
        validate(to_object(compose_cfg(["tokenizer.name=words"])))
    with pytest.raises(ConfigError, match="tokenizer.vocab_size=100"):
        validate(to_object(compose_cfg(["tokenizer=bpe", "tokenizer.vocab_size=100"])))


@pytest.mark.parametrize("which", ["bytes", "bpe"])
def test_raw_loss_per_byte_counts_each_tokens_bytes(tok, which):
    import numpy as np

    from sft_sweep.data.prepare import join_docs
    from sft_sweep.data.templates import get_template
    from sft_sweep.nn import GPT, GPTConfig
    from sft_sweep.train.evaluate import Evaluator

    t = tok if which == "bpe" else ByteTokenizer()
    stream = join_docs(["The capital of Varnia is Ostrel. ünïcode ✓", "Another document, short."] * 6, t)
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, n_mlp=32, block_size=16, vocab_size=t.vocab_size), seed=0)
    ev = Evaluator(template=get_template("chatml", t), val_examples=[], heldout_tokens=stream, eval_items=[],
                   probe_items=[], follow_prompts=[], block_size=16, max_items=10, max_new_tokens=4,
                   raw_windows=4, batch_size=4)
    metrics, _ = ev.evaluate(model)
    n_targets = sum(len(w) - 1 for w in ev.raw)
    # the bytes of text each window's targets stand for
    n_bytes = sum(len(b"".join(t.token_bytes[int(i)] for i in w[1:])) for w in ev.raw)
    assert metrics["raw_nats_per_byte"] == pytest.approx(metrics["raw_loss"] * n_targets / n_bytes, rel=1e-9)
    if which == "bytes":  # one byte a token, the end-of-text ids none
        assert n_bytes == sum(int((w[1:] < 256).sum()) for w in ev.raw)
    else:
        assert n_bytes > 1.5 * n_targets
    assert np.isfinite(metrics["raw_nats_per_byte"])


def test_a_vocabulary_the_text_cannot_fill_fails_the_job_with_the_largest_that_fits(tmp_path):
    from sft_sweep.data.prepare import prepare

    cfg = to_object(compose_cfg(["tokenizer=bpe", "tokenizer.vocab_size=8192", f"pretrain.cache_dir={tmp_path}"]))
    with pytest.raises(ConfigError, match=r"tokenizer.vocab_size=8192 needs 7932 merges, .* at most \d+"):
        prepare(cfg, str(REPO))
    assert not (tmp_path / "tokenizers").exists()  # nothing cached for a failure
