"""The product's central claims, measured for real on the mini model (slow: minutes each).

A base model pre-trained on the synthetic world does not follow the chat format; SFT at a
moderate learning rate teaches it to, and costs raw-text loss on held-out pre-training text.
"""

import pytest
from hydra import compose, initialize_config_dir

from sft_sweep.config import register_configs
from sft_sweep.train.job import Job
from tests.conftest import CONF_DIR, REPO

register_configs()


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One base model for the module's tests (pre-training it is most of their time)."""
    return tmp_path_factory.mktemp("cache")


@pytest.mark.slow
def test_sft_teaches_following_and_costs_raw_text_loss(tmp_path, cache):
    overrides = ["experiment=quickstart", "optim.lr=3e-4", "train.epochs=2", "train.eval_interval=1000",
                 f"pretrain.cache_dir={cache}"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = compose("config", overrides=overrides)
    s = Job(cfg, tmp_path / "job", overrides=overrides, base_dir=str(REPO)).run()
    assert s["status"] == "completed", s.get("error")
    base, final = s["base"], s["final"]
    assert base["follow_rate"] <= 0.05
    assert final["follow_rate"] >= 0.8
    assert final["response_loss"] < 0.5 * base["response_loss"]
    assert s["forgetting_pct"] > 5.0
    # The base model knows the probe facts before any SFT (ranked above distractors).
    assert base["knowledge_mc_acc"] >= 0.4
    # ... and completes the asked facts in the prose's phrasing, but answers no question.
    assert base["base_knowledge_sft"] >= 0.9 and base["base_knowledge_probe"] >= 0.9
    assert base["answer_acc"] <= 0.1 and base["knowledge_acc"] <= 0.1


@pytest.mark.slow
def test_replay_keeps_the_facts_while_sft_teaches_answers(tmp_path, cache):
    """The quickstart's best setting (lr 3e-4, fresh replay 0.5, 4 epochs) against the same lr
    without replay, world seed 0 (measured: 89% / 92.5% / -0.4% against 56% / 17.5% / +227%)."""
    runs = {}
    for ratio in (0.0, 0.5):
        overrides = ["experiment=quickstart", "optim.lr=3e-4", f"mix.replay_ratio={ratio}",
                     "train.eval_interval=1000", f"pretrain.cache_dir={cache}"]
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
            cfg = compose("config", overrides=overrides)
        s = Job(cfg, tmp_path / f"replay{ratio}", overrides=overrides, base_dir=str(REPO)).run()
        assert s["status"] == "completed", s.get("error")
        runs[ratio] = s
    keep, lose = runs[0.5], runs[0.0]
    assert keep["final"]["follow_rate"] >= 0.95
    assert keep["final"]["answer_acc"] >= 0.75 and keep["final"]["knowledge_acc"] >= 0.8
    assert keep["forgetting_pct"] <= 5.0
    assert keep["final"]["base_knowledge_probe"] >= keep["base"]["base_knowledge_probe"] - 0.05
    assert lose["forgetting_pct"] >= 50.0
    assert lose["final"]["knowledge_acc"] <= keep["final"]["knowledge_acc"] - 0.3
    per_epoch = keep["data"]["mix"]["per_epoch"]
    assert [p["n_replay"] for p in per_epoch] == [450] * 4 and keep["data"]["mix"]["achieved_ratio"] == 0.5
