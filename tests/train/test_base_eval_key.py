"""The base model's cached evaluation is keyed by what decides it: on files, also train.seed,
which draws the held-out split."""

from __future__ import annotations

from sft_sweep.config import base_eval_key, config_dict, register_configs
from tests.conftest import compose_cfg
from tests.test_bpe import OLD_KEYS

register_configs()

def test_base_evaluation_key_follows_the_seed_that_draws_a_files_held_out_split():
    """On files, train.seed draws the held-out split: each seed's base evaluation is its own."""
    def key(over):
        return base_eval_key(config_dict(compose_cfg(over)))

    assert key(["experiment=own_data", "train.seed=1"]) != key(["experiment=own_data", "train.seed=0"])
    assert key(["experiment=own_data", "mix.replay_ratio=0"]) == key(["experiment=own_data", "mix.replay_ratio=0.3"])
    # the world's held-out items do not move with the seed: its keys stay
    assert key(["experiment=smoke", "train.seed=1"]) == key(["experiment=smoke"]) == OLD_KEYS[("experiment=smoke",)][1]
