"""Data the loaders must refuse (preference data, conversations that end before the answer)
and real layouts they must accept (content as a list of parts, per-message loss weights, a
single top-level conversation object, one raw-text document per line)."""

from __future__ import annotations

import json

import pytest

from sft_sweep.data import Conversation, Turn, load_conversations, load_raw_text, render, save_conversations
from sft_sweep.errors import ConfigError, DataError
from sft_sweep.tokenizer import ByteTokenizer

from data_helpers import shared_file

TOK = ByteTokenizer()


def _write(tmp_path, name, obj):
    path = tmp_path / name
    if name.endswith(".jsonl"):
        path.write_text("".join(json.dumps(r) + "\n" for r in obj), encoding="utf-8")
    else:
        path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def _parts(*texts, key="text"):
    return [{"type": "text", key: t} for t in texts]


# --------------------------------------------------------------------------- preference data

HUMAN = {"from": "human", "value": "Name a fruit."}
PREFERENCE = [
    ("sharegpt_chosen_rejected", [{"conversations": [HUMAN], "chosen": {"from": "gpt", "value": "Apple."},
                                   "rejected": {"from": "gpt", "value": "No."}}]),
    ("sharegpt_history_then_pair", [{"conversations": [HUMAN, {"from": "gpt", "value": "Apple."},
                                                       {"from": "human", "value": "Another?"}],
                                     "chosen": {"from": "gpt", "value": "Pear."},
                                     "rejected": {"from": "gpt", "value": "No."}}]),
    ("prompt_chosen_rejected", [{"prompt": "Name a fruit.", "chosen": "Apple.", "rejected": "No."}]),
    ("messages_chosen_rejected", [{"messages": [{"role": "user", "content": "Name a fruit."}],
                                   "chosen": [{"role": "assistant", "content": "Apple."}],
                                   "rejected": [{"role": "assistant", "content": "No."}]}]),
    ("alpaca_chosen_rejected", [{"instruction": "Name a fruit.", "input": "", "chosen": "Apple.",
                                 "rejected": "No."}]),
    ("kto_completion_label", [{"prompt": "Name a fruit.", "completion": "Apple.", "label": True}]),
    ("kto_tag", [{"messages": [{"role": "user", "content": "Name a fruit."},
                               {"role": "assistant", "content": "Apple."}], "kto_tag": False}]),
    ("pair_after_good_records", [{"instruction": "a", "output": "b"}] * 3
     + [{"instruction": "c", "chosen": "d", "rejected": "e"}]),
]


@pytest.mark.parametrize("fmt", ["auto", "sharegpt", "messages", "alpaca"])
@pytest.mark.parametrize("policy", ["error", "skip"])
@pytest.mark.parametrize("case", PREFERENCE, ids=[c[0] for c in PREFERENCE])
def test_preference_data_is_refused_whatever_the_format_or_policy(tmp_path, case, policy, fmt):
    _id, records = case
    path = _write(tmp_path, "d.json", records)
    with pytest.raises(DataError) as err:
        load_conversations(path, fmt, on_bad_record=policy)
    msg = str(err.value)
    assert err.value.path == str(path) and "preference" in msg and "not SFT data" in msg, msg
    assert err.value.record == len(records) - 1, msg


def test_real_dpo_file_is_refused_as_preference_data():
    path = shared_file("dpo_en_demo.json")
    for policy in ("error", "skip"):
        for fmt in ("auto", "sharegpt"):
            with pytest.raises(DataError) as err:
                load_conversations(path, fmt, on_bad_record=policy)
            assert "preference" in str(err.value) and "chosen" in str(err.value)


# --------------------------------------------------------------------------- last turn

ENDS_EARLY = [
    ("messages_user_last", "d.jsonl",
     [{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"},
                    {"role": "user", "content": "q2"}]}], "messages[2].role", "'user'"),
    ("sharegpt_human_last", "d.json",
     [{"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"},
                         {"from": "human", "value": "q2"}]}], "conversations[2].from", "'user'"),
    ("tool_last", "d.jsonl",
     [{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "call"},
                    {"role": "tool", "content": "r"}]}], "messages[2].role", "'tool'"),
    ("chatml_user_last", "d.jsonl",
     [{"text": "<|im_start|>user\nq<|im_end|><|im_start|>assistant\na<|im_end|><|im_start|>user\nq2<|im_end|>"}],
     "text", "'user'"),
]


@pytest.mark.parametrize("case", ENDS_EARLY, ids=[c[0] for c in ENDS_EARLY])
def test_conversation_must_end_with_the_assistant(tmp_path, case):
    _id, name, records, field, role = case
    good = records[0].copy()
    path = _write(tmp_path, name, records)
    with pytest.raises(DataError) as err:
        load_conversations(path)
    assert err.value.record == 0 and err.value.field == field, str(err.value)
    assert "last turn" in str(err.value) and role in str(err.value)
    # skipped and counted, never trained on
    ok = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    if "text" in good:
        ok = {"text": "<|im_start|>user\nq<|im_end|><|im_start|>assistant\na<|im_end|>"}
    if "conversations" in good:
        ok = {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}
    path = _write(tmp_path, name, [ok, good])
    report: dict = {}
    convs = load_conversations(path, on_bad_record="skip", report=report)
    assert len(convs) == 1 and report["skipped"] == 1
    assert report["skipped_reasons"] == {"no final answer": 1}


# --------------------------------------------------------------------------- content parts

def test_content_parts_are_joined_in_both_layouts(tmp_path):
    recs = [{"messages": [{"role": "user", "content": _parts("Hello", "world")},
                          {"role": "assistant", "content": _parts("Hi.")}]},
            {"messages": [{"role": "user", "content": _parts("Hello", "world", key="value")},
                          {"role": "assistant", "content": "Hi."}]},
            {"conversations": [{"from": "human", "value": _parts("Hello", "world")},
                               {"from": "gpt", "value": _parts("Hi.", key="value")}]}]
    for i, rec in enumerate(recs):
        path = _write(tmp_path, f"d{i}.jsonl", [rec])
        (conv,) = load_conversations(path)
        assert conv.turns == [Turn("user", "Hello\nworld"), Turn("assistant", "Hi.")]


BAD_PARTS = [
    ("image_part", [{"type": "text", "text": "Look:"}, {"type": "image_url", "image_url": {"url": "x"}}],
     "messages[0].content[1]", "non-text content part 'image_url'"),
    ("audio_part", [{"type": "input_audio", "input_audio": {}}], "messages[0].content[0]",
     "non-text content part 'input_audio'"),
    ("text_part_without_text", [{"type": "text"}], "messages[0].content[0]", "'text' or 'value'"),
    ("part_not_object", ["hello"], "messages[0].content[0]", "must be an object"),
    ("part_text_not_string", [{"type": "text", "text": 3}], "messages[0].content[0].text", "must be a string"),
    ("no_parts", [], "messages[0].content", "no parts"),
]


@pytest.mark.parametrize("case", BAD_PARTS, ids=[c[0] for c in BAD_PARTS])
def test_bad_content_parts_name_the_part(tmp_path, case):
    _id, content, field, part = case
    bad = {"messages": [{"role": "user", "content": content}, {"role": "assistant", "content": "a"}]}
    ok = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    path = _write(tmp_path, "d.jsonl", [ok, bad])
    with pytest.raises(DataError) as err:
        load_conversations(path)
    assert err.value.record == 1 and err.value.field == field and part in str(err.value), str(err.value)
    report: dict = {}
    assert len(load_conversations(path, on_bad_record="skip", report=report)) == 1
    assert report["skipped"] == 1


# --------------------------------------------------------------------------- loss weights

def _weighted(*items):
    return {"messages": [{"role": r, "content": c, "loss_weight": w} for r, c, w in items]}


def _trained_text(conv, template="chatml", mask="assistant"):
    ids, m = render(conv, template, mask)
    return TOK.decode([i for i, on in zip(ids, m) if on])


@pytest.mark.parametrize("template", ["chatml", "alpaca", "plain"])
def test_loss_weights_decide_the_mask_token_by_token(tmp_path, template):
    rec = _weighted(("user", "q1", 0.0), ("assistant", "SKIPPED", 0.0), ("user", "q2", 0),
                    ("assistant", "KEPT", 1.0))
    path = _write(tmp_path, "d.jsonl", [rec])
    (conv,) = load_conversations(path)
    ids, mask = render(conv, template)
    plain = Conversation([Turn(t.role, t.content) for t in conv.turns])
    ids0, mask0 = render(plain, template)
    assert ids == ids0  # the weights change the mask only
    skipped = TOK.encode("SKIPPED")
    start = next(i for i in range(len(ids)) if ids[i:i + len(skipped)] == skipped)
    expected = list(mask0)
    for i in range(start, start + len(skipped) + 1):  # the content and the id that ends the turn
        assert expected[i] == 1
        expected[i] = 0
    assert mask == expected
    assert "SKIPPED" not in _trained_text(conv, template) and "KEPT" in _trained_text(conv, template)
    # a weight of 1 on a user turn trains that turn's content too
    rec = _weighted(("user", "LEARN-ME", 1), ("assistant", "a", 1))
    (conv,) = load_conversations(_write(tmp_path, "e.jsonl", [rec]))
    assert _trained_text(conv, template).startswith("LEARN-ME")
    # weights survive a round trip through the formats that can hold them, and are never dropped
    for fmt in ("messages", "sharegpt"):
        out = tmp_path / f"out-{fmt}.jsonl"
        save_conversations([conv], out, fmt)
        assert load_conversations(out)[0].turns == conv.turns
    for fmt in ("alpaca", "chatml"):
        with pytest.raises(ConfigError, match="loss weights"):
            save_conversations([conv], tmp_path / "out.json", fmt)


@pytest.mark.parametrize("weight,part", [(0.5, "must be 0 or 1"), ("1", "must be a number"),
                                         (True, "must be a number"), (2, "must be 0 or 1")])
def test_other_loss_weights_are_refused(tmp_path, weight, part):
    path = _write(tmp_path, "d.jsonl", [_weighted(("user", "q", 0), ("assistant", "a", weight))])
    with pytest.raises(DataError) as err:
        load_conversations(path)
    assert err.value.field == "messages[1].loss_weight" and part in str(err.value), str(err.value)


def test_all_weights_zero_is_no_training_target(tmp_path):
    path = _write(tmp_path, "d.jsonl", [_weighted(("user", "q", 0), ("assistant", "a", 0))])
    with pytest.raises(DataError, match="no trained turn"):
        load_conversations(path)


def test_real_v1_sft_file_with_parts_and_weights():
    path = shared_file("v1_sft_demo.jsonl")
    report: dict = {}
    convs = load_conversations(path, report=report)
    assert report == {**report, "format": "messages", "loaded": 500, "skipped": 0}
    raw = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for conv, rec in zip(convs, raw):
        for turn, msg in zip(conv.turns, rec["messages"]):
            assert turn.content == "\n".join(p["value"] for p in msg["content"])
            assert turn.trained is (msg["loss_weight"] == 1)
    # every user turn has weight 0 and every assistant turn 1: the default assistant mask
    for conv in convs[:50]:
        plain = Conversation([Turn(t.role, t.content) for t in conv.turns])
        assert render(conv, "chatml") == render(plain, "chatml")


# --------------------------------------------------------------------------- top-level object

def test_single_top_level_conversation_object(tmp_path):
    rec = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    (conv,) = load_conversations(_write(tmp_path, "one.json", rec))
    assert conv.turns == [Turn("user", "q"), Turn("assistant", "a")]
    rec = {"data": [rec]}  # an object that is not a conversation: a clear refusal
    with pytest.raises(DataError, match="wrap"):
        load_conversations(_write(tmp_path, "two.json", rec))


# --------------------------------------------------------------------------- raw text documents

RAW = [
    ("blank_lines_separate", "a1\na2\n\nb\n\n\nc\n", ["a1\na2", "b", "c"], "blank lines"),
    ("lines_when_no_blank_line", "first doc\nsecond doc\n third doc \n", ["first doc", "second doc", "third doc"],
     "lines"),
    ("crlf_lines", "one\r\ntwo\r\n", ["one", "two"], "lines"),
    ("whitespace_line_counts_as_blank", "a\nb\n  \nc\n", ["a\nb", "c"], "blank lines"),
]


@pytest.mark.parametrize("case", RAW, ids=[c[0] for c in RAW])
def test_raw_text_document_rule(tmp_path, case):
    _id, text, docs, rule = case
    path = tmp_path / "r.txt"
    path.write_text(text, encoding="utf-8")
    report: dict = {}
    assert load_raw_text(path, report=report) == docs
    assert report["documents"] == len(docs) and rule in report["split"]


def test_real_wiki_file_one_article_per_line():
    path = shared_file("wiki_demo.txt")
    docs = load_raw_text(path)
    assert len(docs) == 30 and all(len(d) > 1000 for d in docs)


# --------------------------------------------------------------------------- fields that change a record's meaning

def _conv_rec(fmt, extra):
    """One good record of layout ``fmt`` plus the top-level fields ``extra``."""
    base = {
        "messages": {"messages": [{"role": "user", "content": "Describe it."},
                                  {"role": "assistant", "content": "A red square."}]},
        "sharegpt": {"conversations": [{"from": "human", "value": "Describe it."},
                                       {"from": "gpt", "value": "A red square."}]},
        "alpaca": {"instruction": "Describe it.", "input": "", "output": "A red square."},
        "chatml": {"text": "<|im_start|>user\nDescribe it.<|im_end|>\n<|im_start|>assistant\nA red square.<|im_end|>"},
    }[fmt]
    return {**base, **extra}


NOT_SFT_TARGETS = [
    ("kto_label_false", {"label": False}, "label", "desirability label"),
    ("kto_label_true", {"label": True}, "label", "desirability label"),
    ("label_word", {"label": "undesirable"}, "label", "desirability label"),
    ("desirable_flag", {"desirable": False}, "desirable", "desirability label"),
    ("reward", {"reward": 0.25}, "reward", "reward or score"),
    ("score", {"score": 7}, "score", "reward or score"),
    ("rating", {"rating": 2}, "rating", "reward or score"),
    ("rewards_list", {"rewards": [0.1, 0.9]}, "rewards", "reward or score"),
    ("images", {"images": ["photo.jpg"]}, "images", "attached media"),
    ("audio", {"audios": ["clip.wav"]}, "audios", "attached media"),
    ("video", {"videos": ["clip.mp4"]}, "videos", "attached media"),
]


@pytest.mark.parametrize("fmt", ["messages", "sharegpt", "alpaca", "chatml"])
@pytest.mark.parametrize("case", NOT_SFT_TARGETS, ids=[c[0] for c in NOT_SFT_TARGETS])
def test_records_whose_fields_say_they_are_no_sft_target_are_refused(tmp_path, fmt, case):
    _id, extra, field, reason = case
    good = _conv_rec(fmt, {})
    path = _write(tmp_path, "d.jsonl", [good, good, _conv_rec(fmt, extra), good])
    with pytest.raises(DataError) as err:
        load_conversations(path)
    e = err.value
    assert (e.path, e.record, e.field) == (str(path), 2, field), str(e)
    assert str(e).startswith(f"file {path}, record 2, field {field!r}: ") and "(line 3)" in str(e), str(e)
    report: dict = {}
    convs = load_conversations(path, on_bad_record="skip", report=report)
    assert len(convs) == 3 and report["skipped"] == 1 and report["skipped_reasons"] == {reason: 1}


def test_media_placeholders_are_named_with_the_media_field(tmp_path):
    rec = {"messages": [{"role": "user", "content": "<image><image>What differs?"},
                        {"role": "assistant", "content": "The colour."}], "images": ["a.png", "b.png"]}
    path = _write(tmp_path, "d.json", [rec])
    with pytest.raises(DataError) as err:
        load_conversations(path)
    msg = str(err.value)
    assert "field 'images'" in msg and "2 image item(s)" in msg and "2 <image>-style placeholder(s)" in msg, msg


@pytest.mark.parametrize("extra", [{"label": "sports"}, {"score": None}, {"images": []}, {"reward": "n/a"}],
                         ids=["label_category", "score_null", "no_images", "reward_text"])
def test_fields_without_that_meaning_are_only_ignored(tmp_path, extra):
    path = _write(tmp_path, "d.json", [_conv_rec("messages", extra)] * 2)
    report: dict = {}
    assert len(load_conversations(path, report=report)) == 2
    (key,) = extra
    assert report["ignored_fields"] == {key: 2}, report


@pytest.mark.parametrize("fmt,extra", [
    ("alpaca", {"id": 1, "source": "web"}),
    ("sharegpt", {"id": 1, "tools": "[]", "source": "web"}),
    ("messages", {"id": 1, "source": "web"}),
    ("chatml", {"id": 1, "source": "web"}),
])
def test_ignored_fields_are_reported_once_per_file_with_counts(tmp_path, fmt, extra):
    recs = [_conv_rec(fmt, extra)] * 3 + [_conv_rec(fmt, {"id": 9})]
    path = _write(tmp_path, "d.jsonl", recs)
    report: dict = {}
    load_conversations(path, report=report)
    want = {k: 3 for k in extra} | {"id": 4}
    assert report["ignored_fields"] == want
    (warning,) = report["warnings"]
    assert warning.startswith(f"file {path}: fields not trained on, ignored: ")
    for k, n in want.items():
        assert f"{k!r} ({n} of 4 records)" in warning, warning
    clean = _write(tmp_path, "c.jsonl", [_conv_rec(fmt, {})] * 2)
    load_conversations(clean, report=report)
    assert report["ignored_fields"] == {} and report["warnings"] == []


@pytest.mark.parametrize("name,fmt,ignored", [
    ("alpaca_en_demo.json", "alpaca", {}),
    ("v1_sft_demo.jsonl", "messages", {}),
    ("glaive_toolcall_en_demo.json", "sharegpt", {"tools": 300}),
])
def test_real_sft_files_still_load_and_report_what_they_ignore(name, fmt, ignored):
    report: dict = {}
    load_conversations(shared_file(name), role_map=TOOL_ROLES, report=report)
    assert report["format"] == fmt and report["skipped"] == 0 and report["ignored_fields"] == ignored


TOOL_ROLES = {"function_call": "assistant", "observation": "tool"}
