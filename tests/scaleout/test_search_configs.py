"""The hparams_search configs select our sweeper and compose with every sampler / pruner choice."""

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from sft_sweep.config import register_configs
from tests.conftest import CONF_DIR

pytest.importorskip("optuna", reason='needs pip install -e ".[search]"')

register_configs()


def _sweeper(*overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
    return OmegaConf.to_container(cfg.hydra.sweeper, resolve=True)


@pytest.mark.parametrize("search", ["answer_acc", "tradeoff"])
def test_searches_use_our_sweeper_with_a_journal_in_the_sweep_dir(search):
    s = _sweeper(f"hparams_search={search}")
    assert s["_target_"] == "hydra_plugins.sft_sweep_optuna.sweeper.SearchSweeper"
    assert s["storage"] is None  # the sweeper puts optuna.journal in the sweep dir
    assert s["params"]["optim.lr"] == "tag(log, interval(3e-5, 1e-2))"
    assert s["sampler"]["seed"] == 0


def test_answer_acc_prunes_from_the_first_evaluation():
    s = _sweeper("hparams_search=answer_acc")
    assert s["pruner"]["_target_"] == "optuna.pruners.SuccessiveHalvingPruner"
    assert s["pruner"]["min_resource"] == 50  # train.eval_interval of the default config
    assert _sweeper("hparams_search=answer_acc", "experiment=smoke")["pruner"]["min_resource"] == 6


@pytest.mark.parametrize("pruner", ["none", "median", "successive_halving", "hyperband"])
def test_every_pruner_can_be_chosen_on_the_command_line(pruner):
    s = _sweeper("hparams_search=answer_acc", f"hydra/sweeper/pruner={pruner}")
    assert (s["pruner"]["_target_"] is None) == (pruner == "none")


def test_multi_objective_search_has_no_pruner_and_nsga2():
    s = _sweeper("hparams_search=tradeoff")
    assert s["pruner"]["_target_"] is None and s["sampler"]["_target_"].endswith("NSGAIISampler")
    assert s["direction"] == ["maximize", "maximize", "minimize"]
