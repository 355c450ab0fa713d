"""Loaders: real third-party files, hand-written fixtures (round trip), and malformed input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sft_sweep.data import (TEMPLATE_NAMES, Conversation, ConversationError, Turn,
                            load_conversations, load_raw_text, render, save_conversations)
from sft_sweep.errors import ConfigError, DataError
from sft_sweep.tokenizer import ByteTokenizer

from data_helpers import shared_file

FIX = Path(__file__).parent / "fixtures"
TOOL_MAP = {"function_call": "assistant", "observation": "tool"}
TOK = ByteTokenizer()


# --------------------------------------------------------------------------- real files

def test_real_alpaca_file():
    path = shared_file("alpaca_en_demo.json")
    report: dict = {}
    convs = load_conversations(path, report=report)
    assert report["format"] == "alpaca" and report["loaded"] == 999 and report["skipped"] == 0
    assert len(convs) == 999
    raw = json.loads(path.read_text(encoding="utf-8"))
    for conv, rec in zip(convs, raw):
        assert [t.role for t in conv.turns] == ["user", "assistant"]
        assert conv.turns[1].content == rec["output"]
        assert conv.turns[0].content.startswith(rec["instruction"])
        if rec["input"]:
            assert conv.turns[0].content == rec["instruction"] + "\n\n" + rec["input"]
            assert conv.meta["input"] == rec["input"]
    with_input = next(c for c in convs if c.meta.get("input"))
    assert "### Input:\n" in TOK.decode(render(with_input, "alpaca")[0])


def test_real_sharegpt_toolcall_file_needs_role_map():
    path = shared_file("glaive_toolcall_en_demo.json")
    with pytest.raises(DataError) as err:
        load_conversations(path)
    e = err.value
    assert e.path == str(path) and e.record == 0 and e.field == "conversations[3].from"
    assert "function_call" in str(e) and "role_map" in str(e)
    # skipping: the records without tool roles remain, and the report says why
    report: dict = {}
    convs = load_conversations(path, on_bad_record="skip", report=report)
    assert report["loaded"] + report["skipped"] == 300 and report["skipped"] > 0
    assert report["skipped_reasons"] == {"unknown role": report["skipped"]}
    assert len(convs) == report["loaded"]
    # mapped: every record loads, tool results become tool turns
    convs = load_conversations(path, role_map=TOOL_MAP, report=report)
    assert report["loaded"] == 300 and len(convs) == 300
    raw = json.loads(path.read_text(encoding="utf-8"))
    n_tool = sum(t.role == "tool" for c in convs for t in c.turns)
    assert n_tool == sum(m["from"] == "observation" for r in raw for m in r["conversations"])
    assert all("tools" in c.meta for c in convs)
    for conv in convs[:20]:
        for name in TEMPLATE_NAMES:
            ids, mask = render(conv, name)
            assert len(ids) == len(mask) and sum(mask) > 0


def test_real_raw_text_file():
    path = shared_file("c4_demo.jsonl")
    docs = load_raw_text(path)
    assert len(docs) == 300 and all(isinstance(d, str) and d for d in docs)


# --------------------------------------------------------------------------- fixtures

FIXTURES = [("alpaca.json", "alpaca", 4, {}), ("sharegpt.jsonl", "sharegpt", 3, TOOL_MAP),
            ("messages.jsonl", "messages", 3, {}), ("chatml.jsonl", "chatml", 2, {})]


@pytest.mark.parametrize("name,fmt,n,role_map", FIXTURES)
def test_fixture_auto_detected_and_round_trips(tmp_path, name, fmt, n, role_map):
    report: dict = {}
    convs = load_conversations(FIX / name, role_map=role_map, report=report)
    assert report["format"] == fmt and len(convs) == n
    assert load_conversations(FIX / name, fmt, role_map=role_map)[0].key() == convs[0].key()
    for suffix in (".json", ".jsonl"):
        out = tmp_path / f"out{suffix}"
        save_conversations(convs, out, fmt)
        back = load_conversations(out, fmt, role_map={"observation": "tool"})
        assert [c.key() for c in back] == [c.key() for c in convs]
        if fmt == "alpaca":
            assert [c.meta for c in back] == [c.meta for c in convs]


def test_fixture_contents():
    a = load_conversations(FIX / "alpaca.json")
    assert a[1].turns[0].content == "Translate to French.\n\nGood morning"
    assert a[1].turns[1].content == "Bonjour, café ☕"
    assert [t.role for t in a[2].turns] == ["system", "user", "assistant", "user", "assistant"]
    assert a[2].system == "You are a translator." and a[2].turns[1].content.startswith("Translate to German")
    s = load_conversations(FIX / "sharegpt.jsonl", role_map=TOOL_MAP)
    assert s[1].system == "Be brief."
    assert [t.role for t in s[2].turns] == ["system", "user", "assistant", "tool", "assistant"]
    m = load_conversations(FIX / "messages.jsonl")
    assert m[2].meta == {"id": "t3"} and m[2].turns[2].role == "tool"
    c = load_conversations(FIX / "chatml.jsonl")
    assert c[0].turns[1] == Turn("user", "Hello\nthere")
    assert c[1].key() == m[1].key()[:0] + tuple(
        (r, t) for r, t in [("user", "Count to 3."), ("assistant", "1, 2, 3"),
                            ("user", "Reverse it."), ("assistant", "3, 2, 1")])


def test_raw_text_txt_splits_on_blank_lines():
    docs = load_raw_text(FIX / "raw.txt")
    assert docs == ["First document, line one.\nStill the first document.", "Second document.",
                    "Third document after two blank lines."]


def test_skip_policy_counts(tmp_path):
    p = tmp_path / "mixed.jsonl"
    lines = [json.dumps({"messages": [{"role": "user", "content": "a"},
                                      {"role": "assistant", "content": "b"}]}),
             "{not json",
             json.dumps({"messages": [{"role": "user", "content": None}]}),
             json.dumps({"messages": [{"role": "robot", "content": "x"}]}),
             json.dumps({"messages": [{"role": "user", "content": "c"},
                                      {"role": "assistant", "content": "d"}]})]
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report: dict = {}
    convs = load_conversations(p, on_bad_record="skip", report=report)
    assert len(convs) == 2 and report["loaded"] == 2 and report["skipped"] == 3
    assert report["skipped_reasons"] == {"invalid JSON": 1, "null value": 1, "unknown role": 1}
    assert len(report["skipped_examples"]) == 3
    with pytest.raises(DataError) as err:
        load_conversations(p)
    assert err.value.record == 1 and "line 2" in str(err.value)


# --------------------------------------------------------------------------- bad input table

def _j(obj) -> str:
    return json.dumps(obj)


def _msgs(*pairs):
    return {"messages": [{"role": r, "content": c} for r, c in pairs]}


UA = [("user", "q"), ("assistant", "a")]

# (id, file name, content (str or bytes), expected record, expected field, message part)
BAD = [
    ("empty_file", "d.jsonl", "", None, None, "empty"),
    ("whitespace_only", "d.json", "  \n\n", None, None, "empty"),
    ("empty_array", "d.json", "[]", None, None, "no records"),
    ("non_utf8", "d.jsonl", _j(_msgs(*UA)).encode() + b"\n" + b'{"messages": "\xff\xfe"}\n',
     1, None, "not valid UTF-8"),
    ("top_level_object", "d.json", _j({"data": [_msgs(*UA)]}), None, None, "top-level JSON object"),
    ("top_level_string", "d.json", _j("hello"), None, None, "array of records"),
    ("json_lines_in_json", "d.json", _j(_msgs(*UA)) + "\n" + _j(_msgs(*UA)), None, None, ".jsonl"),
    ("bad_json_line", "d.jsonl", "\n".join([_j(_msgs(*UA))] * 2 + ['{"messages": [}']), 2, None,
     "invalid JSON on line 3"),
    ("record_not_object", "d.jsonl", _j(_msgs(*UA)) + "\n[1, 2]\n", 1, None, "JSON object"),
    ("null_content", "d.json", _j([{"instruction": "i", "output": None}]), 0, "output", "null"),
    ("non_string_content", "d.jsonl", _j(_msgs(*UA)) + "\n" + _j(_msgs(("user", 5), ("assistant", "a"))),
     1, "messages[0].content", "must be a string, got number"),
    ("missing_field", "d.json", _j([{"instruction": "i", "output": "o"}, {"instruction": "i"}]),
     1, "output", "missing required field"),
    ("missing_value_sharegpt", "d.json", _j([{"conversations": [{"from": "human"}]}]), 0,
     "conversations[0].value", "missing"),
    ("unknown_role", "d.json", _j([{"conversations": [{"from": "human", "value": "q"},
                                                      {"from": "robot", "value": "a"}]}]),
     0, "conversations[1].from", "unknown role 'robot'"),
    ("mixed_shapes", "d.json", _j([{"instruction": "i", "output": "o"}, _msgs(*UA)]), 1, None,
     "mixed record shapes"),
    ("unknown_shape", "d.json", _j([{"prompt": "p", "completion": "c"}]), 0, None,
     "unknown record shape"),
    ("turns_not_a_list", "d.json", _j([{"messages": "hello"}]), 0, "messages", "list of turns"),
    ("turn_not_object", "d.json", _j([{"messages": ["hello"]}]), 0, "messages[0]", "must be an object"),
    ("assistant_first", "d.json", _j([_msgs(("assistant", "a"), ("user", "q"))]), 0,
     "messages[0].role", "first non-system turn"),
    ("system_in_middle", "d.json", _j([_msgs(*UA, ("system", "s"))]), 0, "messages[2].role",
     "only be the first"),
    ("no_assistant", "d.json", _j([_msgs(("user", "q"))]), 0, "messages", "no assistant turn"),
    ("bad_history", "d.json", _j([{"instruction": "i", "output": "o", "history": [["only one"]]}]),
     0, "history[0]", "pair"),
    ("input_not_string", "d.json", _j([{"instruction": "i", "input": 3, "output": "o"}]), 0, "input",
     "must be a string"),
    ("chatml_unterminated", "d.jsonl", _j({"text": "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\na"}),
     0, "text", "unterminated"),
    ("chatml_raw_text", "d.jsonl", _j({"text": "<|im_start|>user\nq<|im_end|><|im_start|>assistant\na<|im_end|>"}) + "\n" + _j({"text": "just prose"}),
     1, "text", "no <|im_start|>"),
    ("unsupported_extension", "d.csv", "a,b\n", None, None, "unsupported file extension"),
    ("object_not_a_conversation", "d.json", _j({"data": [_msgs(*UA)]}), None, None, "wrap the records"),
    ("preference_pairs", "d.json", _j([{"conversations": [{"from": "human", "value": "q"}],
                                        "chosen": {"from": "gpt", "value": "a"},
                                        "rejected": {"from": "gpt", "value": "b"}}]),
     0, None, "preference (DPO / KTO) data, not SFT data"),
    ("kto_labels", "d.jsonl", _j({"prompt": "q", "completion": "a", "label": False}), 0, None,
     "not SFT data"),
    ("ends_with_user", "d.json", _j([_msgs(*UA, ("user", "more?"))]), 0, "messages[2].role",
     "last turn is 'user'"),
    ("image_part", "d.jsonl", _j(_msgs(("user", [{"type": "image_url", "image_url": {"url": "u"}}]),
                                       ("assistant", "a"))),
     0, "messages[0].content[0]", "non-text content part"),
    ("fractional_loss_weight", "d.jsonl",
     _j({"messages": [{"role": "user", "content": "q"},
                      {"role": "assistant", "content": "a", "loss_weight": 0.5}]}),
     0, "messages[1].loss_weight", "must be 0 or 1"),
    ("nested_100000_deep_json", "d.json", "[" * 100_000 + "]" * 100_000, None, None, "nested"),
    ("nested_100000_deep_line", "d.jsonl", _j(_msgs(*UA)) + "\n" + "[" * 100_000 + "]" * 100_000,
     1, None, "nested more than 100 levels deep on line 2"),
    ("nested_500_deep_record", "d.json", "[" + _j(_msgs(*UA)) + ', {"x": ' + "[" * 500 + "]" * 500 + "}]",
     1, None, "nested more than 100 levels deep"),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_input_is_a_clear_error(tmp_path, case):
    _id, name, content, record, field, part = case
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as err:
        load_conversations(path)
    e = err.value
    msg = str(e)
    assert e.path == str(path) and msg.startswith(f"file {path}")
    assert e.record == record, msg
    assert e.field == field, msg
    if record is not None:
        assert f"record {record}" in msg
    if field is not None:
        assert f"field {field!r}" in msg
    assert part in msg, msg


def test_missing_file_and_bad_options(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_conversations(tmp_path / "nope.json")
    with pytest.raises(ConfigError, match="format"):
        load_conversations(FIX / "alpaca.json", "yaml")
    with pytest.raises(ConfigError, match="on_bad_record"):
        load_conversations(FIX / "alpaca.json", on_bad_record="ignore")
    with pytest.raises(ConfigError, match="role_map"):
        load_conversations(FIX / "sharegpt.jsonl", role_map={"observation": "robot"})


def test_explicit_format_mismatch_names_field(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(_j([_msgs(*UA)]), encoding="utf-8")
    with pytest.raises(DataError) as err:
        load_conversations(path, "alpaca")
    assert err.value.field == "instruction" and "looks like messages" in str(err.value)


def test_raw_text_errors(tmp_path):
    p = tmp_path / "r.jsonl"
    p.write_text(_j({"text": "ok"}) + "\n" + _j({"txt": "no"}) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        load_raw_text(p)
    assert err.value.record == 1 and err.value.field == "text"
    p.write_text(_j({"text": 5}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="must be a string"):
        load_raw_text(p)
    p = tmp_path / "r.txt"
    p.write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataError, match="empty"):
        load_raw_text(p)


def test_conversation_rules():
    with pytest.raises(ConversationError, match="no turns"):
        Conversation([])
    with pytest.raises(ConversationError, match="unknown role"):
        Conversation([Turn("narrator", "x")])
    with pytest.raises(ConversationError, match="tool turn"):
        Conversation([Turn("user", "q"), Turn("tool", "r")])
    with pytest.raises(ConversationError, match="two user turns"):
        Conversation([Turn("user", "q"), Turn("user", "q2")])
    c = Conversation.simple("q", "a", system="s")
    assert c.system == "s" and [t.role for t in c.messages] == ["user", "assistant"]
    assert Conversation([Turn("user", "q"), Turn("assistant", "call"), Turn("tool", "r"),
                         Turn("assistant", "a")]).system is None


# --------------------------------------------------------------------------- bounded reads

@pytest.fixture
def no_hang():
    """Fail, instead of hanging the suite, when a read blocks (a FIFO opened for reading)."""
    import signal

    def hung(signum, frame):
        raise AssertionError("the loader blocked reading the path")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(10)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def _special_path(tmp_path, kind):
    import os
    import socket

    if kind == "fifo":
        path = tmp_path / "pipe.jsonl"
        os.mkfifo(path)
        return path, None
    if kind == "socket":
        path = tmp_path / "sock.jsonl"
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        return path, sock
    if kind == "directory":
        path = tmp_path / "dir.json"
        path.mkdir()
        return path, None
    return Path("/dev/zero"), None


@pytest.mark.parametrize("loader", ["conversations", "raw_text"])
@pytest.mark.parametrize("kind,words", [
    ("fifo", "is a FIFO (named pipe), not a data file"),
    ("device", "is a character device, not a data file"),
    ("socket", "is a socket, not a data file"),
    ("directory", "is a directory, not a data file"),
])
def test_only_regular_files_are_read(tmp_path, no_hang, loader, kind, words):
    path, keep = _special_path(tmp_path, kind)
    load = load_conversations if loader == "conversations" else load_raw_text
    try:
        with pytest.raises(DataError) as err:
            load(path)
    finally:
        if keep is not None:
            keep.close()
    msg = str(err.value)
    assert msg.startswith(f"file {path}: ") and words in msg and "regular files" in msg, msg


@pytest.mark.parametrize("loader,name", [("conversations", "d.jsonl"), ("raw_text", "t.txt")])
def test_files_above_the_size_limit_are_refused_before_reading(tmp_path, loader, name):
    path = tmp_path / name
    line = json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})
    path.write_text((line + "\n") * 20000)  # about 1.5 MB
    load = load_conversations if loader == "conversations" else load_raw_text
    with pytest.raises(DataError) as err:
        load(path, max_file_mb=1)
    msg = str(err.value)
    assert f"file {path}: is 1." in msg and "above the limit of 1 MB" in msg and "data.max_file_mb" in msg, msg
    assert len(load(path, max_file_mb=2)) == 20000


def test_nested_records_are_skipped_and_counted(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text("\n".join([_j(_msgs(*UA)), "[" * 100_000 + "]" * 100_000, _j(_msgs(*UA))]) + "\n")
    report: dict = {}
    assert len(load_conversations(p, on_bad_record="skip", report=report)) == 2
    assert report["skipped_reasons"] == {"nested too deeply": 1}
    p = tmp_path / "r.jsonl"
    p.write_text(_j({"text": "ok"}) + "\n" + '{"text": ' + "[" * 5000 + "]" * 5000 + "}\n")
    with pytest.raises(DataError) as err:
        load_raw_text(p)
    assert err.value.record == 1 and "nested more than 100 levels deep on line 2" in str(err.value)


# (file name, content, warning)
DUPLICATES = [
    ("d.jsonl", _j(_msgs(*UA)) + '\n{"messages": [], "messages": [{"role": "user", "content": "q"}, '
     '{"role": "assistant", "content": "a"}]}\n', "record 1 (line 2): 'messages'"),
    ("d.json", "[" + _j(_msgs(*UA)) + ', {"messages": [{"role": "user", "content": "q", "content": "r"}, '
     '{"role": "assistant", "content": "a"}]}]', "record 1: 'content'"),
    ("d.json", '[{"instruction": "i", "output": "o", "output": "p"}]', "record 0: 'output'"),
]


@pytest.mark.parametrize("name,content,words", DUPLICATES)
def test_duplicate_keys_are_a_warning_naming_record_and_key(tmp_path, name, content, words):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    report: dict = {}
    convs = load_conversations(path, report=report)
    (warning,) = [w for w in report["warnings"] if "duplicate" in w]
    assert warning.startswith(f"file {path}: ") and words in warning and "last" in warning, warning
    assert len(convs) == (content.count('"assistant"') or 1)
