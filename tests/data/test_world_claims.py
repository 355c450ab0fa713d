"""World settings for the lesson's claims: format-setting system prompts that only the prompt
tells apart, and enough distinct held-out second turns to decide a multi-turn comparison."""

from collections import defaultdict

import pytest

from sft_sweep.data import WorldConfig, build_world


@pytest.fixture(scope="module")
def system_world():
    return build_world(WorldConfig(system_fraction=0.4, system_contrast=True, n_eval_system=40))


def _question(conv_or_prompt):
    return next(t.content for t in conv_or_prompt.turns if t.role == "user")


def test_held_out_questions_are_asked_under_every_format_prompt(system_world):
    styled = [it for it in system_world.eval_items if it.meta.get("system_style")]
    by_question = defaultdict(dict)
    for it in styled[-120:]:
        by_question[_question(it.prompt)][it.meta["system_style"]] = it
    assert len(by_question) == 40
    for q, styles in by_question.items():
        assert set(styles) == {"word", "caps", "full"}
        answers = {st: it.response for st, it in styles.items()}
        assert len(set(answers.values())) == 3           # the prompt decides the answer
        assert len(answers["word"].split()) == 1
        assert answers["caps"] == answers["caps"].upper()
        assert answers["full"].endswith(".") and len(answers["full"].split()) >= 3
    assert system_world.stats()["n_system_format_eval"] >= 120


def test_format_prompted_training_questions_come_in_threes(system_world):
    by_question = defaultdict(set)
    for c in system_world.train:
        if c.system in ("Answer in one word.", "Answer in capital letters.", "Answer with a full sentence."):
            by_question[_question(c)].add(c.system)
    assert len(by_question) >= 40
    complete = sum(len(v) == 3 for v in by_question.values())
    assert complete >= len(by_question) - 1  # the last group may be cut at n_train
    formats = ("Answer in one word.", "Answer in capital letters.", "Answer with a full sentence.")
    val_questions = {_question(c) for c in system_world.val if c.system in formats}
    assert val_questions and not val_questions & set(by_question)  # groups never straddle train / val
    train_prompts = {c.key()[:-1] for c in system_world.train}
    for it in system_world.eval_items:
        assert it.prompt.key() not in train_prompts


def test_system_prompts_vary_per_question_without_contrast():
    w = build_world(WorldConfig(system_fraction=0.5))
    systems = defaultdict(set)
    for c in w.train:
        systems[_question(c)].add(c.system)
    assert sum(len(v) > 1 for v in systems.values()) >= 10  # one question, several system prompts


def test_at_least_100_distinct_held_out_second_turns():
    w = build_world(WorldConfig(multi_turn_fraction=0.25, n_eval_multi_turn=150))
    second = [it for it in w.eval_items if it.meta.get("multi_turn")]
    assert len({it.prompt.key() for it in second}) == len(second) >= 150
    assert w.stats()["n_multi_turn_eval"] == len(second)
    train_prompts = {tuple((t.role, t.content) for t in c.turns[:-1]) for c in w.train}
    assert not any(tuple((t.role, t.content) for t in it.prompt.turns) in train_prompts for it in second)
    # single-turn training is scored on the same kind of second turns
    single = build_world(WorldConfig(n_eval_multi_turn=150))
    assert sum(bool(it.meta.get("multi_turn")) for it in single.eval_items) == 150
    assert not any(len(c.turns) > 2 for c in single.train)


def test_extra_held_out_sets_leave_the_others_alone():
    base = build_world(WorldConfig(multi_turn_fraction=0.25))
    more = build_world(WorldConfig(multi_turn_fraction=0.25, n_eval_multi_turn=50, n_eval_system=10))
    assert [i.prompt.key() for i in more.eval_items[:100]] == [i.prompt.key() for i in base.eval_items]


def test_capital_letter_documents_are_copies_of_the_prose_and_off_by_default():
    plain = build_world(WorldConfig())
    caps = build_world(WorldConfig(caps_doc_fraction=0.3))
    upper = [d for d in caps.pretrain_docs if d == d.upper()]
    rest = [d for d in caps.pretrain_docs if d != d.upper()]
    assert len(upper) == round(0.3 * len(plain.pretrain_docs))
    assert sorted(rest) == sorted(plain.pretrain_docs)          # the prose itself is unchanged
    assert set(upper) <= {d.upper() for d in plain.pretrain_docs}
    assert any("THE CAPITAL OF" in d for d in upper)
    # what SFT trains and is scored on does not change
    assert [c.key() for c in caps.train] == [c.key() for c in plain.train]
    assert [i.prompt.key() for i in caps.eval_items] == [i.prompt.key() for i in plain.eval_items]
    assert WorldConfig().caps_doc_fraction == 0.0


def test_capital_letter_share_must_be_a_fraction():
    from sft_sweep.errors import ConfigError
    with pytest.raises(ConfigError, match="caps_doc_fraction"):
        WorldConfig(caps_doc_fraction=1.5).validate()


def test_the_reports_format_rule_is_the_evaluators():
    from sft_sweep.data.world.items import format_obeyed
    from sft_sweep.train.evaluate import obeys_format
    answers = ["Pistel", "Pistel.", "The capital of Vaiia is Pistel.", "THE CAPITAL OF VAIIA IS PISTEL.",
               "PISTEL", "SEEEE", "h", "", "  ", "The capital", "People in X speak Y"]
    for style in ("word", "caps", "full"):
        assert [format_obeyed(style, a) for a in answers] == [obeys_format(style, a) for a in answers]
