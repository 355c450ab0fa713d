"""The default world's recipe: every asked fact stated in every question phrasing, base-knowledge
facts, optional parts off by default, and SFT-only settings that leave the prose alone."""

from __future__ import annotations

import pytest

from sft_sweep.data import WorldConfig, build_world
from sft_sweep.data.world.vocab import ANSWERS, COMPLETIONS, QUESTIONS
from sft_sweep.errors import ConfigError


@pytest.fixture(scope="module")
def world():
    return build_world(WorldConfig(seed=0))


def test_every_fact_in_every_question_phrasing(world):
    """Each country's capital and language appear in the prose as a Q/A statement for every
    phrasing SFT asks in, with the answer SFT trains on, once per Q/A set."""
    pre = "\n".join(world.pretrain_docs)
    n_sets = world.config.qa_sets_per_country
    for c in world.countries:
        for kind, answer in (("capital", c.capital), ("language", c.language)):
            full = ANSWERS[kind].format(c=c.name, x=answer)
            for q, _style in QUESTIONS[kind]:
                statement = f"Q: {q.format(c=c.name)} A: {full}"
                assert pre.count(statement) >= n_sets, statement


def test_one_word_answers_setting_states_the_bare_answer():
    w = build_world(WorldConfig(seed=0, one_word_answers=True))
    pre = "\n".join(w.pretrain_docs)
    c = w.countries[0]
    assert f"Q: Capital of {c.name}? A: {c.capital}." in pre
    terse = [conv for conv in w.train if conv.turns[-2].content.startswith("Capital of ")]
    assert terse and all(conv.turns[-1].content.count(" ") == 0 for conv in terse)


def test_default_answers_are_full_sentences(world):
    for conv in world.train:
        if conv.meta["task"] in ("capital", "language"):
            assert conv.turns[-1].content.startswith(("The capital of ", "People in ")), conv


def test_fact_completions_are_the_prose_phrasing(world):
    facts = world.fact_completions()
    pre = "\n".join(world.pretrain_docs)
    assert len(facts) == 2 * len(world.countries)
    assert sum(f.group == "probe" for f in facts) == 2 * sum(c.probe for c in world.countries)
    probe = {c.name for c in world.countries if c.probe}
    for f in facts:
        assert (f.group == "probe") == (f.entity in probe)
        assert f"{f.prompt} {f.answer}." in pre
        assert f.prompt == COMPLETIONS[f.fact].format(c=f.entity)


def test_optional_parts_off_by_default(world):
    assert not world.people
    assert not any(d.startswith(("Some sums.", "Word facts.")) for d in world.pretrain_docs)
    assert all(c.system is None for c in world.train)
    assert all(sum(t.role == "user" for t in c.turns) == 1 for c in world.train)


def test_optional_parts_on():
    w = build_world(WorldConfig(seed=0, n_people=8, n_train=600,
                                task_weights={"capital": 1, "language": 1, "birth_year": 1,
                                              "arithmetic": 1, "context": 0},
                                system_fraction=0.3, multi_turn_fraction=0.1))
    assert any(d.startswith("Some sums.") for d in w.pretrain_docs)
    assert "birth_year" in w.stats()["train_tasks"] and "arithmetic" in w.stats()["train_tasks"]
    assert "context" not in w.stats()["train_tasks"]
    assert any(c.system is not None for c in w.train)
    assert any(sum(t.role == "user" for t in c.turns) == 2 for c in w.train)
    assert any(f.fact == "birth_year" for f in w.fact_completions())


# Settings that change only the SFT data: the pre-training prose (what the base cache is keyed
# on) must not move when they do.
SFT_ONLY = {"n_train": 300, "n_val": 20, "n_eval": 50, "probe_phrasings": 1, "n_distractors": 5,
            "system_fraction": 0.3, "multi_turn_fraction": 0.1, "holdout_fraction": 0.2,
            "n_context_names": 100, "n_heldout_docs": 30,
            "task_weights": {"capital": 0.5, "language": 0.3, "context": 0.2}}


@pytest.mark.parametrize("key", sorted(SFT_ONLY))
def test_sft_only_settings_leave_the_prose_alone(world, key):
    other = build_world(WorldConfig(seed=0, **{key: SFT_ONLY[key]}))
    assert other.pretrain_docs == world.pretrain_docs
    assert [c.name for c in other.countries] == [c.name for c in world.countries]


def test_prose_settings_change_the_prose(world):
    for kw in ({"seed": 1}, {"n_countries": 30}, {"qa_sets_per_country": 1}, {"one_word_answers": True},
               {"task_weights": {"capital": 1.0, "arithmetic": 1.0}}):
        assert build_world(WorldConfig(**kw)).pretrain_docs != world.pretrain_docs, kw


@pytest.mark.parametrize("kw, key", [
    ({"task_weights": {"capitals": 1.0}}, "task_weights"),
    ({"task_weights": {"capital": -1.0}}, "task_weights.capital"),
    ({"task_weights": {"birth_year": 1.0}}, "n_people"),
    ({"task_weights": {"capital": 0.0}}, "at least one task"),
])
def test_task_weight_validation(kw, key):
    with pytest.raises(ConfigError, match=key):
        WorldConfig(**kw).validate()


def test_world_multi_turn_and_system_masks_token_by_token():
    """The world's two-exchange and system-prompt conversations, as the experiments train them:
    the mask selects exactly the assistant turns (or the last one), never a system or user token."""
    from sft_sweep.data import TEMPLATE_NAMES, render
    from sft_sweep.tokenizer import ByteTokenizer

    tok = ByteTokenizer()
    end = {"chatml": "<|im_end|>", "alpaca": "<|endoftext|>", "plain": "<|endoftext|>"}
    w = build_world(WorldConfig(seed=0, n_train=300, n_val=10, n_eval=20, system_fraction=0.35,
                                multi_turn_fraction=0.25, one_word_answers=True))
    multi = [c for c in w.train if sum(t.role == "user" for t in c.turns) == 2][:20]
    system = [c for c in w.train if c.system is not None][:20]
    assert len(multi) == 20 and len(system) == 20
    for conv in multi + system:
        answers = [t.content for t in conv.turns if t.role == "assistant"]
        for name in TEMPLATE_NAMES:
            for mode, want in (("assistant", answers), ("last", answers[-1:])):
                ids, mask = render(conv, name, mask=mode)
                got = tok.decode([i for i, m in zip(ids, mask) if m])
                assert got == "".join(a + end[name] for a in want), (name, mode, conv)


def test_low_quality_responses_planted_and_filterable():
    from sft_sweep.data import QualityConfig, filter_quality

    w = build_world(WorldConfig(seed=0, low_quality_fraction=0.3))
    clean = build_world(WorldConfig(seed=0))
    assert w.pretrain_docs == clean.pretrain_docs and len(w.train) == len(clean.train)
    planted = [c for c in w.train if c.meta.get("low_quality")]
    assert len(planted) == 135
    assert {k: sum(c.meta["low_quality"] == k for c in planted) for k in ("short", "repetitive", "wrong")} \
        == {"short": 45, "repetitive": 45, "wrong": 45}
    for c, orig in zip(w.train, clean.train):
        assert c.turns[:-1] == orig.turns[:-1]
        assert (c.turns[-1].content != orig.turns[-1].content) == bool(c.meta.get("low_quality"))
    low = "\n".join(t.content for c in w.train for t in c.turns).lower()
    assert not any(n.lower() in low for n in w.probe_names)
    kept, rep = filter_quality(w.train, QualityConfig(min_response_chars=10, min_token_diversity=0.6))
    assert rep["removed"]["too_short"] == 45 and rep["removed"]["low_diversity"] == 45
    assert {c.meta.get("low_quality") for c in kept} == {None, "wrong"}
    _, rep = filter_quality(clean.train, QualityConfig(min_response_chars=10, min_token_diversity=0.6))
    assert sum(rep["removed"].values()) == 0  # the filters leave clean data alone
