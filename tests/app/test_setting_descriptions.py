"""The hashing rules and the base key are read from the settings' descriptions in the schema."""

import dataclasses

import pytest

from sft_sweep import config
from sft_sweep.config import SETTINGS, Config, base_settings, semantic
from sft_sweep.nn.config import ModelShape
from sft_sweep.setting import Setting, SettingIndex, setting


def test_the_derived_rules_are_those_written_out_before():
    assert set(config.NON_SEMANTIC_KEYS) == {
        "train.threads", "pretrain.threads", "pretrain.cache_dir", "train.log_interval",
        "train.checkpoint_interval", "eval.objective", "eval.objectives", "data.max_file_mb"}
    assert config.NON_SEMANTIC_GROUPS == ("logger",)
    assert config.UNSET_IS_ABSENT == ("pretrain.init_from",)
    assert config.OFF_IS_ABSENT == {
        "eval.repetition_penalty": 1.0, "eval.no_repeat_ngram": 0, "data.world.train_subset": 0,
        "data.world.n_eval_multi_turn": 0, "data.world.system_contrast": False,
        "data.world.n_eval_system": 0, "data.world.caps_doc_fraction": 0.0, "eval.periodic_items": 20,
        "optim.l2_to_base": 0.0, "train.neftune_alpha": 0.0, "eval.blend": [], "peft.method": "full",
        # described the new way since
        "pretrain.schedule": "cosine", "pretrain.grad_clip": 1.0, "tokenizer.name": "bytes",
        "pretrain.step_cost": {}}
    assert config.ONLY_WHEN == {
        **{f"peft.{k}": ("peft.method", "lora") for k in ("rank", "alpha", "rslora", "targets")},
        **{f"peft.{k}": ("peft.method", "freeze") for k in ("trainable_layers", "train_embeddings")},
        "tokenizer.vocab_size": ("tokenizer.name", "bpe")}
    assert set(config.BASE_EVAL_GROUPS) == {"data", "tokenizer", "template", "eval", "model"}
    assert config.NOT_BASE_EVAL_KEYS == ("eval.blend",)


def test_the_base_settings_are_the_shape_and_the_pretraining_settings_that_change_results():
    cfg = Config()
    got = base_settings(cfg)
    assert got["model"] == {f.name: getattr(cfg.model, f.name) for f in dataclasses.fields(ModelShape)}
    assert got["pretrain"] == semantic(cfg.pretrain.__dict__, "pretrain.")
    assert set(got) == {"model", "pretrain"}
    assert "cache_dir" not in got["pretrain"] and "init_from" not in got["pretrain"]


def test_a_dataset_entry_is_described_by_its_dataclass():
    assert SETTINGS.described("data.datasets.main.format").role == "format"
    assert semantic({"data.datasets.main.max_examples": 0, "data.datasets.main.path": "a"}) == \
        {"data.datasets.main.path": "a"}


def test_keys_the_schema_does_not_describe_follow_their_group():
    assert not SETTINGS.rules("logger.mlflow.tracking_uri").hashed
    assert SETTINGS.rules("mix.weights.web").hashed
    assert SETTINGS.rules("data.anything").base_eval and not SETTINGS.rules("optim.anything").base_eval
    assert SETTINGS.described("mix.weights.web") is None


def test_a_new_setting_is_one_described_field():
    @dataclasses.dataclass
    class Knobs:
        mode: str = setting("a", off="a")
        depth: int = setting(3, only_when=("mode", "b"), label="depth")

    @dataclasses.dataclass
    class Root:
        knobs: Knobs = dataclasses.field(default_factory=Knobs)

    idx = SettingIndex(Root)
    assert idx.described("knobs.depth").label == "depth"
    assert idx.described("knobs.mode").off == "a"
    assert idx.keys(label="depth") == ["knobs.depth"]


def test_each_setting_with_a_role_names_the_same_part_with_one_description_kind():
    shows = {s.show for s in SETTINGS.settings.values()}
    assert shows <= {"plain", "sci", "percent", "list"}
    assert SETTINGS.with_role("lr") == ["optim.lr", "pretrain.lr"]
    with pytest.raises(ValueError):
        Setting(show="bold")


def test_pretraining_reads_its_schedule_and_clipping_and_keeps_earlier_base_keys():
    from sft_sweep.config import validate
    from sft_sweep.errors import ConfigError

    cfg = Config()
    plain = base_settings(cfg)
    assert "schedule" not in plain["pretrain"] and "grad_clip" not in plain["pretrain"]
    cfg.pretrain.schedule, cfg.pretrain.grad_clip = "linear", 0.5
    assert base_settings(cfg)["pretrain"] == {**plain["pretrain"], "schedule": "linear", "grad_clip": 0.5}
    cfg.pretrain.schedule = "step"
    with pytest.raises(ConfigError, match=r"pretrain\.schedule"):
        validate(cfg)
