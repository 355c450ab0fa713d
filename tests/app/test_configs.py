"""Every shipped config composes with Hydra's compose API and passes validation."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from sft_sweep.config import Config, config_hash, config_dict, register_configs, to_object, validate
from sft_sweep.errors import ConfigError
from tests.conftest import CONF_DIR

register_configs()
GROUPS = ["model", "data", "template", "optim", "mix", "train", "eval", "pretrain"]


def _compose(overrides=(), hydra=False):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return compose("config", overrides=list(overrides), return_hydra_config=hydra)


def _options(group):
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in _options(g)])
def test_every_group_option_composes_and_validates(group, option):
    cfg = _compose([f"{group}={option}"])
    if group == "data" and option == "files":
        with pytest.raises(ConfigError, match=r"data\.datasets\.main\.path is required"):
            to_object(cfg)  # needs the user's file path
        cfg = _compose([f"{group}={option}", "data.datasets.main.path=x.json"])
    obj = to_object(cfg)
    assert isinstance(obj, Config)
    validate(obj)


# Composing every swept value of every experiment takes ~1 min: the fast suite composes the
# quickstart's, the smoke test's and the own-data recipe's, the slow suite all the others.
FAST_EXPERIMENTS = ("quickstart", "smoke", "own_data")


@pytest.mark.parametrize("experiment", [e if e in FAST_EXPERIMENTS else pytest.param(e, marks=pytest.mark.slow)
                                        for e in _options("experiment")])
def test_every_experiment_composes_with_a_sweep(experiment):
    cfg = _compose([f"experiment={experiment}"], hydra=True)
    validate(to_object(cfg))
    params = cfg.hydra.sweeper.params
    assert params, f"experiment {experiment} sweeps nothing"
    assert cfg.name == experiment
    # Each swept value must itself compose and validate.
    for key, values in params.items():
        for v in str(values).split(","):
            validate(to_object(_compose([f"experiment={experiment}", f"{key}={v.strip()}"])))


@pytest.mark.parametrize("experiment", ["lr_sweep", "forgetting", "quickstart"])
def test_lr_experiments_span_low_to_high(experiment):
    cfg = _compose([f"experiment={experiment}"], hydra=True)
    lrs = [float(v) for v in str(cfg.hydra.sweeper.params["optim.lr"]).split(",")]
    assert min(lrs) <= 3e-5 and max(lrs) >= 1e-3


def test_typo_in_override_fails_at_composition():
    with pytest.raises(ConfigCompositionException, match="lrr"):
        _compose(["optim.lrr=0.1"])


def test_world_settings_are_typed_keys():
    cfg = to_object(_compose(["data.world.n_countries=60", "data.world.seed=3"]))
    assert cfg.data.world.n_countries == 60 and cfg.data.world.seed == 3
    with pytest.raises(ConfigCompositionException, match="n_countrie"):
        _compose(["data.world.n_countrie=60"])


def test_wrong_type_fails_at_composition():
    with pytest.raises(ConfigCompositionException):
        _compose(["train.epochs=two"])


@pytest.mark.parametrize("override,needle", [
    ("optim.lr=0", "optim.lr"),
    ("optim.lr=-1e-4", "optim.lr"),
    ("train.epochs=0", "train.epochs"),
    ("mix.replay_ratio=1.0", "mix.replay_ratio"),
    ("mix.replay_ratio=-0.1", "mix.replay_ratio"),
    ("train.batch_size=0", "train.batch_size"),
    ("model.n_head=3", "model.n_head"),
    ("template.name=vicuna", "template.name"),
    ("template.mask=some", "template.mask"),
    ("optim.schedule=step", "optim.schedule"),
    ("train.truncation=wrap", "train.truncation"),
    ("eval.objective=loss", "eval.objective"),
    ("data.world.n_countries=2", "data.world.n_countries"),
    ("data.world.probe_fraction=1.5", "data.world.probe_fraction"),
])
def test_invalid_values_are_named(override, needle):
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        validate(to_object(_compose([override])))


def test_config_hash_ignores_threads_but_not_lr():
    a = config_dict(_compose([]))
    b = config_dict(_compose(["train.threads=1"]))
    c = config_dict(_compose(["optim.lr=1e-3"]))
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) != config_hash(c)


def test_sweep_dir_is_deterministic():
    cfg = _compose(["experiment=quickstart"], hydra=True)
    assert OmegaConf.select(cfg, "hydra.sweep.dir", throw_on_resolution_failure=False) == "runs/sweeps/quickstart"


def test_datasets_can_be_added_from_the_command_line():
    cfg = to_object(_compose(["data=files", "data.datasets.main.path=a.json", "+data.datasets.tools.path=b.json",
                              "+data.datasets.tools.format=sharegpt", "+data.datasets.tools.role_map={observation: tool}",
                              "+mix.weights.main=1", "+mix.weights.tools=2"]))
    validate(cfg)
    assert set(cfg.data.datasets) == {"main", "tools"}
    assert cfg.data.datasets["tools"].format == "sharegpt"
    assert cfg.data.datasets["tools"].role_map == {"observation": "tool"}


@pytest.mark.parametrize("overrides,needle", [
    (["+data.datasets.x.pth=a.json"], r"data\.datasets\.x: unknown key"),
    (["+data.datasets.x.format=alpaca"], r"data\.datasets\.x\.path is required"),
])
def test_bad_dataset_entries_are_named(overrides, needle):
    with pytest.raises(ConfigError, match=needle):
        to_object(_compose(["data=files", "data.datasets.main.path=a.json", *overrides]))


def test_weight_for_an_unknown_dataset_is_refused():
    with pytest.raises(ConfigError, match=r"mix\.weights\.nope"):
        validate(to_object(_compose(["data=files", "data.datasets.main.path=a.json", "+mix.weights.nope=1"])))


def test_hydra_default_config_equals_the_dataclass_defaults():
    """Defaults live in the dataclasses only: a Hydra run without overrides and Config() agree."""
    composed = config_dict(_compose())
    assert composed == OmegaConf.to_container(OmegaConf.structured(Config()))


def test_one_rule_for_every_cache_key():
    """Where and how fast a job runs changes none of its keys; what it computes changes them."""
    from sft_sweep.config import base_eval_key
    from sft_sweep.train.pretrain import base_key

    def keys(*overrides):
        node = _compose(overrides)
        d, cfg = config_dict(node), to_object(node)
        return config_hash(d), base_eval_key(d), base_key(cfg, {"text": "world"})

    plain = keys()
    assert keys("train.threads=3", "pretrain.threads=2", "pretrain.cache_dir=/elsewhere",
                "train.log_interval=7", "eval.objective=final.answer_acc") == plain
    lr = keys("optim.lr=1e-3")
    assert lr[0] != plain[0] and lr[1:] == plain[1:]
    steps = keys("pretrain.steps=5")
    assert steps[0] != plain[0] and steps[1] == plain[1] and steps[2] != plain[2]


# The quickstart's config hashes as jobs recorded them before the settings added since (decoding
# controls, data-size, multi-turn and system-prompt items, max_file_mb) existed: a finished sweep
# must stay finished, so settings left at their "off" value cannot change a hash.
QUICKSTART_HASHES = {
    ("0", "0.0003"): "6e5c1f896888abae",
    ("0.5", "3e-05"): "de68b8fa9ffa5739",
}


@pytest.mark.parametrize("replay,lr", sorted(QUICKSTART_HASHES))
def test_settings_added_later_leave_earlier_hashes_alone(replay, lr):
    d = config_dict(_compose(["experiment=quickstart", f"mix.replay_ratio={replay}", f"optim.lr={lr}"]))
    assert config_hash(d) == QUICKSTART_HASHES[(replay, lr)]
