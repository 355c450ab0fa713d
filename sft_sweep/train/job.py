"""One SFT job, top to bottom: config -> data -> base model -> SFT with evaluation -> job files.

Files in the job directory (the contract is ``sft_sweep.jobfiles``):
  metrics.jsonl   train rows every ``train.log_interval`` steps, eval rows (step 0 = base model)
  summary.json    status, config hash, base / final evaluation, forgetting, timings, versions
  samples.jsonl   base vs tuned generations on held-out prompts
  checkpoint.npz  while training (resume point); replaced by model.npz when the job completes
"""

from __future__ import annotations

import logging
import os
import platform
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..config import Config, config_dict, config_hash, stable_hash, to_object, validate
from ..errors import CheckpointError, SftSweepError
from ..nn import load_checkpoint, save_checkpoint
from . import sft
from .data_prep import PreparedData, pretrain_source, prepare, with_replay
from .evaluate import Evaluator, sample_rows
from .pretrain import load_or_build_base
from .resources import available_cores
from ..jobfiles import (
    CHECKPOINT, COMPLETED, FAILED, METRICS, MODEL, RUNNING, SAMPLES, SUMMARY, flatten, forgetting_pct,
    read_json, write_json, write_jsonl,
)
from .runfiles import MetricsLog

log = logging.getLogger("sft_sweep")


def versions() -> dict[str, str]:
    import hydra
    import omegaconf

    return {"sft_sweep": __version__, "numpy": np.__version__, "python": platform.python_version(),
            "hydra": hydra.__version__, "omegaconf": omegaconf.__version__}


def set_threads(cfg: Config) -> int:
    """Compute threads for this job; BLAS itself gets one thread per worker.

    Set here, inside the job, because launchers such as joblib reuse worker processes: a limit
    set by the launcher's parent would not reach them, and N jobs x N BLAS threads on N cores
    oversubscribe the machine.
    """
    from threadpoolctl import threadpool_limits

    n = cfg.train.threads or available_cores()
    threadpool_limits(limits=1)
    return n


def objective(summary: dict, path: str) -> float:
    """The value a Hydra sweeper optimises: a dotted path into summary.json (NaN when absent)."""
    node: Any = summary
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return float("nan")
        node = node[part]
    try:
        return float(node)
    except (TypeError, ValueError):
        return float("nan")


def _evaluator(cfg: Config, data: PreparedData) -> Evaluator:
    e = cfg.eval
    return Evaluator(template=data.template, val_examples=data.val_examples, heldout_tokens=data.heldout_tokens,
                     eval_items=data.eval_items, probe_items=data.probe_items, follow_prompts=data.follow_prompts,
                     block_size=cfg.model.block_size, max_items=e.max_items, max_new_tokens=e.max_new_tokens,
                     raw_windows=e.raw_windows, batch_size=e.batch_size)


def _gen_dicts(gens: dict) -> dict[str, list[dict]]:
    return {k: [{"text": g.text, "followed": g.followed} for g in v] for k, v in gens.items()}


def _fmt(metrics: dict) -> str:
    return " ".join(f"{k}={v:.4g}" for k, v in metrics.items())


class Job:
    def __init__(self, cfg_node: Any, job_dir: str | os.PathLike, *, overrides: list[str] | None = None,
                 base_dir: str | None = None, job_name: str | None = None) -> None:
        self.node = cfg_node
        self.dir = Path(job_dir)
        self.overrides = list(overrides or [])
        self.base_dir = base_dir or os.getcwd()
        self.name = job_name or self.dir.name
        self.cfg_dict = config_dict(cfg_node)
        self.hash = config_hash(self.cfg_dict)
        self.summary_path = self.dir / SUMMARY
        self.ckpt_path = self.dir / CHECKPOINT
        self.timings: dict[str, float] = {}

    def _summary(self, status: str, **extra: Any) -> dict:
        return {"status": status, "config_hash": self.hash, "overrides": self.overrides,
                "config": flatten(self.cfg_dict), **extra, "versions": versions()}

    def completed_before(self) -> dict | None:
        s = read_json(self.summary_path)
        if isinstance(s, dict) and s.get("status") == COMPLETED and s.get("config_hash") == self.hash:
            return s
        return None

    def run(self) -> dict:
        """Run the job and return its summary; failures are recorded, not raised."""
        done = self.completed_before()
        if done is not None:
            log.info("[%s] skipped: completed before with the same config (hash %s)", self.name, self.hash)
            return {**done, "skipped": True}
        t_start = time.perf_counter()
        self.dir.mkdir(parents=True, exist_ok=True)
        write_json(self.summary_path, self._summary(RUNNING))
        try:
            summary = self._run(t_start)
        except Exception as e:  # recorded in summary.json; the caller chooses the exit code
            user_error = isinstance(e, SftSweepError)
            summary = self._summary(FAILED, error=f"{type(e).__name__}: {e}", user_error=user_error,
                                    traceback=None if user_error else traceback.format_exc(limit=20),
                                    timings={**self.timings, "total_s": time.perf_counter() - t_start})
            log.error("[%s] failed: %s", self.name, summary["error"])
        write_json(self.summary_path, summary)
        return summary

    def _run(self, t_start: float) -> dict:
        cfg = to_object(self.node)
        validate(cfg)
        threads = set_threads(cfg)
        tic = time.perf_counter()

        data = prepare(cfg, self.base_dir)
        self.timings["data_s"] = time.perf_counter() - tic

        # --- base model (shared, cached) and its evaluation -------------------------------------
        tic = time.perf_counter()
        cache_root = cfg.pretrain.cache_dir
        if not os.path.isabs(cache_root):
            cache_root = os.path.join(self.base_dir, cache_root)
        model, cache, base_info = load_or_build_base(cfg, data.pretrain_tokens,
                                                     pretrain_source(cfg, self.base_dir), cache_root, threads)
        self.timings["base_s"] = time.perf_counter() - tic
        self.timings["pretrain_s"] = base_info["pretrain_s"]
        self.timings["base_wait_s"] = base_info["wait_s"]

        evaluator = _evaluator(cfg, data)
        tic = time.perf_counter()
        eval_key = stable_hash({k: v for k, v in flatten(self.cfg_dict).items()
                                if k.split(".")[0] in ("data", "template", "eval", "model")
                                and not k.startswith("eval.objective")})
        cached = cache.read_eval(eval_key)
        if cached is None:
            base_metrics, base_gens = evaluator.evaluate(model)
            cached = {"metrics": base_metrics, "generations": _gen_dicts(base_gens)}
            cache.write_eval(eval_key, cached)
        base_metrics, base_gens = cached["metrics"], cached["generations"]
        self.timings["base_eval_s"] = time.perf_counter() - tic
        log.info("[%s] base model %s: %s", self.name, cache.key, _fmt(base_metrics))

        # --- SFT -----------------------------------------------------------------------------
        examples, mix_report = with_replay(data, cfg.mix.replay_ratio, cfg.model.block_size + 1, cfg.train.seed)
        pl = sft.plan(examples, cfg)
        opt = sft.make_optimizer(model, cfg)
        start_step = 0
        if self.ckpt_path.exists():
            try:
                info = load_checkpoint(self.ckpt_path, model, opt)
                if (info.get("extra") or {}).get("config_hash") != self.hash:
                    raise CheckpointError("checkpoint belongs to another configuration")
                start_step = int(info["step"])
                log.info("[%s] resuming from step %d", self.name, start_step)
            except CheckpointError as e:
                log.warning("[%s] ignoring checkpoint %s: %s", self.name, self.ckpt_path, e)
                model, cache, _ = load_or_build_base(cfg, data.pretrain_tokens,
                                                     pretrain_source(cfg, self.base_dir), cache_root, threads)
                opt = sft.make_optimizer(model, cfg)
                start_step = 0
        metrics = MetricsLog(self.dir / METRICS, keep_until_step=start_step if start_step else None)
        if start_step == 0:
            metrics.write({"kind": "eval", "step": 0, **base_metrics})

        eval_s = 0.0
        last: dict[str, Any] = {"step": -1, "metrics": None, "gens": None}

        def do_eval(step: int) -> None:
            nonlocal eval_s
            t0 = time.perf_counter()
            m, g = evaluator.evaluate(model)
            eval_s += time.perf_counter() - t0
            last.update(step=step, metrics=m, gens=g)
            metrics.write({"kind": "eval", "step": step, **m})
            log.info("[%s] step %d/%d eval: %s", self.name, step, pl.total_steps, _fmt(m))

        def on_step_end(step: int) -> None:
            if step % cfg.train.eval_interval == 0 or step == pl.total_steps:
                do_eval(step)
            if step % cfg.train.checkpoint_interval == 0 and step < pl.total_steps:
                save_checkpoint(self.ckpt_path, model, opt, step=step, extra={"config_hash": self.hash})

        tic = time.perf_counter()
        step = sft.train(model, opt, examples, cfg, pl, start_step=start_step, on_log=metrics.write,
                         on_step_end=on_step_end)
        if last["step"] != step:  # resumed after the last step, or no step at all
            do_eval(step)
        self.timings["sft_s"] = time.perf_counter() - tic - eval_s
        self.timings["eval_s"] = eval_s

        final = last["metrics"]
        forgetting = None
        if "raw_loss" in final and "raw_loss" in base_metrics:
            forgetting = forgetting_pct(base_metrics["raw_loss"], final["raw_loss"])

        items = {"answer": data.eval_items, "knowledge": data.probe_items, "follow": data.follow_prompts}
        write_jsonl(self.dir / SAMPLES, sample_rows(base_gens, last["gens"], items, cfg.eval.n_samples))
        save_checkpoint(self.dir / MODEL, model, step=step, extra={"config_hash": self.hash})
        if self.ckpt_path.exists():
            self.ckpt_path.unlink()
        self.timings["total_s"] = time.perf_counter() - t_start
        data_report = {**data.report, "mix": mix_report, "batches": pl.batch_report,
                       "n_train_examples": len(examples), "eval_skipped_too_long": evaluator.skipped}
        return self._summary(
            COMPLETED, base=base_metrics, final=final, forgetting_pct=forgetting, steps=step,
            base_model={"key": cache.key, "built_here": base_info["built"]}, threads=threads,
            data=data_report, timings=self.timings)
