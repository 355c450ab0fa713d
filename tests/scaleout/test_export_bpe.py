"""sft-sweep-export of a model with the BPE tokenizer: its tokenizer.json gives our ids (read by
Hugging Face ``tokenizers`` here; by transformers' AutoTokenizer where transformers is installed),
and a tokenizer that is not the model's is refused."""

import json

import pytest

from sft_sweep.bpe import train_bpe
from sft_sweep.data.templates import get_template
from sft_sweep.export import ExportError, export_model
from sft_sweep.nn import GPT, GPTConfig
from tests.data.data_helpers import shared_file

from .export_fixtures import SHAPE


@pytest.fixture(scope="module")
def bpe():
    c4 = shared_file("c4_demo.jsonl").read_text(encoding="utf-8").splitlines()
    return train_bpe([json.loads(x)["text"] for x in c4], 512)


@pytest.fixture(scope="module")
def exported(bpe, tmp_path_factory):
    out = tmp_path_factory.mktemp("bpe_export")
    model = GPT(GPTConfig(**SHAPE, vocab_size=bpe.vocab_size), seed=0)
    export_model(model, out, get_template("chatml", bpe))
    return out


def _texts():
    records = json.loads(shared_file("alpaca_en_demo.json").read_text(encoding="utf-8"))
    return [r["instruction"] + "\n" + r["input"] + "\n" + r["output"] for r in records]


def test_tokenizer_json_gives_our_ids(bpe, exported):
    from tokenizers import Tokenizer

    theirs = Tokenizer.from_file(str(exported / "tokenizer.json"))
    for text in _texts():
        assert theirs.encode(text, add_special_tokens=False).ids == bpe.encode(text)
        assert theirs.decode(bpe.encode(text)) == text
    for name, i in bpe.special_tokens.items():
        assert theirs.token_to_id(name) == i
    cfg = json.loads((exported / "config.json").read_text())
    assert cfg["vocab_size"] == 512 and cfg["pad_token_id"] == 511 and cfg["eos_token_id"] == bpe.im_end_id


def test_transformers_loads_it_with_our_ids(bpe, exported):
    transformers = pytest.importorskip("transformers")
    tok = transformers.AutoTokenizer.from_pretrained(exported)
    for text in _texts()[:200]:
        assert tok(text)["input_ids"] == bpe.encode(text)
    assert tok.convert_tokens_to_ids(list(bpe.special_tokens)) == list(bpe.special_tokens.values())


def test_a_tokenizer_of_another_size_is_refused(bpe, tmp_path):
    model = GPT(GPTConfig(**SHAPE), seed=0)  # 260 ids: the byte tokenizer's model
    with pytest.raises(ExportError, match="260 token ids, but the bpe tokenizer has 512"):
        export_model(model, tmp_path, get_template("chatml", bpe))
