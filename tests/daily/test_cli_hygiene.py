"""The sft-sweep command as a user meets it: help, refused configs, --cfg with -m, missing plugins."""

import importlib.util

import pytest

from sft_sweep.appconf import conf_dir, missing_plugin
from sft_sweep.config import register_configs
from sft_sweep.config_check import unknown_keys
from tests.conftest import CONF_DIR, compose_cfg
from tests.daily.cli_support import run_cli

register_configs()



def test_conf_dir_is_the_top_level_conf_in_a_checkout():
    assert conf_dir() == CONF_DIR


@pytest.mark.parametrize("override,key", [("+optim.lrr=1", "optim.lrr"), ("+train.foo.bar=2", "train.foo"),
                                          ("+nonsense=1", "nonsense"), ("+data.world.n_country=3", "data.world.n_country"),
                                          ("+logger.wandb.project=x", "logger.wandb")])
def test_added_keys_outside_the_schema_are_found(override, key):
    assert unknown_keys(compose_cfg([override])) == [key]


def test_keys_of_a_selected_logger_are_checked():
    assert unknown_keys(compose_cfg(["logger=mlflow", "+logger.mlflow.uri=x"])) == ["logger.mlflow.uri"]
    assert unknown_keys(compose_cfg(["logger=[mlflow,tensorboard]", "logger.mlflow.tracking_uri=http://h:5000"])) == []


def test_documented_additions_are_allowed():
    cfg = compose_cfg(["data=files", "data.datasets.main.path=a.json", "+data.datasets.tools.path=b.json",
                    "+data.datasets.tools.role_map={observation: tool}", "+mix.weights.main=1", "+mix.weights.tools=2"])
    assert unknown_keys(cfg) == []


def test_added_key_is_refused_once_and_leaves_no_run_dir(tmp_path):
    r = run_cli(["+optim.lrr=1", "experiment=smoke"], cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.count("optim.lrr") == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "runs").exists()


def test_bad_value_is_refused_once_and_leaves_no_run_dir(tmp_path):
    r = run_cli(["optim.lr=-1", "experiment=smoke"], cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.count("optim.lr=-1.0: must be > 0") == 1, r.stderr
    assert not (tmp_path / "runs").exists()


def test_added_key_in_a_multirun_is_refused_before_any_job(tmp_path):
    r = run_cli(["-m", "+optim.lrr=1", "experiment=smoke"], cwd=tmp_path)
    assert r.returncode == 1 and "optim.lrr" in r.stderr
    assert not (tmp_path / "runs").exists()


def test_multirun_with_cfg_job_prints_the_composed_config(tmp_path):
    r = run_cli(["-m", "experiment=smoke", "optim.lr=1e-4,1e-3", "--cfg", "job"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "# multirun: the jobs differ in optim.lr=1e-4,1e-3" in r.stdout
    assert "name: smoke" in r.stdout and "n_layer: 2" in r.stdout
    assert not (tmp_path / "runs").exists()


def test_help_names_the_app_and_shows_the_common_commands(tmp_path):
    r = run_cli(["--help"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("sft-sweep")
    assert "sft-sweep -m experiment=quickstart" in r.stdout and "cli" not in r.stdout.split()
    assert "experiment: " in r.stdout


def test_missing_plugin_names_its_extra():
    if importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is not None:
        pytest.skip("the Ray launcher is installed here")
    msg = missing_plugin(["hydra/launcher=ray_cluster"])
    assert msg is not None and "pip install 'sft-sweep[ray]'" in msg and "\n" not in msg
    assert missing_plugin(["hydra/launcher=local_parallel"]) is None  # joblib is a core dependency


def test_missing_plugin_is_one_line_on_the_command_line(tmp_path):
    if importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is not None:
        pytest.skip("the Ray launcher is installed here")
    r = run_cli(["-m", "experiment=smoke", "hydra/launcher=ray"], cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0 and "sft-sweep[ray]" in r.stderr
