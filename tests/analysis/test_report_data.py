"""The report's training-data section: one example with its loss mask (marked in report.md,
highlighted and escaped in report.html) and the data counts the job recorded."""

from __future__ import annotations

import json
import re

import yaml

from analysis.dataview import data_counts, render_example
from analysis.report import write_report
from analysis_helpers import BASE_CONFIG, BASE_EVAL, summary_for, write_job

ANSWER = 'Use <b>bold</b> & <script>alert("x")</script> [[not a mark]]'
DATA = {
    "load.main": {"loaded": 12, "skipped": 1},
    "dedup.main": {"n_in": 12, "duplicates": 2, "n_kept": 10},
    "quality.main": {"n_in": 10, "n_kept": 8,
                     "removed": {"too_short": 1, "too_long": 0, "low_ratio": 1, "low_diversity": 0}},
    "length.main": {"n_in": 6, "n_kept": 5, "truncated": 3, "dropped_too_long": 0, "dropped_no_trained_tokens": 1},
    "length.val": {"n_in": 2, "n_kept": 2, "truncated": 7, "dropped_too_long": 0, "dropped_no_trained_tokens": 0},
    "mix": {"n_sft": 5, "n_replay": 1, "achieved_ratio": 1 / 6},
    "n_train_examples": 6,
}


def _files_job(tmp_path):
    """A completed job trained on an Alpaca file whose first record has a system prompt."""
    start = tmp_path / "start"
    start.mkdir()
    # four more records without a system prompt: one of the five is held out (record 2 at seed 0)
    records = [{"system": "Be brief.", "instruction": "Say <hi> & more", "input": "", "output": ANSWER}]
    records += [{"instruction": f"Question {i}?", "input": "", "output": f"Answer number {i}."} for i in range(4)]
    (start / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    config = {**BASE_CONFIG, "mix.replay_ratio": 0.2}
    summary = summary_for(config, [], dict(BASE_EVAL), {**BASE_EVAL, "raw_loss": 1.3}, steps=5)
    summary["data"] = DATA
    job = write_job(tmp_path / "sweep" / "0", overrides=[], summary=summary,
                    metrics=[{"kind": "eval", "step": 0, **BASE_EVAL}])
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump({
        "data": {"source": "files", "datasets": {"main": {"path": "data.jsonl", "format": "alpaca"}}},
        "template": {"name": "chatml", "mask": "assistant"}, "model": {"block_size": 256}}))
    (job / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"cwd": str(start)}}}))
    return job


def test_example_marks_exactly_the_assistant_answer(tmp_path):
    ex = render_example(_files_job(tmp_path))
    trained = [t for t, on in ex.spans if on]
    assert trained == [ANSWER + "<|im_end|>"]
    text = "".join(t for t, _ in ex.spans)
    assert text == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nSay <hi> & more<|im_end|>\n"
                    f"<|im_start|>assistant\n{ANSWER}<|im_end|>")
    assert ex.n_trained == len((ANSWER).encode()) + 1  # the answer's bytes and the end id
    assert ex.n_tokens == len(text.replace("<|im_start|>", "S").replace("<|im_end|>", "E").encode())


def test_counts_come_from_the_summary():
    c = data_counts({"data": DATA}, {"mix.replay_ratio": 0.2})
    assert (c.training_examples, c.filtered, c.deduplicated, c.truncated, c.dropped) == (6, 2, 2, 3, 1)
    assert c.skipped_records == 1
    older = {"quality.w": {"n_in": 5, "n_kept": 4, "removed": {"too_short": 0, "duplicate": 1}}}
    assert data_counts({"data": older}).deduplicated == 1  # jobs that deduplicated in the quality filter
    assert c.filtered_by_rule == {"too_short": 1, "too_long": 0, "low_ratio": 1, "low_diversity": 0}
    assert c.replay_ratio == 1 / 6 and c.replay_ratio_asked == 0.2 and c.n_replay == 1
    assert data_counts({"data": {"train": 800}}).lines()[0] == "training examples: not recorded"


def test_report_shows_the_example_and_the_counts(tmp_path, no_figures):
    _files_job(tmp_path)
    paths = write_report(tmp_path / "sweep", tmp_path / "out")
    md, html = paths.markdown.read_text(), paths.html.read_text()
    assert "## Training data" in md
    assert f"<|im_start|>assistant\n[[{ANSWER}<|im_end|>]]\n```" in md
    assert "Say <hi> & more<|im_end|>" in md  # inside a code fence: shown verbatim, untrained
    for line in ("training examples: 6", "filtered by the quality rules: 2 (too_short 1, low_ratio 1)",
                 "deduplicated: 2", "truncated: 3", "dropped (too long or no trained token left): 1",
                 "records skipped while loading: 1",
                 "replay ratio: 16.7% of the training sequences are raw text (1 sequence, asked 20%)"):
        assert line.replace("_", "\\_") in md, line
    masked = re.search(r'<pre class="masked">(.*?)</pre>', html, re.S).group(1)
    assert "<script>" not in html and "<b>" not in masked
    assert re.findall(r"<mark>(.*?)</mark>", masked, re.S) == [
        'Use &lt;b&gt;bold&lt;/b&gt; &amp; &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; [[not a mark]]'
        "&lt;|im_end|&gt;"]
    assert "Say &lt;hi&gt; &amp; more" in masked


def test_an_example_that_cannot_be_rendered_is_one_line(tmp_path, no_figures):
    job = _files_job(tmp_path)
    (tmp_path / "start" / "data.jsonl").unlink()
    md = write_report(job.parent, tmp_path / "out").markdown.read_text()
    assert re.search(r"The training example of job 0 could not be rendered: \w+", md)
    assert "training examples: 6" in md


def test_example_is_one_the_job_trained_on(tmp_path, no_figures):
    # The first record's answer is longer than the job's response-length filter and the split holds
    # some records out: the report shows a conversation that reached training, not record 0.
    start = tmp_path / "start"
    start.mkdir()
    records = [{"instruction": "Write an essay.", "input": "", "output": "long " * 100}]
    records += [{"instruction": f"Question {i}?", "input": "", "output": f"Answer {i}."} for i in range(9)]
    (start / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    summary = summary_for(dict(BASE_CONFIG), [], dict(BASE_EVAL), {**BASE_EVAL, "raw_loss": 1.3}, steps=5)
    job = write_job(tmp_path / "sweep" / "0", overrides=[], summary=summary,
                    metrics=[{"kind": "eval", "step": 0, **BASE_EVAL}])
    config = {"data": {"source": "files", "val_fraction": 0.2, "quality": {"max_response_chars": 50},
                       "datasets": {"main": {"path": "data.jsonl", "format": "alpaca"}}},
              "template": {"name": "chatml", "mask": "assistant"}, "model": {"block_size": 256}}
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (job / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"cwd": str(start)}}}))

    from sft_sweep.config import Config, to_object
    from sft_sweep.data import prepare
    from omegaconf import OmegaConf
    cfg = to_object(OmegaConf.merge(OmegaConf.structured(Config), config))
    data = prepare(cfg, str(start))
    from sft_sweep.tokenizer import ByteTokenizer
    tok = ByteTokenizer()
    trained = {tok.decode(e.ids.tolist()) for e in data.train_examples}
    held_out = {tok.decode(e.ids.tolist()) for e in data.val_examples}

    ex = render_example(job)
    text = "".join(t for t, _ in ex.spans)
    assert "essay" not in text
    assert text in trained and text not in held_out
