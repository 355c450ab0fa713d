"""A whole job with tokenizer=bpe on the real demo files: it trains a model of the tokenizer's
vocabulary, records which tokenizer it used, its base model is cached under a key of its own,
and sft-sweep-eval and the chat session rebuild the same tokenizer from the job's config."""

import json

import pytest

from sft_sweep.config import register_configs
from sft_sweep.jobmodels import job_config
from sft_sweep.jobtokenizer import job_tokenizer
from sft_sweep.nn import read_checkpoint_config
from sft_sweep.train.job import Job
from tests.conftest import REPO, compose_cfg

register_configs()


@pytest.fixture(scope="module")
def job(tmp_path_factory, shared_data):
    tmp = tmp_path_factory.mktemp("bpe_job")
    extra = ["data=alpaca_demo", f"data.datasets.main.path={shared_data / 'alpaca_en_demo.json'}",
             f"data.pretrain_text={shared_data / 'c4_demo.jsonl'}",
             "data.quality.max_response_chars=200", "+data.datasets.main.max_examples=60",
             "tokenizer=bpe", "tokenizer.vocab_size=512", "eval.max_new_tokens=24", "eval.max_items=12"]
    cfg = compose_cfg(["experiment=smoke", "train.threads=1", f"pretrain.cache_dir={tmp / 'cache'}", *extra])
    summary = Job(cfg, tmp / "job", overrides=extra, base_dir=str(REPO)).run()
    return tmp, summary


@pytest.fixture(scope="module")
def shared_data():
    from tests.conftest import shared_data_dir

    d = shared_data_dir()
    if d is None:
        pytest.skip("../shared/data (real third-party demo files) is not present beside the repository")
    return d


def test_the_job_trains_and_records_its_tokenizer(job):
    tmp, s = job
    assert s["status"] == "completed", s.get("error")
    rep = s["data"]["tokenizer"]
    assert rep["name"] == "bpe" and rep["vocab_size"] == 512
    assert rep["pretrain_chars_per_token"] > 1.8
    assert read_checkpoint_config(tmp / "job" / "model.npz").vocab_size == 512
    for k in ("raw_nats_per_byte", "response_nats_per_byte", "raw_loss"):
        assert k in s["final"], k
    # per byte is smaller than per token: a token holds about two bytes
    assert s["final"]["raw_nats_per_byte"] < s["final"]["raw_loss"] / 1.5
    bases = list((tmp / "cache").glob("base-*/meta.json"))
    assert len(bases) == 1
    source = json.loads(bases[0].read_text())["source"]
    assert source["tokenizer"] == {"name": "bpe", "vocab_size": 512, "merges_sha256": rep["merges_sha256"]}
    assert len(list((tmp / "cache" / "tokenizers").glob("bpe-*.json"))) == 1


def test_tools_rebuild_the_jobs_tokenizer(job):
    tmp, s = job
    tok = job_tokenizer(job_config(tmp / "job"), tmp / "job")
    assert tok.vocab_size == 512 and tok.digest == s["data"]["tokenizer"]["merges_sha256"]
    assert job_tokenizer({"tokenizer": {"name": "bytes"}}).vocab_size == 260
    assert job_tokenizer({}).vocab_size == 260  # a job from before the tokenizer group
