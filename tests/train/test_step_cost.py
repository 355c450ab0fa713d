"""pretrain.step_cost: equal pre-training time across tokenizers from a fixed, measured table. The
table decides each base's steps; the base's cache key holds those steps, never the table, and
without a table every hash and key is what it was."""

from __future__ import annotations

import numpy as np
import pytest

from sft_sweep.config import config_dict, config_hash, pretrain_steps, register_configs, to_object, validate
from sft_sweep.data.prepare import pretrain_source
from sft_sweep.errors import ConfigError
from sft_sweep.train.pretrain import base_key, gpt_config, pretrain
from sft_sweep.nn import GPT
from tests.conftest import REPO, compose_cfg
from tests.test_bpe import OLD_KEYS

register_configs()

TABLE = "++pretrain.step_cost={260:1.0,512:1.25,1024:2.0}"


def _cfg(over):
    node = compose_cfg(["experiment=smoke"] + over)
    return node, to_object(node)


def test_no_table_keeps_every_hash_and_key():
    node, cfg = _cfg([])
    d = config_dict(node)
    assert d["pretrain"]["step_cost"] == {}
    assert pretrain_steps(cfg) == cfg.pretrain.steps
    got = (config_hash(d), base_key(cfg, pretrain_source(cfg, str(REPO))))
    assert got == (OLD_KEYS[("experiment=smoke",)][0], OLD_KEYS[("experiment=smoke",)][2])


def test_steps_follow_the_cost_of_the_jobs_vocabulary(tmp_path):
    over = [TABLE, "pretrain.steps=100", f"pretrain.cache_dir={tmp_path}"]
    assert pretrain_steps(_cfg(over)[1]) == 100                                    # bytes: 260 ids, cost 1
    assert pretrain_steps(_cfg(over + ["tokenizer=bpe512"])[1]) == 80              # 100 / 1.25
    assert pretrain_steps(_cfg(over + ["tokenizer=bpe"])[1]) == 50                 # 100 / 2.0
    assert pretrain_steps(_cfg([TABLE, "pretrain.steps=0"])[1]) == 0
    assert pretrain_steps(_cfg(["++pretrain.step_cost={260:1000.0}", "pretrain.steps=10"])[1]) == 1


def test_base_key_holds_the_steps_not_the_table(tmp_path):
    """A base of the same steps is the same base, with or without the table that chose them;
    another table that gives other steps is another base; the job's own hash sees the table."""
    cache = f"pretrain.cache_dir={tmp_path}"
    n1, with_table = _cfg([TABLE, "pretrain.steps=100", "tokenizer=bpe", cache])
    n2, plain = _cfg(["pretrain.steps=50", "tokenizer=bpe", cache])
    src = pretrain_source(plain, str(REPO))
    assert base_key(with_table, src) == base_key(plain, src)
    _, other = _cfg(["++pretrain.step_cost={260:1.0,1024:1.5}", "pretrain.steps=100", "tokenizer=bpe", cache])
    assert base_key(other, src) != base_key(plain, src)
    # the bytes job of the table keeps its steps and so its base
    nb, bytes_t = _cfg([TABLE, "pretrain.steps=100"])
    _, bytes_p = _cfg(["pretrain.steps=100"])
    sb = pretrain_source(bytes_p, str(REPO))
    assert base_key(bytes_t, sb) == base_key(bytes_p, sb)
    assert config_hash(config_dict(nb)) != config_hash(config_dict(compose_cfg(["experiment=smoke",
                                                                                "pretrain.steps=100"])))


def test_a_table_without_the_jobs_vocabulary_or_with_a_bad_cost_is_refused():
    with pytest.raises(ConfigError, match="lists no cost for this job's vocabulary \\(512 ids\\)"):
        validate(_cfg(["++pretrain.step_cost={260:1.0}", "tokenizer=bpe512"])[1])
    with pytest.raises(ConfigError, match="every cost must be > 0"):
        validate(_cfg(["++pretrain.step_cost={260:0.0}"])[1])
    validate(_cfg([TABLE, "tokenizer=bpe512"])[1])


def test_pretrain_runs_the_steps_of_the_table():
    _, cfg = _cfg([TABLE, "pretrain.steps=4", "model=tiny", "pretrain.batch_size=2", "model.block_size=16"])
    cfg.tokenizer.name, cfg.tokenizer.vocab_size = "bpe", 512
    model = GPT(gpt_config(cfg), seed=0)
    tokens = np.random.default_rng(0).integers(0, 500, size=400)
    curve = pretrain(model, tokens, cfg, progress=False)
    assert curve[-1]["step"] == 3  # round(4 / 1.25)


def test_the_tokenizers_experiment_gives_each_vocabulary_its_steps():
    for tok in ("bytes", "bpe512", "bpe", "bpe2048"):
        _, cfg = (lambda n: (n, to_object(n)))(compose_cfg(["experiment=tokenizers", f"tokenizer={tok}"]))
        validate(cfg)
        cost = cfg.pretrain.step_cost[gpt_config(cfg).vocab_size]
        assert pretrain_steps(cfg) == round(cfg.pretrain.steps / cost)

