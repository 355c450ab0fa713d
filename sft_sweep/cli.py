"""Console entry point ``sft-sweep``: a thin Hydra app around ``sft_sweep.train.job.Job``.

``sft-sweep [overrides]`` runs one job; ``sft-sweep -m ...`` a sweep. A failed job writes
``summary.json`` with ``status: failed``; a single run then exits non-zero with a short message,
while in a multirun the other jobs go on (the sweep's report counts the failures). Ctrl-C, SIGTERM
and SIGHUP end a job with status ``interrupted`` (``stopsignals``); the same command run again
resumes it from its last checkpoint. A second process for a job directory in use is refused
(``joblock``).

What a job returns to the sweeper: ``eval.objective``'s value, or the list of ``eval.objectives``
values for a multi-objective Optuna search. In a multirun a job with no usable value (failed,
pruned, or a metric absent / NaN) returns None: the search sweeper records that trial as FAIL (or
PRUNED, which the job marked in the study) and the search goes on (``max_failure_rate``). Hydra's
basic sweeper ignores the value.

``train.threads=0`` ("all cores") is resolved here, where the launcher is known: the CPUs this
process may use, shared with the jobs its launcher runs beside it (``resources.threads_per_job``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import tempfile
from typing import Iterator

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .appconf import conf_dir, missing_plugin
from .config import register_configs
from .config_check import check_keys, refuse, resolution_error
from .errors import ConfigError, SftSweepError, file_system_problem
from .jobfiles import COMPLETED, SWEEP_OUTCOME_ENV, objective, read_sweep_outcome, record_refused_job
from .joblock import JobDirInUse
from .stopsignals import (Stopped, end_with_main_process, exit_worker, handle_stop_signals, in_launcher_worker,
                          mark_main_process, running_job)
from .train.job import Job
from .train.resources import threads_per_job

log = logging.getLogger("sft_sweep")

register_configs()

# Keys the command line sweeps over (``optim.lr=1e-4,1e-3``), handed to the jobs, which may run in
# other processes, so that they label themselves by the swept values only.
SWEPT_ENV = "SFT_SWEEP_SWEPT_KEYS"


def default_threads(hc) -> int:
    """Compute threads for ``train.threads=0`` under this Hydra run's launcher (see
    ``resources.threads_per_job``)."""
    launcher = OmegaConf.to_container(hc.launcher, resolve=False) if hc.mode == RunMode.MULTIRUN else None
    return threads_per_job(launcher if isinstance(launcher, dict) else None, multirun=hc.mode == RunMode.MULTIRUN)


def runs_beside_others(hc) -> bool:
    """Whether this job shares the terminal with other jobs running at the same time."""
    if hc.mode != RunMode.MULTIRUN:
        return False
    launcher = OmegaConf.to_container(hc.launcher, resolve=False)
    target = str(launcher.get("_target_", "")) if isinstance(launcher, dict) else ""
    if "BasicLauncher" in target or not target:
        return False
    return not ("joblib" in target and int(launcher.get("n_jobs") or 1) == 1)


def job_label(hc, cfg: DictConfig) -> str:
    """A short name for log lines and progress bars: the swept values only (``lr=3e-4 epochs=2``)."""
    if hc.mode != RunMode.MULTIRUN:
        return str(cfg.name)
    swept = {k for k in os.environ.get(SWEPT_ENV, "").split(",") if k}
    params = OmegaConf.select(hc.sweeper, "params", default=None)
    if params:
        swept |= {str(k) for k in params.keys()}
    pairs = []
    for ov in hc.overrides.task:
        key, _, value = ov.partition("=")
        key = key.lstrip("+~")
        if key in swept:
            pairs.append((key, value))
    if not pairs:
        return hc.job.override_dirname or f"job {hc.job.num}"
    tails = [k.rsplit(".", 1)[-1] for k, _ in pairs]
    short = len(set(tails)) == len(tails)  # the last part names the key unless two keys share it
    return " ".join(f"{(k.rsplit('.', 1)[-1] if short else k)}={v}" for k, v in pairs)


def sweeper_value(summary: dict, cfg: DictConfig) -> float | list[float] | None:
    """The job's return value for a sweeper (see the module docstring); None when there is none."""
    if summary.get("status") != COMPLETED:
        return None
    paths = list(cfg.eval.objectives)
    values = [objective(summary, p) for p in paths] if paths else [objective(summary, cfg.eval.objective)]
    if any(math.isnan(v) for v in values):
        return None
    return values if paths else values[0]


def task(cfg: DictConfig) -> float | list[float] | None:
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    try:  # a search sweeper's jobs were not composed before the sweep began (ConfigCheck)
        label = job_label(hc, cfg)
        if multirun:
            check_keys(cfg)
        OmegaConf.resolve(cfg.copy())
    except (ConfigError, OmegaConfBaseException) as err:
        why = err if isinstance(err, ConfigError) else resolution_error(cfg, err)
        if not multirun:
            refuse(why)
        log.error("[%s] refused: %s", hc.job.override_dirname or f"job {hc.job.num}", why)
        return None
    if cfg.train.threads == 0:
        cfg.train.threads = default_threads(hc)
    show_bars = sys.stderr.isatty() and not runs_beside_others(hc)
    job = Job(cfg, hc.runtime.output_dir, overrides=list(hc.overrides.task), base_dir=hc.runtime.cwd,
              job_name=label, progress=show_bars)
    handle_stop_signals()  # in a launcher's worker too
    end_with_main_process()
    try:
        with running_job():
            summary = run_job(job, show_bars)
    except Stopped as stop:
        if in_launcher_worker():
            exit_worker(stop)
        raise
    except JobDirInUse as err:
        if not multirun:
            print(f"sft-sweep: {err}", file=sys.stderr)
            sys.exit(1)
        log.error("[%s] %s", label, err)
        record_refused_job(os.path.join(hc.runtime.cwd, hc.sweep.dir), hc.runtime.output_dir, str(err))
        return None
    if summary["status"] != COMPLETED:
        if not multirun:
            print(f"sft-sweep: the job failed: {summary.get('error')}\n(details in {job.summary_path})",
                  file=sys.stderr)
            sys.exit(1)
        return None
    value = sweeper_value(summary, cfg)
    if not multirun:
        log.info("done: %s = %s (files in %s)", list(cfg.eval.objectives) or cfg.eval.objective, value,
                 hc.runtime.output_dir)
    return value


def run_job(job: Job, show_bars: bool) -> dict:
    if not show_bars:
        return job.run()
    from tqdm.contrib.logging import logging_redirect_tqdm

    with logging_redirect_tqdm():  # log lines printed above the bar, not glued onto it
        return job.run()


def _is_flag(arg: str, *names: str) -> bool:
    return arg in names or any(arg.startswith(n + "=") for n in names if n.startswith("--"))


def show_sweep_config(argv: list[str]) -> list[str]:
    """``-m ... --cfg job``: Hydra allows only one of them, so print the config the jobs share.

    The sweep's own overrides (``optim.lr=1e-4,1e-3``) are left out of the printed config and
    listed in a comment above it, together with the sweeper's ``params``.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    args = [a for a in argv if not _is_flag(a, "-m", "--multirun")]
    overrides = [a for a in args if not a.startswith("-") and "=" in a]
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception:  # Hydra reports a malformed override itself
        return args
    swept = [o.input_line for o in parsed if o.is_sweep_override()]
    if swept:
        print(f"# multirun: the jobs differ in {' '.join(swept)} (shown below without them)")
    return [a for a in args if a not in swept]


def run_app(app) -> None:
    """Run the Hydra app; a failure the user or the machine caused ends in one line and exit 1.

    Hydra reports any exception raised before the app's own handling (creating the run or sweep
    directory, writing ``.hydra/*.yaml`` or ``multirun.yaml``) as a traceback. So Hydra is asked
    to let exceptions through (HYDRA_FULL_ERROR), and those with a cause outside the code (a
    read-only or full file system, a refused config) are told in one line; the rest go back to
    Hydra's own report, or stay full tracebacks when the user set HYDRA_FULL_ERROR.
    """
    from hydra._internal.utils import run_and_report

    users_choice = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        app()
        return
    except Exception as err:
        failure = err
    finally:
        if users_choice is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = users_choice
    line = file_system_problem(failure)
    if line is None and isinstance(failure, SftSweepError):
        line = str(failure)
    if line is None and isinstance(failure, OmegaConfBaseException) and getattr(failure, "full_key", None):
        line = f"{failure.full_key}: {str(failure).splitlines()[0]}"
    if line is None:
        def rethrow():
            raise failure

        run_and_report(rethrow)  # Hydra's report (a compact line for its own errors), exit 1
        raise failure  # HYDRA_FULL_ERROR set by the user: run_and_report re-raised; kept for clarity
    print(f"sft-sweep: {line}", file=sys.stderr)
    sys.exit(1)


def main() -> None:
    argv = sys.argv[1:]
    try:
        config_path = str(conf_dir())
    except FileNotFoundError as err:
        print(f"sft-sweep: {err}", file=sys.stderr)
        sys.exit(1)
    problem = missing_plugin([a for a in argv if not a.startswith("-")])
    if problem:
        print(problem, file=sys.stderr)
        sys.exit(1)
    multirun = any(_is_flag(a, "-m", "--multirun") for a in argv)
    if multirun and any(_is_flag(a, "-c", "--cfg") for a in argv):
        argv = show_sweep_config(argv)
    elif multirun:
        # After a Ctrl-C, joblib's worker processes leave semaphores to multiprocessing's resource
        # tracker, which then warns about them on exit: noise below the one-line message.
        quiet = "ignore::UserWarning:multiprocessing.resource_tracker"
        os.environ["PYTHONWARNINGS"] = ",".join(w for w in (os.environ.get("PYTHONWARNINGS"), quiet) if w)
        from hydra.core.override_parser.overrides_parser import OverridesParser

        try:
            parsed = OverridesParser.create().parse_overrides([a for a in argv if not a.startswith("-") and "=" in a])
            os.environ[SWEPT_ENV] = ",".join(o.key_or_group.lstrip("+~") for o in parsed if o.is_sweep_override())
        except Exception:  # Hydra reports a malformed override itself
            pass
    sys.argv = [sys.argv[0], *argv]
    app = hydra.main(config_path=config_path, config_name="config", version_base=None)(task)
    mark_main_process()
    handle_stop_signals()
    with sweep_outcome_file() as outcome_path:
        try:
            run_app(app)
        except KeyboardInterrupt as stop:  # Ctrl-C, SIGTERM or SIGHUP
            print("\nsft-sweep: interrupted; run the same command again to resume", file=sys.stderr)
            sys.exit(stop.exit_code if isinstance(stop, Stopped) else 130)
        # A multirun returns here after its report; a failed job or report makes the command fail too.
        outcome = read_sweep_outcome(outcome_path)
    if outcome is not None and (outcome["failed"] or outcome.get("refused") or outcome.get("lost")
                                or outcome["report_error"]):
        for lost_task, reason in outcome.get("lost") or []:
            print(f"sft-sweep: the task {lost_task} ended without a result ({reason}); the same command again "
                  "runs or resumes it", file=sys.stderr)
        if outcome.get("refused"):
            print(f"sft-sweep: {len(outcome['refused'])} job(s) not run: another process was writing their "
                  "directory (see the lines above)", file=sys.stderr)
        if outcome["report_error"]:
            print(f"sft-sweep: the sweep's report was not written ({outcome['report_error']})", file=sys.stderr)
        sys.exit(1)


@contextlib.contextmanager
def sweep_outcome_file() -> Iterator[str]:
    """A private file the multirun's report callback writes the sweep's outcome to (see
    ``jobfiles.write_sweep_outcome``); removed afterwards."""
    fd, path = tempfile.mkstemp(prefix="sft-sweep-outcome-", suffix=".json")
    os.close(fd)
    os.unlink(path)  # absent until written: a run without the callback leaves no outcome
    os.environ[SWEEP_OUTCOME_ENV] = path
    try:
        yield path
    finally:
        os.environ.pop(SWEEP_OUTCOME_ENV, None)
        with contextlib.suppress(OSError):
            os.unlink(path)


if __name__ == "__main__":
    main()
