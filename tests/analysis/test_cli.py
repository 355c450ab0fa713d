"""Entry points: sft-sweep-report / python -m analysis, --status, and the Hydra callback."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from analysis.callback import ReportCallback, sweep_dir_of
from analysis.cli import main
from tests.conftest import plant_report_leftovers

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def small_sweep(tmp_path):
    from analysis_helpers import make_sweep

    return make_sweep(tmp_path / "small", lrs=(1e-4,), epochs=(1,), seeds=(0,))


def test_cli_writes_report(small_sweep, tmp_path, capsys, no_figures):
    out = tmp_path / "out"
    assert main([str(small_sweep), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"report: {out / 'report.html'}" in printed
    assert (out / "report.md").exists() and (out / "report_files" / "jobs.csv").exists()


@pytest.mark.parametrize("make", ["missing", "empty", "file"])
def test_cli_bad_input_one_line_and_nonzero(tmp_path, capsys, make):
    target = tmp_path / "x"
    if make == "empty":
        target.mkdir()
    elif make == "file":
        target.write_text("not a dir")
    assert main([str(target)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("sft-sweep-report: error: ") and err.count("\n") == 1
    assert "Traceback" not in err


def test_cli_usage_error_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2


def test_status_table(demo_sweep, capsys):
    assert main(["--status", str(demo_sweep)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:5] == ["job", "status", "optim.lr", "train.epochs", "train.seed"]
    rows = {ln.split()[0]: ln.split() for ln in lines[2:] if ln and not ln.startswith("12 jobs")}
    assert len(rows) == 12
    assert rows["0"][1] == "completed" and rows["0"][5] == "100"      # latest step
    assert rows["2"][5] == "200" and rows["2"][6] == "2.00/2"         # epoch of planned epochs
    assert rows["10"][1] == "failed" and "NonFiniteLossError" in " ".join(rows["10"])
    assert rows["11"][1] == "running" and rows["11"][5] == "100" and rows["11"][6] == "1.00/2"
    assert "12 jobs: 10 completed, 1 failed, 1 running" in out


def test_status_does_not_write(tmp_path, capsys):
    from analysis_helpers import make_sweep

    d = make_sweep(tmp_path / "s", lrs=(1e-4,), epochs=(1,), seeds=(0,))
    before = sorted(p.relative_to(d) for p in d.rglob("*"))
    assert main(["--status", str(d)]) == 0
    assert sorted(p.relative_to(d) for p in d.rglob("*")) == before


@pytest.mark.slow  # a report with every figure in a subprocess (~9 s)
def test_python_dash_m(demo_sweep):
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = subprocess.run([sys.executable, "-m", "analysis", "--status", str(demo_sweep)],
                       capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "12 jobs: 10 completed" in r.stdout


def test_callback_writes_report(tmp_path, capsys, no_figures):
    from analysis_helpers import make_sweep

    d = make_sweep(tmp_path / "s", lrs=(1e-4,), epochs=(1,), seeds=(0,))
    cfg = OmegaConf.create({"hydra": {"sweep": {"dir": "s"}, "runtime": {"cwd": str(tmp_path)}}})
    assert sweep_dir_of(cfg) == d
    ReportCallback().on_multirun_end(cfg)
    assert (d / "report.html").exists()
    assert "[sft-sweep-report] report written" in capsys.readouterr().out


def test_callback_swallows_errors(tmp_path, capsys):
    cfg = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "missing")}}})
    ReportCallback().on_multirun_end(cfg)  # must not raise
    err = capsys.readouterr().err
    assert "could not write the report" in err and "no such directory" in err
    ReportCallback(enabled=False).on_multirun_end(cfg)
    assert capsys.readouterr().err == ""


@pytest.mark.slow
def test_callback_in_a_real_hydra_multirun(tmp_path):
    """A minimal Hydra app with the callback registered as the project's conf does."""
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "config.yaml").write_text(textwrap.dedent("""\
        optim:
          lr: 0.001
        hydra:
          sweep:
            dir: sweeps/mini
            subdir: ${hydra.job.override_dirname}
          callbacks:
            report:
              _target_: analysis.callback.ReportCallback
        """))
    (tmp_path / "app.py").write_text(textwrap.dedent("""\
        import json, sys
        from pathlib import Path
        import hydra
        from hydra.core.hydra_config import HydraConfig
        sys.path.insert(0, sys.argv.pop(1))
        from analysis_helpers import simulate, summary_for, BASE_EVAL, BASE_CONFIG

        @hydra.main(version_base=None, config_path="conf", config_name="config")
        def main(cfg):
            out = Path(HydraConfig.get().runtime.output_dir)
            lr = float(cfg.optim.lr)
            rows, final = simulate(lr, 1, 0)
            (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\\n" for r in rows))
            config = {**BASE_CONFIG, "optim.lr": lr}
            s = summary_for(config, list(HydraConfig.get().overrides.task), BASE_EVAL, final, steps=100)
            (out / "summary.json").write_text(json.dumps(s))

        main()
        """))
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = subprocess.run([sys.executable, "app.py", str(Path(__file__).parent), "-m", "optim.lr=1e-4,1e-3"],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    sweep = tmp_path / "sweeps" / "mini"
    assert (sweep / "optim.lr=0.0001" / "summary.json").exists()
    assert (sweep / "report.html").exists() and (sweep / "report.md").exists()
    assert "report written" in r.stdout
    md = (sweep / "report.md").read_text()
    assert "learning rate \\(optim.lr\\)" in md or "learning rate (optim.lr)" in md


def test_cli_removes_what_a_killed_report_left(small_sweep, tmp_path, no_figures):
    out = tmp_path / "out"
    left, fresh = plant_report_leftovers(out)
    assert main([str(small_sweep), "--out", str(out)]) == 0
    assert not any(p.exists() for p in left) and fresh.exists()
