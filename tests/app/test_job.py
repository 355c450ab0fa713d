"""End-to-end jobs on the tiny model: files, skipping, resuming, failures, the base-model lock."""

import json
import multiprocessing as mp
import os
import subprocess
import sys

import pytest

from sft_sweep.config import register_configs, to_object
from sft_sweep.data.prepare import prepare, pretrain_source
from sft_sweep.train.job import Job
from sft_sweep.train.pretrain import load_or_build_base
from sft_sweep.train.resources import Threads
from sft_sweep.jobfiles import read_jsonl
from tests.conftest import REPO, compose_cfg

register_configs()
SMOKE = ["experiment=smoke", "train.threads=1"]



@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cache"))


def run_job(tmp_path, cache_dir, extra=(), name="job"):
    cfg = compose_cfg([*SMOKE, f"pretrain.cache_dir={cache_dir}", *extra])
    job = Job(cfg, tmp_path / name, overrides=list(extra), base_dir=str(REPO))
    return job, job.run()


def test_job_writes_files_and_learns(tmp_path, cache_dir):
    job, s = run_job(tmp_path, cache_dir, ["optim.lr=3e-3"])
    assert s["status"] == "completed", s.get("error")
    d = job.dir
    summary = json.loads((d / "summary.json").read_text())
    assert summary["config_hash"] == job.hash and summary["config"]["optim.lr"] == 3e-3
    for part in ("base", "final"):
        for k in ("raw_loss", "response_loss", "follow_rate", "answer_acc", "answer_mc_acc",
                  "knowledge_acc", "knowledge_mc_acc"):
            assert k in summary[part], (part, k)
    expected = 100 * (summary["final"]["raw_loss"] - summary["base"]["raw_loss"]) / summary["base"]["raw_loss"]
    assert summary["forgetting_pct"] == pytest.approx(expected)
    rows = read_jsonl(d / "metrics.jsonl")
    train = [r for r in rows if r["kind"] == "train"]
    evals = [r for r in rows if r["kind"] == "eval"]
    assert [r["step"] for r in train] == [3, 6, 9, 12]
    assert {"step", "epoch", "lr", "loss", "grad_norm", "tokens_per_s"} <= set(train[0])
    assert [r["step"] for r in evals] == [0, 6, 12]
    # SFT lowers the loss on held-out responses (the base has never seen the template).
    assert evals[-1]["response_loss"] < evals[0]["response_loss"]
    assert train[-1]["loss"] < train[0]["loss"]
    samples = read_jsonl(d / "samples.jsonl")
    assert samples and {"prompt", "base", "sft"} <= set(samples[0])
    assert (d / "model.npz").exists() and not (d / "checkpoint.npz").exists()


def test_completed_job_is_skipped(tmp_path, cache_dir):
    job, s = run_job(tmp_path, cache_dir, ["optim.lr=1e-3"])
    before = (job.dir / "summary.json").read_text()
    _, again = run_job(tmp_path, cache_dir, ["optim.lr=1e-3"])
    assert again.get("skipped") is True
    assert (job.dir / "summary.json").read_text() == before
    # Another config in the same directory is not skipped.
    _, other = run_job(tmp_path, cache_dir, ["optim.lr=2e-3"])
    assert other.get("skipped") is None and other["status"] == "completed"


def test_killed_job_resumes_to_the_same_result(tmp_path, cache_dir, monkeypatch):
    _, full = run_job(tmp_path, cache_dir, ["optim.lr=3e-3"], name="full")

    import sft_sweep.train.sft as sft

    real_train = sft.train

    def killed_after_step_7(model, opt, examples, cfg, pl, *, start_step, on_log, on_step_end, **kw):
        def step_end(step):
            on_step_end(step)
            if step == 7:
                raise KeyboardInterrupt  # like a SIGINT / a cluster pre-emption
        return real_train(model, opt, examples, cfg, pl, start_step=start_step, on_log=on_log,
                          on_step_end=step_end, **kw)

    monkeypatch.setattr(sft, "train", killed_after_step_7)
    with pytest.raises(KeyboardInterrupt):
        run_job(tmp_path, cache_dir, ["optim.lr=3e-3"], name="killed")
    assert (tmp_path / "killed" / "checkpoint.npz").exists()
    assert json.loads((tmp_path / "killed" / "summary.json").read_text())["status"] == "interrupted"
    monkeypatch.setattr(sft, "train", real_train)
    _, resumed = run_job(tmp_path, cache_dir, ["optim.lr=3e-3"], name="killed")
    assert resumed["status"] == "completed"
    assert resumed["final"] == full["final"]
    a = [r for r in read_jsonl(tmp_path / "full" / "metrics.jsonl")]
    b = [r for r in read_jsonl(tmp_path / "killed" / "metrics.jsonl")]
    strip = lambda rows: [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in rows]
    assert strip(a) == strip(b)


def test_missing_data_file_fails_cleanly(tmp_path, cache_dir):
    _, s = run_job(tmp_path, cache_dir, ["data=files", f"data.datasets.main.path={tmp_path}/nope.json"])
    assert s["status"] == "failed" and s["user_error"] is True
    assert "nope.json" in s["error"]
    assert json.loads((tmp_path / "job" / "summary.json").read_text())["status"] == "failed"


def _build(args):
    overrides, cache = args
    cfg = to_object(compose_cfg([*SMOKE, f"pretrain.cache_dir={cache}", *overrides]))
    data = prepare(cfg, str(REPO))
    _, _, info = load_or_build_base(cfg, data.pretrain_tokens, pretrain_source(cfg, str(REPO)), cache,
                                    Threads(sft=1, pretrain=1))
    return info["built"]


def test_lock_prevents_double_pretraining(tmp_path):
    cache = str(tmp_path / "cache")
    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:
        built = pool.map(_build, [(["pretrain.seed=7"], cache)] * 2)
    assert sorted(built) == [False, True]
    assert len(list((tmp_path / "cache").glob("base-*/model.npz"))) == 1


def _cli(*args, cwd):
    env = {**os.environ, "HYDRA_FULL_ERROR": ""}
    env.pop("HYDRA_FULL_ERROR")
    return subprocess.run([sys.executable, "-m", "sft_sweep.cli", *args], cwd=cwd, capture_output=True,
                          text=True, env=env, timeout=120)


@pytest.mark.parametrize("override,needle", [
    ("optim.lrr=0.1", "lrr"),
    ("train.epochs=two", "two"),
    ("model=huge", "huge"),
])
def test_bad_overrides_give_clean_errors(tmp_path, override, needle):
    r = _cli(override, cwd=tmp_path)
    assert r.returncode != 0
    assert needle in r.stderr
    assert "Traceback" not in r.stderr


def test_invalid_value_and_missing_file_give_clean_errors(tmp_path, cache_dir):
    r = _cli(*SMOKE, "optim.lr=-1", f"pretrain.cache_dir={cache_dir}", cwd=tmp_path)
    assert r.returncode == 1 and "optim.lr" in r.stderr and "Traceback" not in r.stderr
    r = _cli(*SMOKE, "data=files", "data.datasets.main.path=missing.json", f"pretrain.cache_dir={cache_dir}",
             cwd=tmp_path)
    assert r.returncode == 1 and "missing.json" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_job_and_cache_files_get_the_users_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        job, s = run_job(tmp_path, str(tmp_path / "cache"), ["optim.lr=1e-3"])
    finally:
        os.umask(old)
    assert s["status"] == "completed", s.get("error")
    want = 0o666 & ~umask
    cache_files = sorted((tmp_path / "cache").glob("base-*/*"))
    assert {p.name for p in cache_files} >= {"model.npz", "meta.json"}
    assert any(p.name.startswith("eval-") for p in cache_files)
    files = [job.dir / n for n in ("summary.json", "metrics.jsonl", "samples.jsonl", "model.npz")] + cache_files
    modes = {str(p.relative_to(tmp_path)): oct(p.stat().st_mode & 0o777) for p in files}
    assert modes == {k: oct(want) for k in modes}


def test_periodic_evaluations_use_a_fixed_subset_and_the_final_one_every_item(tmp_path, cache_dir):
    # eval.max_items=12 with periodic_items=4: step 6 scores 4 items per set, the final every item,
    # and the final metrics equal those of a job whose periodic evaluations use every item.
    extra = ["eval.max_items=12", "optim.lr=3e-3"]
    _, quick = run_job(tmp_path, cache_dir, [*extra, "eval.periodic_items=4"], name="subset")
    _, full = run_job(tmp_path, cache_dir, [*extra, "eval.periodic_items=0"], name="every")
    assert quick["status"] == full["status"] == "completed"
    assert quick["final"] == full["final"]
    evals = {r["step"]: r for r in read_jsonl(tmp_path / "subset" / "metrics.jsonl") if r["kind"] == "eval"}
    assert evals[6]["items"] == "periodic: 4 per set" and "items" not in evals[12] and "items" not in evals[0]
    assert "memorised_exact_train" not in evals[6] and "memorised_exact_train" in evals[12]
    # 4 items: every share is a multiple of 1/4
    assert evals[6]["answer_acc"] * 4 == pytest.approx(round(evals[6]["answer_acc"] * 4))
    every = {r["step"]: r for r in read_jsonl(tmp_path / "every" / "metrics.jsonl") if r["kind"] == "eval"}
    assert evals[6]["raw_loss"] == every[6]["raw_loss"]  # losses use every item in both


def test_final_metrics_of_a_tiny_job_are_pinned(tmp_path, cache_dir):
    # The smoke job at lr 3e-3, measured on 2026-12-02 before evaluation was sped up (multiple-choice
    # prefill shared by an item's candidates, finished rows leaving the generation batch, periodic
    # subsets): the speed-ups must not move a final metric beyond float summation order.
    _, s = run_job(tmp_path, cache_dir, ["optim.lr=3e-3"])
    f = s["final"]
    assert f["raw_loss"] == pytest.approx(2.5638551, rel=1e-4)
    assert f["response_loss"] == pytest.approx(2.2043127, rel=1e-4)
    assert f["response_nats_per_byte"] == pytest.approx(2.2725641, rel=1e-4)
    assert f["memorised_loss_gap"] == pytest.approx(0.0027535, abs=2e-4)
    assert s["forgetting_pct"] == pytest.approx(4.3592692, abs=0.01)
    assert (f["knowledge_mc_acc"], f["answer_mc_acc"], f["follow_rate"]) == (0.25, 0.0, 0.0)


def test_job_records_what_its_answer_metrics_counted(tmp_path, cache_dir):
    """summary.json's ``scored``: the questions scored, the second turns answered right and, per
    format a system prompt sets, the answers that obeyed it; the rates are these counts' shares."""
    job, s = run_job(tmp_path, cache_dir, ["data.world.system_fraction=0.4", "data.world.n_eval=20",
                                          "data.world.n_eval_multi_turn=6", "eval.max_items=40"],
                     name="counted")
    assert s["status"] == "completed", s.get("error")
    summary = json.loads((job.dir / "summary.json").read_text())
    scored, final = summary["scored"], summary["final"]
    assert scored["answer"] == len(job.evaluator.eval_items)
    mt = scored["multi_turn"]
    assert 0 < mt["n"] <= 6 and final["answer_acc_multi_turn"] == pytest.approx(mt["correct"] / mt["n"])
    styles = scored["system_format"]
    assert styles and set(styles) <= {"word", "caps", "full"}
    obeyed, n = sum(c["obeyed"] for c in styles.values()), sum(c["n"] for c in styles.values())
    assert final["system_format_acc"] == pytest.approx(obeyed / n)
    assert n == sum(it.meta.get("system_style") in styles for it in job.evaluator.eval_items)
