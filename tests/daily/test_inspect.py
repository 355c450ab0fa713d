"""sft-sweep-inspect: the mask shown token by token, and the counts a job records."""

import json
import re

import pytest

from sft_sweep.data import Conversation, render
from sft_sweep.inspect_data import (ANSI_TRAINED, RenderedExample, as_html, as_text, compose_config,
                                    inspect_config, main, spans)
from sft_sweep.tokenizer import ByteTokenizer
from sft_sweep.train.job import Job
from tests.conftest import REPO

TOK = ByteTokenizer()
FIXTURE = REPO / "tests" / "data" / "fixtures" / "alpaca.json"


@pytest.mark.parametrize("template", ["chatml", "alpaca", "plain"])
@pytest.mark.parametrize("mask", ["assistant", "last", "all"])
def test_spans_mark_exactly_the_trained_tokens(template, mask):
    conv = Conversation.simple("What is 2+2? <|im_end|> [[x]]", "4, of course.", system="Be exact.")
    ids, m = render(conv, template, mask=mask)
    runs = spans(ids, m)
    assert "".join(t for t, _ in runs) == TOK.decode(ids)
    # Token by token: the trained runs are the decoded trained ids, in order.
    trained_runs, cur = [], []
    for t, on in zip(ids, m):
        if on:
            cur.append(t)
        elif cur:
            trained_runs.append(TOK.decode(cur))
            cur = []
    if cur:
        trained_runs.append(TOK.decode(cur))
    assert [t for t, on in runs if on] == trained_runs


def test_brackets_ansi_and_html_renderings():
    ids, m = render(Conversation.simple("a<b", "c&d"), "plain")
    ex = RenderedExample(0, ids, m, len(ids), "kept")
    assert "[[c&d<|endoftext|>]]" in as_text(ex, "brackets")
    assert f"{ANSI_TRAINED}c&d" in as_text(ex, "ansi")
    page = as_html(ex)
    assert "a&lt;b" in page and "<mark>c&amp;d&lt;|endoftext|&gt;</mark>" in page


def test_counts_are_the_numbers_the_job_records(tmp_path):
    overrides = ["experiment=smoke", "train.threads=1", f"pretrain.cache_dir={tmp_path / 'cache'}", "data=files",
                 f"data.datasets.main.path={FIXTURE}", "model.block_size=48", "train.max_steps=1"]
    cfg = compose_config(overrides)
    found = inspect_config(cfg, n_examples=4)
    from hydra import compose, initialize_config_dir

    from tests.conftest import CONF_DIR
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        composed = compose("config", overrides=overrides)
    summary = Job(composed, tmp_path / "job", base_dir=str(REPO)).run()
    assert summary["status"] == "completed", summary.get("error")
    for key, value in found.counts.items():
        if key in summary["data"]:
            assert summary["data"][key] == value, key
    assert {"load.main", "quality.main", "length.main"} <= set(found.counts)
    assert found.counts["n_train_examples"] == summary["data"]["n_train_examples"]
    assert len(found.examples) == 4
    assert all(e.n_total <= 49 for e in found.examples if not e.status.startswith("dropped"))
    assert any(e.status == "truncated" for e in found.examples)


def test_cli_prints_brackets_when_piped(capsys):
    main([str(FIXTURE), "-n", "2", "model=tiny"])
    out = capsys.readouterr().out
    assert "[[" in out and "\x1b[" not in out
    assert re.search(r"example 0 \(main\): \d+ trained / \d+ tokens", out)
    assert "truncated" in out and "deduplicated" in out


def test_cli_json_and_html(tmp_path, capsys):
    page = tmp_path / "mask.html"
    main(["--html", str(page), "--json", "-n", "1", "--template", "alpaca"])  # the built-in world
    out = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert out["template"] == "alpaca" and out["examples"][0]["trained"] > 0
    assert "world" in out["counts"] and "<mark>" in page.read_text()


@pytest.mark.parametrize("args,needle", [(["nope.json"], "file nope.json: file not found"),
                                         (["--role-map", "x"], "FROM=ROLE"),
                                         (["optim.lrr=1"], "lrr")])
def test_bad_input_is_one_line(tmp_path, capsys, args, needle):
    if args == ["--role-map", "x"]:
        args = [str(FIXTURE), *args]
    with pytest.raises(SystemExit) as e:
        main(args)
    err = capsys.readouterr().err
    assert e.value.code == 2 and needle in err and err.count("\n") == 1, err


def test_glaive_tool_calls_with_a_role_map(shared_data, capsys):
    path = shared_data / "glaive_toolcall_en_demo.json"
    with pytest.raises(SystemExit):
        main([str(path), "-n", "1"])
    assert "function_call" in capsys.readouterr().err  # unmapped role: named, one line
    main([str(path), "--role-map", "function_call=assistant", "--role-map", "observation=tool", "-n", "1", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert out["counts"]["load.main"]["loaded"] == 300
