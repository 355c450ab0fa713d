"""Faults through the job: counted data drops, warnings, finite settings, divergence, corrupt
caches and checkpoints, and the exit code of a multirun with failed jobs."""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import time
import zipfile
import sys

import numpy as np
import pytest

from sft_sweep.config import to_object, validate
from sft_sweep.errors import CheckpointError, ConfigError, DataError
from sft_sweep.data.prepare import prepare
from tests.app.test_job import SMOKE, cache_dir, compose_cfg, run_job  # noqa: F401 (a fixture)
from tests.conftest import REPO


def _conv(q, a):
    return {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}


def _jsonl(path, recs):
    path.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    return path


def _files_cfg(data_path, *extra, pretrain_text=None):
    over = [*SMOKE, "data=files", f"data.datasets.main.path={data_path}", *extra]
    if pretrain_text is not None:
        over.append(f"data.pretrain_text={pretrain_text}")
    return to_object(compose_cfg(over))


# --------------------------------------------------------------------------- raw text documents

def test_one_document_per_line_text_is_accepted(tmp_path):
    text = tmp_path / "wiki.txt"
    text.write_text("".join(f"Article {i} says something about topic {i}.\n" for i in range(30)))
    data = _jsonl(tmp_path / "d.jsonl", [_conv(f"q{i}", f"answer {i}") for i in range(20)])
    prepared = prepare(_files_cfg(data, pretrain_text=text))
    assert prepared.report["pretrain_text"] == {"documents": 30, "held_out": 3,
                                                "split": "one document per line (the file has no blank lines)"}


def test_too_few_documents_says_what_was_counted(tmp_path):
    text = tmp_path / "one.txt"
    text.write_text("One single article, all on one line.\n")
    data = _jsonl(tmp_path / "d.jsonl", [_conv(f"q{i}", f"answer {i}") for i in range(20)])
    with pytest.raises(DataError) as err:
        prepare(_files_cfg(data, pretrain_text=text))
    msg = str(err.value)
    assert str(text) in msg and "found 1 document" in msg and "one document per line" in msg, msg
    assert "held out" in msg


# --------------------------------------------------------------------------- counts and dedup

def test_everything_filtered_names_file_and_rule_counts(tmp_path):
    data = _jsonl(tmp_path / "d.jsonl", [_conv(f"question {i}", "x") for i in range(12)])
    report: dict = {}
    with pytest.raises(DataError) as err:
        prepare(_files_cfg(data, "data.quality.min_response_chars=5"), report=report)
    msg = str(err.value)
    assert str(data) in msg and "too_short=11" in msg and "12 loaded" in msg and "1 held out" in msg, msg
    assert report["quality.main"]["removed"]["too_short"] == 11  # the counts survive the failure
    data = _jsonl(tmp_path / "long.jsonl", [_conv("q" * 400, f"answer {i}") for i in range(12)])
    with pytest.raises(DataError) as err:
        prepare(_files_cfg(data, "train.truncation=drop"))
    assert str(data) in str(err.value) and "dropped_too_long=11" in str(err.value), str(err.value)


def test_dedup_happens_before_the_validation_split(tmp_path):
    recs = [_conv("same question", "same answer")] * 10 + [_conv(f"q{i}", f"a{i}") for i in range(30)]
    data = _jsonl(tmp_path / "d.jsonl", recs)
    for seed in range(4):
        prepared = prepare(_files_cfg(data, f"train.seed={seed}", "data.val_fraction=0.2"))
        rep = prepared.report
        assert rep["dedup.main"] == {"n_in": 40, "duplicates": 9, "n_kept": 31}
        train_keys = {ex.ids.tobytes() for ex in prepared.train_examples}
        val_keys = {ex.ids.tobytes() for ex in prepared.val_examples}
        assert not train_keys & val_keys
        assert len(prepared.train_examples) + len(prepared.val_examples) == 31


def test_skips_and_drops_become_warnings(tmp_path):
    recs = [_conv(f"q{i}", f"answer {i}") for i in range(20)] + [{"messages": [{"role": "robot"}]}]
    data = _jsonl(tmp_path / "d.jsonl", recs)
    prepared = prepare(_files_cfg(data, "+data.datasets.main.on_bad_record=skip"))
    text = "\n".join(prepared.warnings)
    assert "skipped 1 of 21 records" in text and str(data) in text, text
    # validation conversations too long for the model: the response loss cannot be measured
    recs = [_conv("q" * 400, f"answer {i}") for i in range(20)]
    data = _jsonl(tmp_path / "long.jsonl", recs)
    prepared = prepare(_files_cfg(data, "data.val_fraction=0.3", "template.mask=all"))
    assert not prepared.val_examples
    assert any("response_loss" in w for w in prepared.warnings), prepared.warnings


def test_the_terminal_states_loaded_skipped_and_kept(tmp_path, cache_dir, caplog):
    recs = [_conv(f"q{i}", f"answer {i}") for i in range(20)] + [{"messages": "bad"}]
    data = _jsonl(tmp_path / "d.jsonl", recs)
    caplog.set_level("INFO", logger="sft_sweep")
    _, s = run_job(tmp_path, cache_dir, ["data=files", f"data.datasets.main.path={data}",
                                         "+data.datasets.main.on_bad_record=skip", "train.max_steps=1"])
    assert s["status"] == "completed", s.get("error")
    (line,) = [r.getMessage() for r in caplog.records if "] data: " in r.getMessage()]
    assert "main: 20 loaded, 1 skipped" in line and line.endswith("kept 19 training examples, 1 held out"), line


def test_job_summary_lists_warnings_and_failed_data_counts(tmp_path, cache_dir):
    recs = [_conv(f"q{i}", f"answer {i}") for i in range(20)] + [{"messages": "bad"}]
    data = _jsonl(tmp_path / "d.jsonl", recs)
    _, s = run_job(tmp_path, cache_dir, ["data=files", f"data.datasets.main.path={data}",
                                         "+data.datasets.main.on_bad_record=skip", "train.max_steps=2"])
    assert s["status"] == "completed", s.get("error")
    assert any("skipped 1 of 21" in w for w in s["warnings"]), s["warnings"]
    data = _jsonl(tmp_path / "e.jsonl", [_conv(f"question {i}", "x") for i in range(12)])
    _, s = run_job(tmp_path, cache_dir, ["data=files", f"data.datasets.main.path={data}",
                                         "data.quality.min_response_chars=5"], name="filtered")
    assert s["status"] == "failed" and "too_short=11" in s["error"]
    assert s["data"]["quality.main"]["removed"]["too_short"] == 11
    assert s["warnings"] == []


# --------------------------------------------------------------------------- finite settings

FINITE = ["optim.lr", "optim.beta1", "optim.beta2", "optim.eps", "optim.grad_clip", "optim.weight_decay",
          "optim.min_lr_ratio", "mix.replay_ratio", "data.val_fraction", "pretrain.lr", "model.init_std",
          "data.quality.min_response_to_prompt_ratio", "train.diverge_factor"]


@pytest.mark.parametrize("value", ["inf", "-inf", "nan"])
@pytest.mark.parametrize("key", FINITE)
def test_float_settings_must_be_finite(key, value):
    cfg = to_object(compose_cfg([*SMOKE, f"{key}={value}"]))
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert key in str(err.value) and "finite" in str(err.value), str(err.value)


def test_eps_must_be_positive():
    with pytest.raises(ConfigError, match="optim.eps"):
        validate(to_object(compose_cfg([*SMOKE, "optim.eps=0"])))


# --------------------------------------------------------------------------- divergence

def test_divergence_bound_is_relative_to_a_uniform_guess():
    from sft_sweep.train.sft import divergence_bound

    from sft_sweep.tokenizer import ByteTokenizer

    cfg = to_object(compose_cfg(SMOKE))
    vocab = ByteTokenizer().vocab_size
    assert divergence_bound(cfg) == pytest.approx(cfg.train.diverge_factor * math.log(vocab))
    assert divergence_bound(to_object(compose_cfg([*SMOKE, "train.diverge_factor=0"]))) is None


@pytest.mark.parametrize("overrides,metric", [
    (["optim.lr=1e3", "optim.grad_clip=0"], "loss"),
    (["optim.lr=1e3", "optim.grad_clip=0", "train.diverge_factor=0"], None),
])
def test_diverged_job_fails_with_reason_step_and_loss(tmp_path, cache_dir, overrides, metric):
    _, s = run_job(tmp_path, cache_dir, overrides, name="div")
    if metric is None:  # the bound disabled: only NaN / inf stops the job, or it completes
        assert s["status"] == "completed" or "non-finite" in s["error"], s.get("error")
        return
    assert s["status"] == "failed" and s["reason"] == "diverged", s.get("error")
    d = s["diverged"]
    assert d["metric"] == metric and d["step"] >= 1 and (d["value"] is None or d["value"] > d["bound"])
    assert "diverged" in s["error"] and f"step {d['step']}" in s["error"]


def test_non_finite_loss_is_a_divergence(tmp_path, cache_dir, monkeypatch):
    from sft_sweep.nn import GPT

    real = GPT.loss_and_grads

    def nan_loss(self, *a, **k):
        loss, grads = real(self, *a, **k)
        return float("nan"), grads

    monkeypatch.setattr(GPT, "loss_and_grads", nan_loss)
    _, s = run_job(tmp_path, cache_dir, ["optim.lr=1e-3"], name="nan")
    assert s["status"] == "failed" and s["reason"] == "diverged" and s["diverged"]["step"] == 1
    assert "non-finite" in s["error"]


def test_eval_loss_above_the_bound_is_a_divergence(tmp_path, cache_dir, monkeypatch):
    from sft_sweep.train import evaluate

    real = evaluate.Evaluator.evaluate
    calls = {"n": 0}

    def blown_up(self, model, **kw):
        m, g = real(self, model, **kw)
        calls["n"] += 1
        if calls["n"] > 1:  # the first is the base model (an eval setting of its own: not cached)
            m = {**m, "raw_loss": 1e6}
        return m, g

    monkeypatch.setattr(evaluate.Evaluator, "evaluate", blown_up)
    _, s = run_job(tmp_path, cache_dir, ["optim.lr=1e-3", "eval.max_new_tokens=15"], name="evaldiv")
    assert s["status"] == "failed" and s["reason"] == "diverged", s.get("error")
    assert s["diverged"]["metric"] == "raw_loss" and s["diverged"]["step"] == 6


# --------------------------------------------------------------------------- corrupt caches

def _base_dir(cache):
    (d,) = [p for p in os.scandir(cache) if p.is_dir() and p.name.startswith("base-")]
    return d.path


def _corrupt_random_bytes(path):
    with open(path, "wb") as f:
        f.write(np.random.default_rng(0).bytes(4096))


def _nan_weights(path):
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    name = next(k for k in arrays if k.startswith("param/"))
    arrays[name] = arrays[name].copy()
    arrays[name].flat[0] = np.nan
    np.savez(path, **arrays)


def _rewrite_member(path, member, data):
    """``path`` (an .npz) with ``member`` replaced by (or added as) ``data``, deflated."""
    with zipfile.ZipFile(path) as z:
        items = {i.filename: z.read(i) for i in z.infolist()}
    items[member] = data
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, content in items.items():
            z.writestr(name, content)


def _npy_header(shape):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _huge_header(path):
    """A member whose header claims 10^12 elements (3.6 TiB) and holds 64 bytes."""
    _rewrite_member(path, "param/wte.npy", _npy_header((10**6, 10**6)) + bytes(64))


def _zip_bomb(path):
    """A member that unpacks to 64 MiB of zeros from a few dozen KiB: more than the model can need."""
    n = 16 << 20
    _rewrite_member(path, "param/wte.npy", _npy_header((n,)) + bytes(4 * n))


def _bomb_beside(path):
    """The weights intact, and one more member of 64 MiB zeros."""
    n = 16 << 20
    _rewrite_member(path, "opt/junk.npy", _npy_header((n,)) + bytes(4 * n))


# (damage, words in the refusal)
CRAFTED = [(_huge_header, ["param/wte", "claims", "1000000000000 elements"]),
           (_zip_bomb, ["unpacks to", "more than"]),
           (_bomb_beside, ["unpacks to", "more than"])]


@pytest.mark.parametrize("damage,words", CRAFTED, ids=[c[0].__name__.strip("_") for c in CRAFTED])
def test_crafted_checkpoints_are_refused_before_they_are_read(tmp_path, damage, words):
    import tracemalloc

    from sft_sweep.nn import GPT, GPTConfig, load_checkpoint, read_checkpoint_config, save_checkpoint

    model = GPT(GPTConfig(n_layer=1, n_head=1, n_embd=8, n_mlp=16, block_size=8, vocab_size=20), seed=0)
    p = tmp_path / "m.npz"
    save_checkpoint(p, model)
    damage(p)
    tracemalloc.start()
    try:
        for load in (lambda: load_checkpoint(p, model), lambda: read_checkpoint_config(p)):
            with pytest.raises(CheckpointError) as err:
                load()
            assert str(err.value).startswith(f"checkpoint {p}") and all(w in str(err.value) for w in words), err.value
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, f"{peak} bytes allocated to refuse it"


@pytest.mark.parametrize("damage", [_huge_header, _zip_bomb, _nan_weights], ids=["huge_header", "zip_bomb", "nan"])
def test_a_completed_job_whose_model_cannot_be_loaded_runs_again(tmp_path, cache_dir, damage):
    job, first = run_job(tmp_path, cache_dir, ["optim.lr=2e-3"])
    assert first["status"] == "completed", first.get("error")
    damage(job.dir / "model.npz")
    _, again = run_job(tmp_path, cache_dir, ["optim.lr=2e-3"])
    assert again.get("skipped") is None and again["status"] == "completed", again.get("error")
    assert again["final"] == first["final"]


def test_checkpoint_messages_for_corrupt_and_non_finite_files(tmp_path):
    from sft_sweep.nn import GPT, GPTConfig, load_checkpoint, save_checkpoint

    model = GPT(GPTConfig(n_layer=1, n_head=1, n_embd=8, n_mlp=16, block_size=8, vocab_size=20), seed=0)
    p = tmp_path / "m.npz"
    _corrupt_random_bytes(p)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(p, model)
    assert "not a readable .npz" in str(err.value) and "allow_pickle" not in str(err.value)
    save_checkpoint(p, model)
    _nan_weights(p)
    before = {k: v.copy() for k, v in model.params.items()}
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        load_checkpoint(p, model)
    assert all(np.array_equal(before[k], model.params[k]) for k in before)  # nothing loaded


@pytest.mark.slow  # pre-trains a base twice per case (~5 s each)
@pytest.mark.parametrize("damage", [_corrupt_random_bytes, _nan_weights, _huge_header, _zip_bomb])
def test_corrupt_cached_base_is_moved_aside_and_rebuilt(tmp_path, damage):
    cache = tmp_path / "cache"
    quick = ["optim.lr=1e-3", "pretrain.seed=11", "pretrain.steps=20", "train.max_steps=2"]
    _, first = run_job(tmp_path, str(cache), quick, name="a")
    assert first["status"] == "completed"
    base = _base_dir(cache)
    damage(os.path.join(base, "model.npz"))
    _, again = run_job(tmp_path, str(cache), quick, name="b")
    assert again["status"] == "completed", again.get("error")
    assert again["base_model"]["built_here"] is True
    assert again["final"] == first["final"]  # the rebuilt base is the same model
    aside = [p for p in os.listdir(cache) if ".corrupt-" in p]
    assert len(aside) == 1
    assert any("corrupt" in w and aside[0] in w for w in again["warnings"]), again["warnings"]


def test_checkpoint_ignored_at_resume_is_a_warning(tmp_path, cache_dir):
    d = tmp_path / "job"
    d.mkdir()
    (d / "checkpoint.npz").write_bytes(b"garbage")
    _, s = run_job(tmp_path, cache_dir, ["optim.lr=1e-3"])
    assert s["status"] == "completed"
    assert any("checkpoint" in w and "ignored" in w for w in s["warnings"]), s["warnings"]


# --------------------------------------------------------------------------- multirun exit code

@pytest.mark.slow  # a multirun in a subprocess per case (~4 s each)
@pytest.mark.parametrize("lrs,code", [("1e-3,1e3", 1), ("1e-3", 0)])
def test_multirun_exit_code_counts_failed_jobs(tmp_path, cache_dir, lrs, code):
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    r = subprocess.run([sys.executable, "-m", "sft_sweep.cli", "-m", *SMOKE, f"pretrain.cache_dir={cache_dir}",
                        "optim.grad_clip=0", "train.max_steps=3", f"optim.lr={lrs}",
                        f"hydra.sweep.dir={tmp_path}/sweep"],
                       cwd=REPO, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == code, r.stderr[-2000:]
    assert (tmp_path / "sweep" / "report.md").exists()  # the report is written first
    if code:
        assert "1 of 2 jobs failed" in r.stderr and "Traceback" not in r.stderr


# --------------------------------------------------------------------------- command line

def _cli_cases(tmp_path):
    pref = tmp_path / "pref.json"
    pref.write_text(json.dumps([{"conversations": [{"from": "human", "value": "q"}],
                                 "chosen": {"from": "gpt", "value": "a"},
                                 "rejected": {"from": "gpt", "value": "b"}}]))
    one = tmp_path / "one.txt"
    one.write_text("A single article on a single line.\n")
    data = _jsonl(tmp_path / "d.jsonl", [_conv(f"q{i}", f"answer {i}") for i in range(20)])
    return {
        "lr_inf": (["optim.lr=inf"], "optim.lr=inf: must be a finite number"),
        "preference_file": (["data=files", f"data.datasets.main.path={pref}"], "not SFT data"),
        "one_document": (["data=files", f"data.datasets.main.path={data}", f"data.pretrain_text={one}"],
                         "found 1 document"),
    }


@pytest.mark.parametrize("case", ["lr_inf", "preference_file", "one_document"])
def test_command_line_refusals_are_one_clear_message(tmp_path, case):
    overrides, needle = _cli_cases(tmp_path)[case]
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    r = subprocess.run([sys.executable, "-m", "sft_sweep.cli", *SMOKE, *overrides,
                        f"pretrain.cache_dir={tmp_path}/cache", f"hydra.run.dir={tmp_path}/run"],
                       cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 1 and needle in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert not (tmp_path / "cache").exists()  # refused before any pre-training


# --------------------------------------------------------------------------- one line for the machine's state and bad configs

def _sh(*cmd):
    return subprocess.run(list(cmd), capture_output=True, text=True)


@pytest.fixture
def mounts(tmp_path):
    """``ro``: a read-only file system; ``full``: a 64 KiB one filled to the last byte. Needs root
    (mount); the mounts are removed afterwards."""
    made = []
    ro, full = tmp_path / "ro", tmp_path / "full"
    for d in (ro, full):
        d.mkdir()
    if _sh("mount", "-t", "tmpfs", "-o", "size=64k,ro", "tmpfs", str(ro)).returncode:
        pytest.skip("mounting a tmpfs needs root (read-only and full file systems are simulated with one)")
    made.append(ro)
    _sh("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(full))
    made.append(full)
    try:
        with open(full / "filler", "wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
    except OSError:  # full: the point
        pass
    def read_only_view(src):
        """``src`` seen through a read-only bind mount (its path is returned)."""
        view = tmp_path / f"ro-{src.name}"
        view.mkdir()
        _sh("mount", "--bind", str(src), str(view))
        made.append(view)
        _sh("mount", "-o", "remount,bind,ro", str(view))
        return view

    yield {"ro": ro, "full": full, "read_only_view": read_only_view}
    for d in reversed(made):
        _sh("umount", str(d))


def _sft_sweep(args, cwd, timeout=300):
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.run([sys.executable, "-m", "sft_sweep.cli", *args], cwd=cwd, capture_output=True,
                          text=True, env=env, timeout=timeout)


def _refusal_cases(tmp_path, mounts):
    mounts = {"ro": tmp_path / "ro", "full": tmp_path / "full", **mounts}
    big = _jsonl(tmp_path / "big.jsonl", [_conv(f"question {i}", f"answer {i}") for i in range(3000)])
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    run, sweep = f"hydra.run.dir={tmp_path}/run", f"hydra.sweep.dir={tmp_path}/sweep"
    files = "data=files"
    return {
        # case: (arguments, words the one line holds, directory that must not exist afterwards)
        "read_only_run_dir": ([f"hydra.run.dir={mounts['ro']}/run"], ["cannot write", "read-only", "errno 30"], None),
        "read_only_sweep_dir": (["-m", f"hydra.sweep.dir={mounts['ro']}/sweep"],
                                ["cannot write", "read-only", "errno 30"], None),
        "full_disk_run": ([f"hydra.run.dir={mounts['full']}/run"],
                          [f"cannot write {mounts['full']}/run/.hydra/", "no space left", "errno 28"], None),
        "full_disk_sweep": (["-m", f"hydra.sweep.dir={mounts['full']}/sweep"],
                            [f"cannot write {mounts['full']}/sweep/multirun.yaml", "no space left"], None),
        "unset_env_run": ([run, "optim.lr=${oc.env:SFT_SWEEP_NOT_SET_IN_TESTS}"],
                          ["optim.lr=${oc.env:SFT_SWEEP_NOT_SET_IN_TESTS}: cannot be resolved", "not found"], "run"),
        "self_reference_run": ([run, "train.epochs=${train.epochs}"],
                               ["train.epochs=${train.epochs}: cannot be resolved", "Recursive interpolation"], "run"),
        "unset_env_sweep": (["-m", sweep, "optim.lr=1e-3,${oc.env:SFT_SWEEP_NOT_SET_IN_TESTS}"],
                            ["optim.lr=${oc.env:SFT_SWEEP_NOT_SET_IN_TESTS}: cannot be resolved", "1 of 2 jobs",
                             "no job was run"], "sweep"),
        "self_reference_sweep": (["-m", sweep, "train.epochs=${train.epochs}"],
                                 ["train.epochs=${train.epochs}: cannot be resolved", "all 2 jobs"], "sweep"),
        "zero_range_step": (["-m", sweep, "optim.lr=range(0,1,0)"],
                            ["optim.lr=range(0,1,0): range() arg 3 must not be zero"], "sweep"),
        "negative_seed_run": ([run, "train.seed=-1"], ["train.seed=-1: must be in [0, 2**32)"], "run"),
        "negative_seed_sweep": (["-m", sweep, "train.seed=-1,0"],
                                ["train.seed=-1: must be in [0, 2**32)", "2 of 4 jobs"], "sweep"),
        "dev_zero_data": ([run, files, "data.datasets.main.path=/dev/zero"],
                          ["file /dev/zero: is a character device", "only regular files"], "run"),
        "fifo_data": ([run, files, f"data.datasets.main.path={fifo}"],
                      [f"file {fifo}: is a FIFO (named pipe)", "only regular files"], "run"),
        "fifo_data_sweep": (["-m", sweep, files, f"data.datasets.main.path={fifo}"],
                            [f"file {fifo}: is a FIFO (named pipe)", "all 2 jobs"], "sweep"),
        "file_above_limit": ([run, files, f"data.datasets.main.path={big}", "data.max_file_mb=0.05"],
                             [f"file {big}: is 0.", "above the limit of 0.05 MB", "data.max_file_mb"], "run"),
    }


REFUSALS = ["read_only_run_dir", "read_only_sweep_dir", "full_disk_run", "full_disk_sweep", "unset_env_run",
            "self_reference_run", "unset_env_sweep", "self_reference_sweep", "zero_range_step",
            "negative_seed_run", "negative_seed_sweep", "dev_zero_data", "fifo_data", "fifo_data_sweep",
            "file_above_limit"]


@pytest.mark.parametrize("case", REFUSALS)
def test_machine_state_and_bad_configs_end_in_one_line(tmp_path, request, case):
    mounts = request.getfixturevalue("mounts") if case.startswith(("read_only", "full_disk")) else {}
    args, words, absent = _refusal_cases(tmp_path, mounts)[case]
    flags = [a for a in args if a == "-m"]  # Hydra takes its flags before the overrides
    r = _sft_sweep([*flags, *SMOKE, f"pretrain.cache_dir={tmp_path}/cache", *[a for a in args if a != "-m"]],
                   cwd=REPO, timeout=120)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and "Traceback" not in r.stderr and "HYDRA_FULL_ERROR" not in r.stderr, r.stderr[-3000:]
    # one line; a refused value is listed under "invalid configuration:" (one line per value)
    assert len(lines) == 1 or (len(lines) == 2 and lines[0] == "sft-sweep: invalid configuration:"), r.stderr
    assert lines[0].startswith("sft-sweep: ") and all(w in r.stderr for w in words), r.stderr
    if absent:
        assert not (tmp_path / absent).exists(), "refused before work, yet a directory was made"
    assert not (tmp_path / "cache").exists()


def test_deeply_nested_data_is_a_user_error_naming_the_file(tmp_path):
    nested = tmp_path / "nested.json"
    nested.write_text("[" * 100_000 + "]" * 100_000)
    r = _sft_sweep([*SMOKE, f"pretrain.cache_dir={tmp_path}/cache", f"hydra.run.dir={tmp_path}/run",
                    "data=files", f"data.datasets.main.path={nested}"], cwd=REPO, timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert f"DataError: file {nested}: arrays and objects nested too deeply" in r.stderr.splitlines()[0], r.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["user_error"] is True


# --------------------------------------------------------------------------- eval, chat and inspect on odd input

def _fake_job(root, shape):
    """A finished job directory of the smoke config whose model.npz has ``shape`` (GPTConfig fields)."""
    import yaml
    from omegaconf import OmegaConf

    from sft_sweep.nn import GPT, GPTConfig, save_checkpoint
    from sft_sweep.tokenizer import ByteTokenizer

    job = root / "job"
    (job / ".hydra").mkdir(parents=True)
    cfg = compose_cfg(SMOKE)
    config = OmegaConf.to_container(cfg, resolve=True)
    config.pop("hydra", None)
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(SMOKE))
    (job / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"cwd": str(REPO)}}}))
    (job / "summary.json").write_text(json.dumps({"status": "completed"}))
    save_checkpoint(job / "model.npz", GPT(GPTConfig(**shape, vocab_size=ByteTokenizer().vocab_size), seed=0))
    return job


TINY = {"n_layer": 2, "n_head": 2, "n_embd": 64, "n_mlp": 256, "block_size": 128}  # conf/model/tiny.yaml
OTHER = {"n_layer": 1, "n_head": 2, "n_embd": 32, "n_mlp": 64, "block_size": 64}


def _tool_cases(tmp_path, request):
    """case -> (module, arguments, exit code, words in the output, words never in it)."""
    from tests.daily.cli_support import run_cli  # noqa: F401 (the runner used below)

    def job(shape, name):
        return _fake_job(tmp_path / name, shape)

    def mounts():
        return request.getfixturevalue("mounts")

    eq_dir = tmp_path / "a=b"
    eq_dir.mkdir()
    data = _jsonl(eq_dir / "d=1.jsonl", [{**_conv(f"q{i}", f"answer {i}"), "id": i} for i in range(20)])
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    nested = tmp_path / "nested.jsonl"
    nested.write_text(json.dumps(_conv("q", "a")) + "\n" + "[" * 100_000 + "]" * 100_000 + "\n")
    dup = tmp_path / "dup.jsonl"
    dup.write_text('{"messages": [{"role": "user", "content": "q", "content": "r"}, '
                   '{"role": "assistant", "content": "a"}]}\n' + json.dumps(_conv("x", "b")) + "\n")
    refused = ["Traceback"]
    ev, chat, insp = "sft_sweep.eval_cli", "sft_sweep.chat", "sft_sweep.inspect_data"
    return {
        "eval_other_architecture": lambda: (ev, [str(job(OTHER, "o"))], 2, [
            "model.npz is a model of another architecture than its job's config: n_layer 1 (its job's config: 2)",
            "block_size 64 (its job's config: 128)", "not the model this job trained"], refused),
        "eval_smaller_block": lambda: (ev, [str(job({**TINY, "block_size": 64}, "b"))], 2, [
            "another architecture", "block_size 64 (its job's config: 128)"], refused + ["n_layer"]),
        "eval_out_is_a_directory": lambda: (ev, [str(job(TINY, "d")), "eval.max_items=2", "--out", str(tmp_path)], 2,
                                            [f"cannot write {tmp_path}: it is a directory"], refused),
        "eval_out_read_only": lambda: (ev, [str(job(TINY, "r")), "eval.max_items=2", "--out",
                                            f"{mounts()['ro']}/m.json"], 2, ["read-only (errno 30)"], refused),
        "eval_read_only_job": lambda: (ev, [str(mounts()["read_only_view"](job(TINY, "j"))), "eval.max_items=2"], 2,
                                       ["/eval/", "read-only (errno 30); give --out FILE to write elsewhere"], refused),
        "chat_other_architecture": lambda: (chat, [str(job(OTHER, "c")), "--only", "tuned", "--prompt", "hi"], 2,
                                            ["another architecture than its job's config"], refused + ["tuned:"]),
        "inspect_path_with_equals": lambda: (insp, [str(data), "-n", "1"], 0,
                                             ["main: loaded 20 (messages)", "ignored: id (20 records)"],
                                             refused + ["Error parsing override"]),
        "inspect_directory": lambda: (insp, [str(eq_dir)], 2, [f"file {eq_dir}: is a directory, not a data file"],
                                      refused + ["no such data file"]),
        "inspect_fifo": lambda: (insp, [str(fifo)], 2, [f"file {fifo}: is a FIFO (named pipe)"],
                                 refused + ["no such data file"]),
        "inspect_nested_json": lambda: (insp, [str(nested)], 2, [
            f"file {nested}, record 1: arrays and objects nested more than 100 levels deep on line 2"], refused),
        "inspect_duplicate_keys": lambda: (insp, [str(dup), "-n", "0"], 0, [
            f"main: warning: file {dup}: duplicate keys in 1 record(s), the last value of each kept: "
            "record 0 (line 1): 'content'"], refused),
        "inspect_html_read_only": lambda: (insp, ["--html", f"{mounts()['ro']}/page.html"], 2,
                                           [f"cannot write {mounts()['ro']}/page.html: the file system is read-only"],
                                           refused),
    }


TOOL_CASES = ["eval_other_architecture", "eval_smaller_block", "eval_out_is_a_directory", "eval_out_read_only",
              "eval_read_only_job", "chat_other_architecture", "inspect_path_with_equals", "inspect_directory",
              "inspect_fifo", "inspect_html_read_only", "inspect_nested_json",
              "inspect_duplicate_keys"]


@pytest.mark.parametrize("case", TOOL_CASES)
def test_eval_chat_and_inspect_mistakes_end_in_one_line(tmp_path, request, case):
    from tests.daily.cli_support import run_cli

    module, args, code, words, never = _tool_cases(tmp_path, request)[case]()
    r = run_cli(args, cwd=tmp_path, module=module, timeout=240)
    out = r.stdout + r.stderr
    assert r.returncode == code, out[-3000:]
    assert all(w in out for w in words) and not any(w in out for w in never), out[-3000:]
    if code:
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_ignored_fields_reach_the_jobs_warnings(tmp_path):
    recs = [{**_conv(f"q{i}", f"answer {i}"), "id": i, "source": "web"} for i in range(20)]
    data = _jsonl(tmp_path / "d.jsonl", recs)
    prepared = prepare(_files_cfg(data))
    (warning,) = [w for w in prepared.warnings if "ignored" in w]
    assert warning == (f"dataset 'main': file {data}: fields not trained on, ignored: 'id' (20 of 20 records), "
                       "'source' (20 of 20 records)")
    assert prepared.report["load.main"]["ignored_fields"] == {"id": 20, "source": 20}


def test_records_refused_for_their_fields_are_skipped_and_counted_in_a_job(tmp_path):
    recs = [_conv(f"q{i}", f"answer {i}") for i in range(20)] + [{**_conv("q", "a"), "reward": -1.0}]
    data = _jsonl(tmp_path / "d.jsonl", recs)
    with pytest.raises(DataError, match=r"record 20, field 'reward': is a reward / score"):
        prepare(_files_cfg(data))
    prepared = prepare(_files_cfg(data, "+data.datasets.main.on_bad_record=skip"))
    assert prepared.report["load.main"]["skipped_reasons"] == {"reward or score": 1}
    assert any("skipped 1 of 21 records" in w for w in prepared.warnings), prepared.warnings


# --------------------------------------------------------------------------- names, plans and the base's lock

@pytest.mark.parametrize("flags", [[], ["-m"]], ids=["run", "sweep"])
def test_name_is_a_name_not_a_path(tmp_path, flags):
    work = tmp_path / "work"
    work.mkdir()
    r = _sft_sweep([*flags, *SMOKE, "name=../../../escaped", f"pretrain.cache_dir={tmp_path}/cache"], cwd=work,
                   timeout=120)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert lines[-1].strip().startswith("name='../../../escaped': must be a name, not a path (no '/'; "
                                        "not '.' or '..')"), r.stderr
    assert sorted(os.listdir(tmp_path)) == ["work"] and os.listdir(work) == []


def _base_entries(cache):
    return sorted(p for p in os.listdir(cache) if p.startswith("base-")) if os.path.isdir(cache) else []


def test_pretraining_text_shorter_than_a_window_is_a_config_error_and_leaves_no_lock(tmp_path):
    cache = tmp_path / "cache"
    _, s = run_job(tmp_path, str(cache), ["model.block_size=100000"])
    assert s["status"] == "failed" and s["user_error"] is True, s.get("error")
    assert s["error"].startswith("ConfigError: model.block_size=100000 needs pre-training text of more than "
                                 "100001 tokens; the pre-training text has "), s["error"]
    assert _base_entries(cache) == []


def test_failed_pretraining_leaves_no_lock(tmp_path, monkeypatch):
    import sft_sweep.train.pretrain as pretrain

    def fails(*args, **kw):
        raise MemoryError("no room for the pre-training batch")

    monkeypatch.setattr(pretrain, "pretrain", fails)
    cache = tmp_path / "cache"
    _, s = run_job(tmp_path, str(cache), ["pretrain.seed=12"])
    assert s["status"] == "failed" and "no room" in s["error"]
    assert _base_entries(cache) == []


# (overrides, exit code, words in stderr); a plan of a billion epochs is refused before pre-training
PLANS = [
    (["train.epochs=1000000000", "train.max_steps=0"], 1,
     ["train.epochs=1000000000 plans", "steps", "more than 1000000", "train.max_steps"]),
    (["train.epochs=1000000000", "train.max_steps=4"], 0, []),
]


@pytest.mark.parametrize("overrides,code,words", PLANS, ids=["no_cap", "max_steps"])
def test_an_implausibly_long_plan_is_refused_up_front(tmp_path, overrides, code, words):
    r = _sft_sweep([*SMOKE, f"pretrain.cache_dir={tmp_path}/cache", f"hydra.run.dir={tmp_path}/run",
                    "pretrain.seed=13", *overrides], cwd=REPO, timeout=120)
    assert r.returncode == code and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert all(w in r.stderr for w in words), r.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    if code:
        assert summary["user_error"] is True and _base_entries(tmp_path / "cache") == []
    else:
        assert summary["status"] == "completed" and summary["steps"] == 4


def _hold_lock(path, fail_after_s, events):
    from pathlib import Path

    from sft_sweep.train.cache import file_lock

    try:
        with file_lock(Path(path)):
            events.put("in")
            time.sleep(fail_after_s)
            if fail_after_s < 1:
                raise RuntimeError("the build failed")
            events.put("others locked out" if _locked_elsewhere(path) else "others could lock")
    except RuntimeError:
        pass


def _locked_elsewhere(path):
    r = subprocess.run([sys.executable, "-c", "import fcntl, sys; f = open(sys.argv[1], 'a+'); "
                        "fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)", str(path)], capture_output=True)
    return r.returncode != 0


def test_a_lock_removed_by_a_failed_holder_still_excludes(tmp_path):
    """The holder fails and removes the lock file while another process waits on it: the waiter then
    holds a lock on the file now at the path, so a third process is kept out."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    events = ctx.Queue()
    path = tmp_path / "base-x.lock"
    a = ctx.Process(target=_hold_lock, args=(str(path), 0.5, events))
    a.start()
    assert events.get(timeout=30) == "in"
    b = ctx.Process(target=_hold_lock, args=(str(path), 1.5, events))
    b.start()
    assert events.get(timeout=30) == "in"
    assert events.get(timeout=30) == "others locked out"
    a.join(30)
    b.join(30)
    assert path.exists()  # the waiter's build succeeded: its lock file stays beside the base


def test_a_read_only_shared_cache_is_used_read_only(tmp_path, mounts):
    """A colleague's cache, read-only, holds the base but not its evaluation for these eval settings:
    the job evaluates the base itself, says once that it could not cache it, and completes."""
    cache = tmp_path / "shared"
    quick = ["pretrain.seed=14", "pretrain.steps=20", "train.max_steps=2"]
    _, first = run_job(tmp_path, str(cache), quick, name="colleague")
    assert first["status"] == "completed", first.get("error")
    view = mounts["read_only_view"](cache)
    before = sorted(str(p.relative_to(cache)) for p in cache.rglob("*"))
    _, s = run_job(tmp_path, str(view), [*quick, "eval.max_items=4"], name="mine")
    assert s["status"] == "completed", s.get("error")
    (warning,) = [w for w in s["warnings"] if "not cached" in w]
    assert str(view) in warning and "read-only" in warning, warning
    assert s["base_model"]["built_here"] is False
    assert sorted(str(p.relative_to(cache)) for p in cache.rglob("*")) == before


def test_a_read_only_cache_without_the_base_is_one_clear_error(tmp_path, mounts):
    _, s = run_job(tmp_path, str(mounts["ro"]), ["pretrain.seed=15", "pretrain.steps=20"])
    assert s["status"] == "failed" and s["user_error"] is True, s.get("error")
    assert s["error"].startswith(f"ConfigError: the base model {s['error'].split()[4]} is not in "
                                 f"pretrain.cache_dir={mounts['ro']} and cannot be built there: cannot write "
                                 f"{mounts['ro']}/base-"), s["error"]
    assert "read-only" in s["error"] and "writable" in s["error"]
