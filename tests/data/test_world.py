"""The synthetic world: deterministic, probe entities isolated, evaluable, short enough."""

from __future__ import annotations

import pytest

from sft_sweep.data import (TEMPLATE_NAMES, EvalItem, WorldConfig, build_world, render,
                            render_prompt)
from sft_sweep.errors import ConfigError
from sft_sweep.tokenizer import ByteTokenizer

TOK = ByteTokenizer()


ALL_TASKS = {"capital": 0.2, "language": 0.16, "birth_year": 0.08, "context": 0.08,
             "arithmetic": 0.22, "reverse": 0.12, "uppercase": 0.12, "list": 0.10}


def full_config(**kw) -> WorldConfig:
    """Every optional part on: people, closed-set tasks, system prompts, two exchanges."""
    return WorldConfig(n_people=12, task_weights=dict(ALL_TASKS), n_train=1500, n_val=100,
                       multi_turn_fraction=0.12, system_fraction=0.35, one_word_answers=True, **kw)


@pytest.fixture(scope="module", params=["default", "full"])
def world(request):
    return build_world(WorldConfig(seed=0) if request.param == "default" else full_config(seed=0))


@pytest.fixture(scope="module")
def full_world():
    return build_world(full_config(seed=0))


def _snapshot(w):
    return (w.pretrain_docs, w.heldout_docs, [c.key() for c in w.train], [c.key() for c in w.val],
            [(i.prompt.key(), i.reference, i.response, i.distractors, i.task) for i in w.eval_items],
            [(i.prompt.key(), i.reference, i.distractors) for i in w.probe_items])


def test_deterministic_per_seed(world):
    again = build_world(world.config)
    assert _snapshot(again) == _snapshot(world)
    other = build_world(WorldConfig(**{**world.config.__dict__, "seed": 1}))
    assert other.pretrain_docs != world.pretrain_docs
    assert [c.name for c in other.countries] != [c.name for c in world.countries]


def test_default_sizes():
    s = build_world(WorldConfig(seed=0)).stats()
    assert s["n_countries"] == 40 and s["n_probe_countries"] == 10 and s["n_people"] == 0
    assert s["n_train"] == 450 and s["n_val"] == 50 and s["n_eval_items"] == 100
    assert s["n_probe_items"] == 10 * 2 * 2
    assert s["max_doc_bytes"] < 300
    assert s["fact_mentions_min"] >= 10
    assert s["n_multi_turn_train"] == 0 and s["n_with_system_train"] == 0
    assert set(s["train_tasks"]) == {"capital", "language", "context"}


def test_full_sizes(full_world):
    s = full_world.stats()
    assert s["n_train"] == 1500 and s["n_val"] == 100 and s["n_eval_items"] == 100
    assert s["n_probe_items"] == 10 * 2 * 2 + 3 * 2
    assert s["max_doc_bytes"] < 300
    assert s["n_multi_turn_train"] > 50 and s["n_with_system_train"] > 200


def _instruction_texts(w):
    texts = []
    for conv in w.train + w.val:
        texts += [t.content for t in conv.turns]
    for it in w.eval_items:
        texts += [t.content for t in it.prompt.turns]
        texts += [it.reference, it.response, *it.distractors, *it.choices()]
    return texts


def test_probe_entities_never_in_instruction_set(world):
    names = world.probe_names
    assert len(names) == 10 * 3 + (3 if world.people else 0)
    texts = _instruction_texts(world)
    # token level: the byte-id sequence of a probe name never occurs in any rendered sequence
    for name in names:
        for variant in {name, name.upper(), name.lower()}:
            needle = bytes(TOK.encode(variant))
            for conv in world.train + world.val:
                ids, _ = render(conv, "chatml")
                hay = bytes(i for i in ids if i < 256)
                assert needle not in hay
    low = "\n".join(texts).lower()
    for name in names:
        assert name.lower() not in low, name
    # ... but they are in the pre-training prose, several times each
    pre = "\n".join(world.pretrain_docs)
    for name in names:
        assert pre.count(name) >= 5, name


def test_heldout_docs_are_not_pretrain_docs(world):
    assert len(world.heldout_docs) == 60
    assert not set(world.heldout_docs) & set(world.pretrain_docs)


def test_splits_are_disjoint(world):
    train = {c.key() for c in world.train}
    val = {c.key() for c in world.val}
    assert len(train) == len(world.train) and len(val) == len(world.val)
    assert not train & val
    prompts = {c.key()[:-1] for c in world.train + world.val}
    for it in world.eval_items:
        assert it.prompt.key() not in prompts


def test_every_eval_item_has_reference_and_distractors(world):
    for it in world.eval_items + world.probe_items:
        assert isinstance(it, EvalItem)
        assert it.reference and it.response
        assert it.prompt.turns[-1].role == "user"
        assert len(it.distractors) == 9, (it.task, it.distractors)
        assert it.reference not in it.distractors
        assert it.is_correct(it.response)
        assert it.is_correct(it.reference)
        choices = it.choices()
        assert choices[0] == it.response and len(choices) == 10
        assert len(set(choices)) == 10
        for c in choices[1:]:
            assert not it.is_correct(c), (it.task, c)
    tasks = {it.task for it in world.eval_items}
    if world.people:
        assert {"capital", "language", "arithmetic", "reverse", "uppercase", "list", "context"} <= tasks
        assert {it.task for it in world.probe_items} == {"probe_capital", "probe_language",
                                                          "probe_birth_year"}
    else:
        assert tasks == {"capital", "language", "context"}
        assert {it.task for it in world.probe_items} == {"probe_capital", "probe_language"}


def test_everything_fits_the_block(world):
    for name in TEMPLATE_NAMES:
        for conv in world.train + world.val:
            assert len(render(conv, name)[0]) <= 128
        for it in world.eval_items + world.probe_items:
            prompt = render_prompt(it.prompt, name)
            longest = max(len(TOK.encode(c)) for c in it.choices())
            assert len(prompt) + longest + 1 <= 128


def test_world_config_validation():
    with pytest.raises(ConfigError, match="n_countries"):
        build_world(WorldConfig(n_countries=2))
    with pytest.raises(ConfigError, match="probe_fraction"):
        build_world(WorldConfig(probe_fraction=1.5))


def test_small_world_builds():
    w = build_world(WorldConfig(seed=3, n_countries=8, n_people=0, n_train=200, n_val=20,
                                n_eval=20, n_filler_docs=10))
    assert len(w.train) == 200 and len(w.probe_items) == 2 * 2 * 2
    assert all(it.task != "birth_year" for it in w.eval_items)


def test_eval_answers_are_stated_in_pretraining(world):
    """Answering is recall: each asked fact (entity, sum, word, count) is in the prose."""
    pre = "\n".join(world.pretrain_docs)
    by_name = {c.name: c for c in world.countries}
    people = {p.name: p for p in world.people}
    for it in world.eval_items + world.probe_items:
        m = it.meta
        kind = m["fact"]
        if kind == "capital":
            assert f"capital of {m['entity']} is {by_name[m['entity']].capital}" in pre
        elif kind == "language":
            assert f"in {m['entity']} speak {by_name[m['entity']].language}" in pre
        elif kind == "birth_year":
            assert f"{m['entity']} was born in {people[m['entity']].year}" in pre
        elif kind in ("plus", "minus", "times"):
            assert f"{m['a']} {kind} {m['b']} is " in pre, m
        elif kind == "reverse":
            assert f"{m['word']} reversed is" in pre or f"word {m['word']} backwards" in pre \
                or f"Reverse the word {m['word']}." in pre
        elif kind == "upper":
            assert m["word"].upper() in pre
        elif kind == "count":
            assert f"Counting from {m['a']} to {m['b']}:" in pre
        elif kind.startswith("context_"):
            # stated in the question itself, and the invented country is nowhere in the prose
            assert it.reference.lower() in it.prompt.turns[-1].content.lower()
            assert m["entity"] not in pre
        else:
            raise AssertionError(kind)


def test_long_prompt_lead_ins():
    """Half of the standalone fact questions start with a lead-in; the probe and the
    pre-training prose are untouched; the flag marks exactly the prompts with a lead-in."""
    from sft_sweep.data.world.items import PREAMBLES

    plain = build_world(WorldConfig(seed=0, max_tokens=192))
    w = build_world(WorldConfig(seed=0, long_prompt_fraction=0.5, max_tokens=192))
    assert w.pretrain_docs == plain.pretrain_docs
    assert [i.prompt.key() for i in w.probe_items] == [i.prompt.key() for i in plain.probe_items]
    flagged = [i for i in w.eval_items if "long_prompt" in i.meta]
    long_ = [i for i in flagged if i.meta["long_prompt"]]
    assert 0.35 < len(long_) / len(flagged) < 0.65
    for i in w.eval_items:
        has = any(i.prompt.turns[-1].content.startswith(p + " ") for p in PREAMBLES)
        assert has == bool(i.meta.get("long_prompt"))
    n_train_long = sum(any(p in t.content for p in PREAMBLES for t in c.turns) for c in w.train)
    assert 0.35 < n_train_long / len(w.train) < 0.65
    assert not any("long_prompt" in i.meta for i in plain.eval_items)


def test_long_prompts_need_room():
    with pytest.raises(ConfigError, match="max_tokens >= 192"):
        WorldConfig(long_prompt_fraction=0.5).validate()
