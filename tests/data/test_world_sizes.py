"""The number of training conversations as a setting: seeded, nested across sizes, exact."""

import pytest

from sft_sweep.data import WorldConfig, build_world
from sft_sweep.data.subset import nested_subset
from sft_sweep.errors import ConfigError


def _keys(convs):
    return [c.key() for c in convs]


@pytest.fixture(scope="module")
def worlds():
    return {n: build_world(WorldConfig(train_subset=n)) for n in (0, 25, 50, 100, 200)}


def test_world_subset_is_exact_nested_and_leaves_eval_alone(worlds):
    full = _keys(worlds[0].train)
    assert len(full) == 450
    prev: set = set()
    for n in (25, 50, 100, 200):
        w = worlds[n]
        got = _keys(w.train)
        assert len(got) == n == len(set(got)) == w.stats()["n_train"]
        assert set(got) <= set(full)
        assert prev <= set(got)          # the 25 are among the 50, the 50 among the 100, ...
        assert got == [k for k in full if k in set(got)]  # original order kept
        prev = set(got)
        assert _keys(w.val) == _keys(worlds[0].val)
        assert [i.prompt.key() for i in w.eval_items] == [i.prompt.key() for i in worlds[0].eval_items]
        assert w.pretrain_docs == worlds[0].pretrain_docs


def test_world_subset_is_seeded():
    a = _keys(build_world(WorldConfig(train_subset=50)).train)
    assert a == _keys(build_world(WorldConfig(train_subset=50)).train)
    b = build_world(WorldConfig(train_subset=50, seed=1))
    assert len(b.train) == 50 and _keys(b.train) != a


def test_planted_share_is_exact_at_every_size():
    for n in (25, 50, 100):
        w = build_world(WorldConfig(train_subset=n, low_quality_fraction=0.3))
        assert sum("low_quality" in c.meta for c in w.train) == round(0.3 * n)
        clean = {c.key() for c in build_world(WorldConfig(train_subset=n)).train}
        untouched = [c for c in w.train if "low_quality" not in c.meta]
        assert {c.key() for c in untouched} <= clean


def test_subset_larger_than_the_set_is_refused():
    with pytest.raises(ConfigError, match="train_subset"):
        WorldConfig(n_train=100, train_subset=200).validate()
    with pytest.raises(ConfigError, match="train_subset"):
        WorldConfig(train_subset=-1).validate()


def test_nested_subset():
    xs = list(range(1000))
    small, large = nested_subset(xs, 50, "s"), nested_subset(xs, 100, "s")
    assert len(small) == 50 and len(large) == 100 and set(small) < set(large)
    assert small == sorted(small)
    assert nested_subset(xs, 50, "t") != small
    assert nested_subset(xs, 0, "s") == xs and nested_subset(xs, 5000, "s") == xs
    with pytest.raises(ValueError):
        nested_subset(xs, -1, "s")


def _files_cfg(path, *extra):
    from sft_sweep.config import to_object
    from tests.app.test_job import SMOKE, compose_cfg

    return to_object(compose_cfg([*SMOKE, "data=files", f"data.datasets.main.path={path}", *extra]))


def test_file_dataset_cap_is_seeded_nested_and_exact(tmp_path):
    import json

    from sft_sweep.tokenizer import ByteTokenizer
    from sft_sweep.data import prepare

    recs = [{"messages": [{"role": "user", "content": f"question {i}?"},
                          {"role": "assistant", "content": f"answer {i}."}]} for i in range(120)]
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    tok = ByteTokenizer()

    def trained(*extra):
        data = prepare(_files_cfg(path, *extra))
        return data, {tok.decode(list(e.ids)) for e in data.train_examples}

    full_data, full = trained()
    small_data, small = trained("+data.datasets.main.max_examples=30")
    mid_data, mid = trained("+data.datasets.main.max_examples=60")
    assert len(small) == 30 and len(mid) == 60 and small < mid < full
    assert small_data.report["cap.main"] == {"n_in": len(full), "max_examples": 30, "n_kept": 30}
    # the held-out split does not move with the cap
    assert [list(e.ids) for e in small_data.val_examples] == [list(e.ids) for e in full_data.val_examples]
    assert trained("+data.datasets.main.max_examples=30")[1] == small
    from sft_sweep.errors import ConfigError
    with pytest.raises(ConfigError, match="max_examples"):
        prepare(_files_cfg(path, "+data.datasets.main.max_examples=-3"))
