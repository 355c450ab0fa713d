"""The peft group and the mitigation settings: defaults keep every earlier hash; each counts when set."""

import pytest
from hydra import compose, initialize_config_dir

from sft_sweep.appconf import conf_dir
from sft_sweep.config import Config, base_eval_key, config_dict, config_hash, register_configs, to_object, validate
from sft_sweep.errors import ConfigError
from sft_sweep.jobfiles import flatten


def _compose(*overrides):
    register_configs()
    with initialize_config_dir(str(conf_dir()), version_base=None):
        return compose("config", overrides=list(overrides))


def _hash(*overrides):
    d = config_dict(_compose(*overrides))
    return config_hash(flatten(d)), base_eval_key(d)


def test_defaults_keep_the_hash_recorded_before_the_mitigation_settings():
    # recorded by the commit before the peft group existed (quickstart, lr 3e-4, replay 0)
    assert _hash("experiment=quickstart", "optim.lr=3e-4", "mix.replay_ratio=0") == \
        ("6e5c1f896888abae", "c4a84b777f8b11aa")
    # options of another method change nothing under full fine-tuning
    assert _hash("experiment=quickstart", "optim.lr=3e-4", "mix.replay_ratio=0", "peft.rank=2",
                 "peft.trainable_layers=1") == ("6e5c1f896888abae", "c4a84b777f8b11aa")


@pytest.mark.parametrize("override", ["peft=lora", "peft=freeze", "optim.l2_to_base=0.1",
                                      "train.neftune_alpha=5", "eval.blend=[0.5]"])
def test_each_mitigation_setting_counts_when_set(override):
    plain = _hash("experiment=quickstart")
    h, base_eval = _hash("experiment=quickstart", override)
    assert h != plain[0]
    assert base_eval == plain[1]  # none of them changes what the base's evaluation measures


def test_lora_options_count_under_lora_only():
    assert _hash("peft=lora", "peft.rank=4")[0] != _hash("peft=lora")[0]
    assert _hash("peft=lora", "peft.trainable_layers=1")[0] == _hash("peft=lora")[0]
    assert _hash("peft=freeze", "peft.rank=4")[0] == _hash("peft=freeze")[0]


@pytest.mark.parametrize("override,key", [
    ("peft.method=adapter", "peft.method"), ("peft.rank=0", "peft.rank"),
    ("peft.targets=[attn.qkv,lm_head]", "peft.targets"), ("peft.trainable_layers=9", "peft.trainable_layers"),
    ("optim.l2_to_base=-1", "optim.l2_to_base"), ("train.neftune_alpha=-5", "train.neftune_alpha"),
    ("eval.blend=[1.5]", "eval.blend")])
def test_bad_values_name_their_key(override, key):
    group = ["peft=lora"] if "rank" in key or "targets" in key else ["peft=freeze"] if "layers" in key else []
    cfg = to_object(_compose(*group, override))
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate(cfg)


def test_schema_defaults():
    c = Config()
    assert (c.peft.method, c.peft.rank, c.peft.alpha, c.peft.trainable_layers) == ("full", 8, 16.0, 2)
    assert c.peft.targets == ["attn.qkv", "attn.proj", "mlp.fc", "mlp.proj"]
