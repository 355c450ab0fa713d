"""sft-sweep-eval reproduces a job's metrics; pretrain.init_from starts SFT from a given checkpoint."""

import json

import pytest

from sft_sweep.config import config_dict, config_hash, register_configs
from sft_sweep.eval_cli import main as eval_main
from sft_sweep.train.job import Job
from tests.conftest import REPO, compose_cfg

register_configs()
SMOKE = ["experiment=smoke", "train.threads=1"]



@pytest.fixture(scope="module")
def finished_job(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("evaljob")
    overrides = [*SMOKE, f"pretrain.cache_dir={tmp / 'cache'}", "optim.lr=3e-3"]
    job = Job(compose_cfg(overrides), tmp / "job", overrides=overrides, base_dir=str(REPO))
    summary = job.run()
    assert summary["status"] == "completed", summary.get("error")
    (job.dir / ".hydra").mkdir()
    (job.dir / ".hydra" / "overrides.yaml").write_text("\n".join(f"- {o}" for o in overrides) + "\n")
    return job.dir, summary


def test_eval_of_a_job_reproduces_its_final_metrics(finished_job, capsys):
    job_dir, summary = finished_job
    out = job_dir.parent / "again.json"
    eval_main([str(job_dir), "--with-base", "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["metrics"] == pytest.approx(summary["final"])
    assert result["base_metrics"] == pytest.approx(summary["base"])
    assert result["forgetting_pct"] == pytest.approx(summary["forgetting_pct"])
    assert "raw_loss" in capsys.readouterr().out


def test_eval_applies_the_overrides_given(finished_job):
    job_dir, summary = finished_job
    out = job_dir.parent / "fewer.json"
    eval_main([str(job_dir), "eval.max_items=3", "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["overrides"] == ["eval.max_items=3"]
    assert result["metrics"]["raw_loss"] == pytest.approx(summary["final"]["raw_loss"])  # windows unchanged
    assert result["metrics"]["answer_mc_acc"] * 3 == pytest.approx(round(result["metrics"]["answer_mc_acc"] * 3))


def test_eval_of_a_non_checkpoint_is_one_line(tmp_path, capsys):
    bad = tmp_path / "model.npz"
    bad.write_text("not a checkpoint")
    with pytest.raises(SystemExit) as e:
        eval_main([str(bad)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "not an sft-sweep checkpoint" in err


def test_init_from_starts_sft_from_the_given_weights(finished_job, tmp_path):
    job_dir, first = finished_job
    overrides = [*SMOKE, f"pretrain.cache_dir={tmp_path / 'cache'}", f"pretrain.init_from={job_dir / 'model.npz'}",
                 "train.max_steps=2", "pretrain.steps=100000"]  # pre-training would take hours: it must not run
    summary = Job(compose_cfg(overrides), tmp_path / "job2", base_dir=str(REPO)).run()
    assert summary["status"] == "completed", summary.get("error")
    assert summary["base"] == pytest.approx(first["final"])  # the base is the first job's tuned model
    assert summary["base_model"]["key"].startswith("init-")


def test_init_from_of_another_shape_names_both_shapes(finished_job, tmp_path):
    job_dir, _ = finished_job
    overrides = [*SMOKE, "model=mini", f"pretrain.cache_dir={tmp_path / 'cache'}",
                 f"pretrain.init_from={job_dir / 'model.npz'}"]
    summary = Job(compose_cfg(overrides), tmp_path / "job3", base_dir=str(REPO)).run()
    assert summary["status"] == "failed" and summary["user_error"] is True
    assert "n_layer=2" in summary["error"] and "n_layer=4" in summary["error"]


def test_new_options_keep_earlier_config_hashes():
    d = config_dict(compose_cfg(SMOKE))
    before = {k: v for k, v in d.items() if k != "logger"}
    before["pretrain"] = {k: v for k, v in d["pretrain"].items() if k != "init_from"}
    assert config_hash(before) == config_hash(d)
    d["pretrain"]["init_from"] = "/x/model.npz"
    assert config_hash(before) != config_hash(d)


def test_inspect_job_renders_a_finished_jobs_data_with_its_counts(finished_job):
    from omegaconf import OmegaConf

    from sft_sweep.inspect_data import inspect_job

    job_dir, summary = finished_job
    hydra_dir = job_dir / ".hydra"
    cfg = compose_cfg([*SMOKE, "optim.lr=3e-3"])
    OmegaConf.save(cfg, hydra_dir / "config.yaml")
    (hydra_dir / "hydra.yaml").write_text(f"hydra:\n  runtime:\n    cwd: {REPO}\n")
    found = inspect_job(job_dir, n_examples=1)
    assert len(found.examples) == 1 and found.examples[0].n_trained > 0
    for key, value in found.counts.items():
        if key in summary["data"]:
            assert summary["data"][key] == value, key


def _benchmark(name):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_eval_profile_times_every_part_of_a_jobs_evaluation(finished_job):
    job_dir, summary = finished_job
    r = _benchmark("eval_profile").profile(job_dir, repeat=1)
    final, periodic = r["final"], r["periodic"]
    parts = [label for _, _, label in _benchmark("eval_profile").PARTS]
    assert set(parts) <= set(final)                      # the smoke job measures every part
    assert 0.5 * final["total"] <= sum(final[p] for p in parts) <= final["total"]
    # a periodic evaluation leaves memorisation and base knowledge to the final one
    assert not {"memorisation answers", "base knowledge"} & set(periodic) and periodic["total"] < final["total"]
    assert r["job_timings"]["eval_s"] == summary["timings"]["eval_s"]


def test_step_profile_splits_a_step_into_its_passes():
    r = _benchmark("step_profile").profile("mini:128", steps=2, batch=2)
    ms = r["passes_ms"]
    assert r["batch"] == 2 and r["tokens_per_step"] == 256
    for part in ("matmuls and copies", "GELU", "LayerNorm", "attention (with its products)", "cross-entropy",
                 "optimizer"):
        assert ms[part] > 0, part
    assert sum(ms.values()) == pytest.approx(r["profiled_step_ms"], rel=0.3)
    assert 0 < r["outside_matmul_drivers"] < 1
