"""The product's central claim, measured for real on the mini model (slow: ~2-3 minutes).

A base model pre-trained on the synthetic world does not follow the chat format; SFT at a
moderate learning rate teaches it to, and costs raw-text loss on held-out pre-training text.
"""

import pytest
from hydra import compose, initialize_config_dir

from sft_sweep.config import register_configs
from sft_sweep.train.job import Job
from tests.conftest import CONF_DIR, REPO

register_configs()


@pytest.mark.slow
def test_sft_teaches_following_and_costs_raw_text_loss(tmp_path):
    overrides = ["experiment=quickstart", "optim.lr=3e-4", "train.epochs=2", "train.eval_interval=1000",
                 f"pretrain.cache_dir={tmp_path / 'cache'}"]
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
