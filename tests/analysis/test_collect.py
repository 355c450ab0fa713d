"""Collecting job directories into tables: statuses, broken files, swept columns, CSV export."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from analysis.collect import _is_sweep_value, collect_runs, detect_swept
from analysis.jobdir import find_job_dirs, parse_overrides, parse_scalar
from analysis.errors import ReportError
from analysis_helpers import BASE_CONFIG, BASE_EVAL, summary_for, write_job


def _config(**over):
    return {**BASE_CONFIG, **over}


def _eval_row(step, **m):
    return {"kind": "eval", "step": step, **m}


def _train_row(step, loss):
    return {"kind": "train", "step": step, "epoch": step / 10, "lr": 1e-4, "loss": loss,
            "grad_norm": 1.0, "tokens_per_s": 1e4}


@pytest.fixture
def mixed_sweep(tmp_path):
    """One job of each kind the analysis must survive."""
    d = tmp_path / "sweep"
    final = {**BASE_EVAL, "raw_loss": 1.331, "follow_rate": 0.9}
    # 0: completed
    ov = ["optim.lr=0.0001", "train.epochs=1"]
    write_job(d / "0", overrides=ov,
              summary=summary_for(_config(**{"optim.lr": 1e-4, "train.epochs": 1}), ov, BASE_EVAL, final, steps=10),
              metrics=[_eval_row(0, **BASE_EVAL), _train_row(5, 2.0), _train_row(10, 1.5), _eval_row(10, **final)])
    # 1: failed
    ov = ["optim.lr=0.01", "train.epochs=1"]
    s = summary_for(_config(**{"optim.lr": 1e-2, "train.epochs": 1}), ov, BASE_EVAL, final, steps=3,
                    status="failed", error="Traceback (most recent call last):\n  ...\nNonFiniteLossError: nan at step 4")
    del s["final"], s["forgetting_pct"]
    write_job(d / "1", overrides=ov, summary=s, metrics=[_eval_row(0, **BASE_EVAL), _train_row(3, 9.0)])
    # 2: running, no summary yet, torn last line
    ov = ["optim.lr=1e-3", "train.epochs=2"]
    write_job(d / "2", overrides=ov, metrics=[_eval_row(0, **BASE_EVAL), _train_row(5, 1.9)],
              metrics_tail='{"kind": "train", "st')
    # 3: half-written summary.json, metrics with a corrupt line in the middle and at the end
    ov = ["optim.lr=1e-5", "train.epochs=2"]
    write_job(d / "3", overrides=ov, metrics=[_eval_row(0, **BASE_EVAL)], metrics_tail='oops\n{"kind": "tr')
    (d / "3" / "summary.json").write_text('{"status": "completed", "config_hash": "ab')
    # 4: completed summary but no metrics.jsonl; final lacks knowledge metrics (absent, not 0)
    ov = ["optim.lr=0.0003", "train.epochs=1"]
    part = {k: v for k, v in final.items() if not k.startswith("knowledge")}
    write_job(d / "4", overrides=ov,
              summary=summary_for(_config(**{"optim.lr": 3e-4, "train.epochs": 1}), ov, BASE_EVAL, part, steps=10))
    # 5: summary says running (the app writes that at job start)
    ov = ["optim.lr=0.0001", "train.epochs=2"]
    s = summary_for(_config(**{"optim.lr": 1e-4, "train.epochs": 2}), ov, BASE_EVAL, final, steps=0, status="running")
    del s["final"], s["forgetting_pct"]
    write_job(d / "5", overrides=ov, summary=s, metrics=[_eval_row(0, **BASE_EVAL)])
    return d


def test_statuses_and_done_flags(mixed_sweep):
    runs = collect_runs(mixed_sweep)
    st = dict(zip(runs.jobs["job"], runs.jobs["status"]))
    assert st == {"0": "completed", "1": "failed", "2": "running", "3": "unreadable", "4": "completed",
                  "5": "running"}
    assert sorted(runs.done_jobs()["job"]) == ["0", "4"]
    failed = runs.jobs.set_index("job").loc["1"]
    assert failed["error"] == "NonFiniteLossError: nan at step 4"  # the exception line of the traceback
    assert math.isnan(failed["forgetting_pct"])


def test_broken_files_are_reported_not_fatal(mixed_sweep):
    runs = collect_runs(mixed_sweep)
    text = "\n".join(str(p) for p in runs.problems)
    assert "3/summary.json" in text and "not valid JSON" in text
    assert "3/metrics.jsonl" in text and "line(s) 2, 3 (cut off at the end)" in text
    # the running job's torn last line is expected while it writes: not a problem
    assert "2/metrics.jsonl" not in text
    # rows before the bad lines survive
    cur = runs.curves
    assert set(cur.loc[cur["job"] == "2", "step"]) == {0, 5}
    assert set(cur.loc[cur["job"] == "3", "metric"]) == set(BASE_EVAL)


def test_absent_metric_stays_absent(mixed_sweep):
    runs = collect_runs(mixed_sweep)
    j4 = runs.jobs.set_index("job").loc["4"]
    assert math.isnan(j4["final_knowledge_mc_acc"])  # not a fake 0
    assert j4["final_follow_rate"] == pytest.approx(0.9)
    assert j4["forgetting_pct"] == pytest.approx(10.0)
    assert runs.curves[runs.curves["job"] == "4"].empty  # no metrics.jsonl


def test_null_and_non_numeric_metric_values_are_skipped(tmp_path):
    d = tmp_path / "s"
    write_job(d / "0", overrides=["optim.lr=0.1"], metrics=[
        {"kind": "train", "step": 1, "loss": None, "grad_norm": "big", "lr": 0.1},
        {"kind": "train", "loss": 1.0},  # no step
    ])
    runs = collect_runs(d)
    assert list(runs.curves["metric"]) == ["lr"]
    assert any("no numeric 'step'" in str(p) for p in runs.problems)


def test_params_of_running_job_come_from_overrides(mixed_sweep):
    runs = collect_runs(mixed_sweep)
    j2 = runs.jobs.set_index("job").loc["2"]
    assert j2["optim.lr"] == pytest.approx(1e-3)  # "1e-3" parsed as a float
    assert j2["train.epochs"] == 2
    assert j2["last_step"] == 5


def test_swept_columns_detected(demo_runs):
    assert demo_runs.swept == ["optim.lr", "train.epochs", "train.seed"]
    assert demo_runs.seeds == ["train.seed"]
    assert demo_runs.params == ["optim.lr", "train.epochs"]
    assert demo_runs.axis("lr") == "optim.lr" and demo_runs.axis("epochs") == "train.epochs"
    assert demo_runs.axis("replay") is None
    assert demo_runs.constants["model.name"] == "tiny"
    assert "experiment" not in demo_runs.swept  # overridden, but the same in every job
    assert demo_runs.jobs["optim.lr"].dtype == float and demo_runs.jobs["train.epochs"].dtype == "int64"


def test_group_override_maps_to_name_and_dependents_are_derived(tmp_path):
    d = tmp_path / "s"
    for i, (model, layers, tmpl) in enumerate([("tiny", 2, "chatml"), ("small", 4, "chatml"),
                                               ("tiny", 2, "alpaca"), ("small", 4, "alpaca")]):
        ov = [f"model={model}", f"template={tmpl}"]
        cfg = _config(**{"model.name": model, "model.n_layer": layers, "template.name": tmpl,
                         "train.out_dir": f"/runs/{i}"})
        write_job(d / str(i), overrides=ov, summary=summary_for(cfg, ov, BASE_EVAL, BASE_EVAL, steps=1))
    runs = collect_runs(d)
    assert runs.swept == ["model.name", "template.name"]
    assert runs.derived == ["model.n_layer"]  # follows from the model choice
    assert "train.out_dir" not in runs.swept + runs.derived  # a path, not a setting
    assert runs.axis("template") == "template.name" and runs.axis("model") == "model.name"


def test_swept_detected_without_overrides(tmp_path):
    d = tmp_path / "s"
    for i, lr in enumerate([1e-4, 1e-3]):
        write_job(d / str(i), hydra=False,
                  summary=summary_for(_config(**{"optim.lr": lr}), [], BASE_EVAL, BASE_EVAL, steps=1))
    runs = collect_runs(d)
    assert runs.swept == ["optim.lr"]


def test_detect_swept_unit():
    t = pd.DataFrame({"a": [1, 2, 1, 2], "b": [5, 5, 5, 5], "c": [10, 20, 10, 20], "d": [1, 1, 2, 2],
                      "run.dir": ["x", "y", "z", "w"]}, dtype=object)
    swept, derived, const = detect_swept(t, {"a"}, set())
    assert swept == ["a", "d"]  # d varies on its own: swept even though nobody declared it
    assert derived == ["c"]
    assert const == {"b": 5}


def test_multirun_yaml_sweeper_params(tmp_path):
    d = tmp_path / "s"
    d.mkdir()
    (d / "multirun.yaml").write_text("hydra:\n  overrides:\n    task:\n    - experiment=q\n"
                                     "  sweeper:\n    params:\n      optim.lr: 1e-5,1e-4\n")
    for i, lr in enumerate([1e-5, 1e-4]):
        write_job(d / f"optim.lr={lr}", overrides=[f"optim.lr={lr}", "experiment=q"],
                  summary=summary_for(_config(**{"optim.lr": lr}), [], BASE_EVAL, BASE_EVAL, steps=1))
    runs = collect_runs(d)
    assert runs.swept == ["optim.lr"]
    assert runs.sweep_specs == {"s": ["experiment=q"]}
    assert sorted(runs.jobs["job"]) == ["optim.lr=0.0001", "optim.lr=1e-05"]


def test_parse_overrides_and_scalars():
    got = parse_overrides(["optim.lr=1e-4", "+mix.replay_ratio=0.05", "++train.seed=3", "~eval.x",
                           "hydra.launcher.n_jobs=2", "template=alpaca", "data.path='a=b'",
                           "model@m=tiny", "flag=true", "x=null"])
    assert got == {"optim.lr": 1e-4, "mix.replay_ratio": 0.05, "train.seed": 3, "template": "alpaca",
                   "data.path": "a=b", "model": "tiny", "flag": True, "x": None}
    assert parse_scalar("nan") == "nan" and parse_scalar("2") == 2 and parse_scalar("2.0") == 2.0
    assert _is_sweep_value("1,2,3") and _is_sweep_value("range(0,3)") and _is_sweep_value(" choice(a,b)")
    assert not _is_sweep_value("[1,2]") and not _is_sweep_value("'a,b'") and not _is_sweep_value("3e-4")


def test_find_job_dirs_any_depth(tmp_path):
    root = tmp_path / "sweep"
    (root / "a" / "b" / "job1").mkdir(parents=True)
    (root / "a" / "b" / "job1" / "summary.json").write_text("{}")
    (root / "job2" / ".hydra").mkdir(parents=True)
    (root / "job2" / "ckpt" / ".hydra").mkdir(parents=True)  # inside a job: not a job of its own
    (root / "notajob").mkdir()
    (root / "report_files").mkdir()
    found = [p.relative_to(root).as_posix() for p in find_job_dirs(root)]
    assert found == ["a/b/job1", "job2"]
    assert find_job_dirs(root / "job2") == [root / "job2"]  # a job dir given directly


def test_several_sweeps_get_prefixed_ids(tmp_path, demo_sweep):
    other = tmp_path / "x" / "demo"
    write_job(other / "0", overrides=["optim.lr=0.5"],
              summary=summary_for(_config(**{"optim.lr": 0.5}), [], BASE_EVAL, BASE_EVAL, steps=1))
    runs = collect_runs([demo_sweep, other])
    assert "demo/0" in set(runs.jobs["job"]) and "demo#2/0" in set(runs.jobs["job"])
    assert runs.jobs["job"].is_unique
    assert set(runs.jobs["sweep"]) == {"demo", "demo#2"}


def test_bad_input_raises_report_error(tmp_path):
    with pytest.raises(ReportError, match="no such directory"):
        collect_runs(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportError, match="no jobs found"):
        collect_runs(tmp_path / "empty")
    (tmp_path / "f").write_text("x")
    with pytest.raises(ReportError, match="not a directory"):
        collect_runs(tmp_path / "f")


def test_csv_export(demo_runs, tmp_path):
    paths = demo_runs.export(tmp_path)
    names = {p.name for p in paths}
    assert {"jobs.csv", "curves.csv"} <= names
    jobs = pd.read_csv(tmp_path / "jobs.csv")
    assert len(jobs) == 12
    assert {"job", "status", "optim.lr", "train.epochs", "train.seed", "forgetting_pct",
            "final_follow_rate", "base_raw_loss"} <= set(jobs.columns)
    assert jobs["status"].value_counts().to_dict() == {"completed": 10, "failed": 1, "running": 1}
    row = jobs[jobs["job"] == 4].iloc[0]
    assert row["optim.lr"] == pytest.approx(1e-4) and row["train.epochs"] == 1 and row["train.seed"] == 0
    expected = demo_runs.jobs.set_index("job").loc["4", "forgetting_pct"]
    assert row["forgetting_pct"] == pytest.approx(expected)
    curves = pd.read_csv(tmp_path / "curves.csv")
    assert list(curves.columns) == ["job", "step", "kind", "metric", "value"]
    assert len(curves) == len(demo_runs.curves)
    first = json.loads((demo_runs.roots[0] / "0" / "metrics.jsonl").read_text().splitlines()[0])
    got = curves[(curves["job"] == 0) & (curves["step"] == 0) & (curves["metric"] == "raw_loss")]["value"]
    assert got.iloc[0] == pytest.approx(first["raw_loss"])
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        assert "jobs.parquet" not in names
    else:
        assert "jobs.parquet" in names


def test_samples_collected(demo_runs):
    s = demo_runs.samples
    assert list(s.columns[:6]) == ["job", "task", "prompt", "reference", "base", "sft"]
    assert (s["job"] == "0").sum() == 4


def test_skipped_counts_as_completed(tmp_path):
    d = tmp_path / "s"
    ov = ["optim.lr=0.001"]
    s = summary_for(_config(**{"optim.lr": 1e-3}), ov, BASE_EVAL, BASE_EVAL, steps=1, status="skipped")
    write_job(d / "0", overrides=ov, summary=s)
    runs = collect_runs(d)
    assert runs.jobs["done"].tolist() == [True] and runs.status_counts() == {"skipped": 1}


def test_cache_dir_and_experiment_of_two_sweeps_are_not_swept_settings(tmp_path):
    # Two sweep commands with their own experiment and base-model cache: what they swept is the
    # learning rate; the cache location and the experiment's name are no settings of the jobs.
    roots = []
    for name, cache, lrs in (("a", "/c/one", [1e-4, 1e-3]), ("b", "/c/two", [3e-4, 3e-3])):
        d = tmp_path / name
        roots.append(d)
        for i, lr in enumerate(lrs):
            ov = [f"optim.lr={lr}", f"experiment={name}", f"pretrain.cache_dir={cache}", "train.threads=1"]
            cfg = _config(**{"optim.lr": lr, "pretrain.cache_dir": cache, "train.threads": 1 + (name == "b")})
            write_job(d / str(i), overrides=ov, summary=summary_for(cfg, ov, BASE_EVAL, BASE_EVAL, steps=1))
    runs = collect_runs(roots)
    assert runs.swept == ["optim.lr"]
    for key in ("experiment", "pretrain.cache_dir", "train.threads"):
        assert key not in runs.swept + runs.derived, key


def _counted_job(root, name, lr, **extra):
    return write_job(root / name, overrides=[f"optim.lr={lr}"],
                     summary={"status": "completed", "config": {"optim.lr": lr, "eval.max_items": 12},
                              "overrides": [f"optim.lr={lr}"], "base": {"answer_acc": 0.1},
                              "final": {"answer_acc": 0.5, "answer_acc_multi_turn": 0.5, "system_format_acc": 0.6},
                              "data": {"world": {"n_eval_items": 106, "n_system_format_eval": 15,
                                                 "n_multi_turn_eval": 6}}, **extra})


def test_the_counts_a_job_recorded_are_read_once_into_the_jobs_table(tmp_path):
    """summary.json's ``scored`` -> items_answer, items_multi_turn, items_system_format and per
    format format_obeyed_<style> of items_format_<style>; a job from before it has no per-format
    or second-turn count, and its format-prompted count is the world's, as before."""
    scored = {"answer": 12, "multi_turn": {"correct": 2, "n": 4},
              "system_format": {"word": {"obeyed": 1, "n": 2}, "caps": {"obeyed": 0, "n": 1},
                                "full": {"obeyed": 2, "n": 2}}}
    _counted_job(tmp_path, "new", 3e-4, scored=scored)
    _counted_job(tmp_path, "old", 3e-3)
    jobs = collect_runs(tmp_path).jobs.set_index("job")
    new, old = jobs.loc["new"], jobs.loc["old"]
    assert (new["items_answer"], new["items_multi_turn"], new["items_system_format"]) == (12, 4, 5)
    assert [(new[f"format_obeyed_{s}"], new[f"items_format_{s}"]) for s in ("word", "caps", "full")] == \
        [(1, 2), (0, 1), (2, 2)]
    assert old["items_answer"] == 12 and old["items_system_format"] == 15
    assert pd.isna(old["items_multi_turn"]) and pd.isna(old["format_obeyed_word"]) and pd.isna(old["items_format_caps"])


def test_the_collector_reads_a_smoke_jobs_counts(tmp_path):
    """A real job's summary: the table's counts are those its evaluator counted."""
    from tests.app.test_job import run_job
    cache = tmp_path / "cache"
    job, s = run_job(tmp_path / "sweep", str(cache), ["data.world.system_fraction=0.4", "data.world.n_eval=20",
                                                       "data.world.n_eval_multi_turn=6", "eval.max_items=40"])
    assert s["status"] == "completed", s.get("error")
    row = collect_runs(tmp_path / "sweep").jobs.iloc[0]
    scored = s["scored"]
    assert row["items_answer"] == scored["answer"] and row["items_multi_turn"] == scored["multi_turn"]["n"]
    for st, c in scored["system_format"].items():
        assert (row[f"format_obeyed_{st}"], row[f"items_format_{st}"]) == (c["obeyed"], c["n"])
    assert row["items_system_format"] == sum(c["n"] for c in scored["system_format"].values())
