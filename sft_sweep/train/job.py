"""One SFT job as a recipe: load base, evaluate base, resume, train, finish (``Job._run``).

Files in the job directory (the contract is ``sft_sweep.jobfiles``):
  metrics.jsonl   train rows every ``train.log_interval`` steps, eval rows (step 0 = base model)
  summary.json    status, config hash, base / final evaluation, forgetting, timings, versions
  samples.jsonl   base vs tuned generations on held-out prompts
  checkpoint.npz  while training (resume point); replaced by model.npz when the job completes
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..data import (PreparedData, ReplayMix, data_counts_line, prepare, pretrain_paths, pretrain_source,
                    resolve_path, with_replay)
from ..config import Config, base_eval_key, config_dict, config_hash, to_object, validate
from ..errors import CheckpointError, ConfigError, DivergedError, SftSweepError, file_system_problem
from ..jobfiles import (
    ADAPTER, BLENDS, CHECKPOINT, PEFT, WEIGHT_CHANGE, COMPLETED, DIVERGED, FAILED, INPUTS, INTERRUPTED, METRICS, MODEL, PRUNED, RUNNING, SAMPLES,
    SCORED,
    SUMMARY, WARNINGS, file_digest, flatten, forgetting_pct, read_json, write_json, write_jsonl,
)
from ..atomicio import atomic_path
from ..joblock import job_dir_lock
from ..nn import GPT, load_checkpoint, save_checkpoint
from ..nn.checkpoint import check_checkpoint
from . import sft
from .cache import BaseCache
from .evaluate import Evaluator, sample_rows
from .freeform import free_form_summary
from .pretrain import load_or_build_base
from .resources import job_threads
from .runfiles import MetricsLog
from .trial import Pruned, TrialReporter
from .tuning import blended, make_tuning, weight_change
from ..tracking import Tracking, open_tracking

log = logging.getLogger("sft_sweep")


def versions() -> dict[str, str]:
    import hydra
    import omegaconf

    return {"sft_sweep": __version__, "numpy": np.__version__, "python": platform.python_version(),
            "hydra": hydra.__version__, "omegaconf": omegaconf.__version__}


def evaluator_for(cfg: Config, data: PreparedData) -> Evaluator:
    """The evaluation a job with ``cfg`` runs on its prepared data (``sft-sweep-eval`` reuses it)."""
    e = cfg.eval
    return Evaluator(template=data.template, val_examples=data.val_examples, heldout_tokens=data.heldout_tokens,
                     eval_items=data.eval_items, probe_items=data.probe_items, follow_prompts=data.follow_prompts,
                     block_size=cfg.model.block_size, max_items=e.max_items, max_new_tokens=e.max_new_tokens,
                     raw_windows=e.raw_windows, batch_size=e.batch_size,
                     fact_completions=data.fact_completions, repetition_penalty=e.repetition_penalty,
                     no_repeat_ngram=e.no_repeat_ngram, train_examples=data.train_examples,
                     periodic_items=e.periodic_items)


def _gen_dicts(gens: dict) -> dict[str, list[dict]]:
    return {k: [{"text": g.text, "followed": g.followed} for g in v] for k, v in gens.items()}


def _fmt(metrics: dict) -> str:
    return " ".join(f"{k}={v:.4g}" for k, v in metrics.items())


def typed_config(cfg_node: Any) -> tuple[Config | None, ConfigError | None]:
    """The typed Config of a composed config, or the reason there is none (recorded when the job runs)."""
    try:
        return to_object(cfg_node), None
    except ConfigError as e:
        return None, e


class Job:
    """One job: its typed config (``self.cfg``), the values it was composed with by dotted key
    (``self.recorded``: summary.json's ``config`` and the source of the config hash) and its files."""

    def __init__(self, cfg_node: Any, job_dir: str | os.PathLike, *, overrides: list[str] | None = None,
                 base_dir: str | None = None, job_name: str | None = None, progress: bool | None = None) -> None:
        # The hash is taken from the values as composed, not from the typed Config (which fills in
        # defaults, e.g. of a dataset's fields): so it stays what earlier runs recorded.
        self.recorded = flatten(config_dict(cfg_node))
        self.hash = config_hash(self.recorded)
        self.cfg, self.config_error = typed_config(cfg_node)
        self.dir = Path(job_dir)
        self.overrides = list(overrides or [])
        self.base_dir = base_dir or os.getcwd()
        self.name = job_name or self.dir.name
        self.progress = progress  # progress bars; None: when stderr is a terminal
        self.summary_path = self.dir / SUMMARY
        self.ckpt_path = self.dir / CHECKPOINT
        self.timings: dict[str, float] = {}
        self.data_report: dict[str, Any] = {}  # filled while the data is prepared, kept if that fails
        self.warnings: list[str] = []  # what the user should know (data dropped, files ignored)
        self.tracking = Tracking([], self.name)  # the logger group's trackers, opened by run()

    def warn(self, message: str) -> None:
        """Record a warning for summary.json and print it once."""
        self.warnings.append(message)
        log.warning("[%s] %s", self.name, message)

    def _summary(self, status: str, **extra: Any) -> dict:
        return {"status": status, "config_hash": self.hash, "overrides": self.overrides,
                "config": self.recorded, **extra, WARNINGS: list(self.warnings),
                "versions": versions()}

    def completed_before(self) -> dict | None:
        """The summary of this job's earlier completed run, when it still stands: the same config,
        a readable model file, and the same bytes in every file it read (else the log says why not)."""
        s = read_json(self.summary_path)
        if not (isinstance(s, dict) and s.get("status") == COMPLETED and s.get("config_hash") == self.hash):
            return None
        why = self.completed_run_stale(s)
        if why:
            log.info("[%s] runs again though completed before with the same config: %s", self.name, why)
            return None
        return s

    def completed_run_stale(self, summary: dict) -> str | None:
        """Why a completed run with this config no longer stands, or None."""
        try:
            check_checkpoint(self.dir / MODEL)
        except CheckpointError as e:
            return f"its model file cannot be used ({e})"
        for what, seen in (summary.get(INPUTS) or {}).items():
            if not isinstance(seen, dict) or not os.path.isfile(str(seen.get("path"))):
                continue  # a file no longer there cannot be compared; the results stand
            now = file_digest(seen["path"])
            if now != seen.get("sha256"):
                return f"{what} ({seen['path']}) changed since (sha256 {seen.get('sha256')} -> {now})"
        return None

    def read_inputs(self) -> dict[str, dict]:
        """The files this job read, each with the digest of its bytes (summary.json ``inputs``)."""
        cfg, files = self.cfg, {}
        if cfg.data.source == "files":
            for name, ds in cfg.data.datasets.items():
                files[f"data.datasets.{name}.path"] = resolve_path(ds.path, self.base_dir)
            files.update(pretrain_paths(cfg, self.base_dir))
        files["base model"] = cfg.pretrain.init_from or str(self.cache.model_path)
        return {what: {"path": path, "sha256": file_digest(path)} for what, path in files.items()
                if os.path.isfile(path)}

    def run(self) -> dict:
        """Run the job and return its summary; failures are recorded, not raised. Raises
        ``JobDirInUse`` when another live process writes the job directory."""
        with job_dir_lock(self.dir):
            return self._run_locked()

    def _run_locked(self) -> dict:
        done = self.completed_before()
        if done is not None:
            log.info("[%s] skipped: completed before with the same config (hash %s)", self.name, self.hash)
            return {**done, "skipped": True}
        t_start = time.perf_counter()
        resumed = self.ckpt_path.exists()
        write_json(self.summary_path, self._summary(RUNNING))
        if self.cfg is not None:  # a config that is no Config fails at once, untracked
            self.tracking = open_tracking(dataclasses.asdict(self.cfg), self.dir, self.name, self.base_dir)
            self.tracking.start(self.recorded, resumed)
        try:
            summary = self._run(t_start)
        except KeyboardInterrupt:
            # Ctrl-C: the last periodic checkpoint stays, so the same command resumes from it.
            self._write_final(self._summary(
                INTERRUPTED, timings={**self.timings, "total_s": time.perf_counter() - t_start}))
            log.warning("[%s] interrupted; the same command resumes it", self.name)
            raise
        except Pruned as p:  # a search's pruner stopped it: a result, not a failure
            summary = self._summary(PRUNED, **p.fields,
                                    timings={**self.timings, "total_s": time.perf_counter() - t_start})
            self.ckpt_path.unlink(missing_ok=True)
        except Exception as e:  # recorded in summary.json; the caller chooses the exit code
            user_error = isinstance(e, SftSweepError)
            why = {"reason": DIVERGED, "diverged": e.details()} if isinstance(e, DivergedError) else {}
            summary = self._summary(FAILED, error=f"{type(e).__name__}: {e}", user_error=user_error, **why,
                                    traceback=None if user_error else traceback.format_exc(limit=20),
                                    data=self.data_report or None,
                                    timings={**self.timings, "total_s": time.perf_counter() - t_start})
            log.error("[%s] failed: %s", self.name, summary["error"])
        return self._write_final(summary)

    def _write_final(self, summary: dict) -> dict:
        """Write summary.json, then hand the job's files to the trackers (their warnings added)."""
        write_json(self.summary_path, summary)
        files = {"summary": self.summary_path, "metrics": self.dir / METRICS, "samples": self.dir / SAMPLES,
                 "model": self.dir / MODEL}
        tracked = self.tracking.finish(summary, files)
        if tracked is not summary:
            write_json(self.summary_path, tracked)
        return tracked

    def _run(self, t_start: float) -> dict:
        """The recipe; each step is a method below."""
        if self.config_error is not None:
            raise self.config_error
        cfg = self.cfg
        validate(cfg)
        if cfg.pretrain.init_from and not os.path.isabs(cfg.pretrain.init_from):
            cfg.pretrain.init_from = os.path.join(self.base_dir, os.path.expanduser(cfg.pretrain.init_from))
        self.threads = job_threads(cfg.train.threads, cfg.pretrain.threads)
        tic = time.perf_counter()
        self.data = prepare(cfg, self.base_dir, report=self.data_report,
                            progress=lambda line: log.info("[%s] %s", self.name, line))
        self.timings["data_s"] = time.perf_counter() - tic
        self.report_data()
        examples = with_replay(self.data, cfg.mix.replay_ratio, cfg.model.block_size + 1, cfg.train.seed)
        self.plan = sft.plan(examples(0), cfg)
        self.load_base()
        self.inputs = self.read_inputs()
        self.evaluator = evaluator_for(cfg, self.data)
        self.warn_unmeasured()
        self.evaluate_base()
        start_step = self.resume()
        step = self.train(examples, start_step)
        return self.finish(step, examples, t_start)

    def _base_model(self) -> tuple[GPT, BaseCache, dict]:
        cfg = self.cfg
        cache_root = cfg.pretrain.cache_dir
        if not os.path.isabs(cache_root):
            cache_root = os.path.join(self.base_dir, cache_root)
        tokens = self.data.pretrain_tokens
        return load_or_build_base(cfg, tokens, pretrain_source(cfg, self.base_dir, tokens), cache_root,
                                  self.threads, progress=self.progress)

    def report_data(self) -> None:
        """What the data preparation kept and dropped, printed once; its warnings recorded."""
        counts = data_counts_line(self.data.report)
        kept = (f"kept {len(self.data.train_examples)} training examples, "
                f"{len(self.data.val_examples)} held out")
        log.info("[%s] data: %s", self.name, f"{counts}; {kept}" if counts else kept)
        for w in self.data.warnings:
            self.warn(w)

    def warn_unmeasured(self) -> None:
        """A metric whose every prompt is too long for the model is absent: say so."""
        sets = {"answer": (self.data.eval_items, "answer_acc"), "knowledge": (self.data.probe_items, "knowledge_acc"),
                "follow": (self.data.follow_prompts, "follow_rate")}
        for name, n in self.evaluator.skipped.items():
            items, metric = sets[name]
            if n and n == len(items):
                self.warn(f"none of the {n} {name} prompts leaves room for an answer within "
                          f"model.block_size={self.cfg.model.block_size}: {metric} is not measured")

    def load_base(self) -> None:
        """The sweep's shared pre-trained model: from the cache, or pre-trained here first."""
        tic = time.perf_counter()
        self.model, self.cache, info = self._base_model()
        for w in info.get("warnings", []):
            self.warn(w)
        self.base_built = info["built"]
        # what blends and the weight change are measured against
        self.base_params = {n: p.copy() for n, p in self.model.params.items()}
        self.timings["base_s"] = time.perf_counter() - tic
        self.timings["pretrain_s"] = info["pretrain_s"]
        self.timings["base_wait_s"] = info["wait_s"]

    def evaluate_base(self) -> None:
        """The base model's metrics and generations, cached beside it for these eval settings."""
        tic = time.perf_counter()
        key = base_eval_key(self.recorded)
        cached = self.cache.read_eval(key)
        if cached is None:
            metrics, gens = self.evaluator.evaluate(self.model)
            cached = {"metrics": metrics, "generations": _gen_dicts(gens), "items": self.evaluator.item_scores,
                      "not_measured": self.evaluator.not_measured}
            try:
                self.cache.write_eval(key, cached)
            except OSError as e:  # a shared cache the job may read but not write
                problem = file_system_problem(e)
                if problem is None:
                    raise
                self.warn(f"the base model's evaluation was computed here and not cached in "
                          f"{self.cache.dir} ({problem}); a job with these eval settings computes it again")
        self.base_metrics, self.base_gens = cached["metrics"], cached["generations"]
        self.base_items = cached.get("items")  # per-item scores for paired base -> tuned changes
        self.timings["base_eval_s"] = time.perf_counter() - tic
        log.info("[%s] base model %s: %s", self.name, self.cache.key, _fmt(self.base_metrics))

    def start_tuning(self) -> None:
        """What trains (``peft``) and its optimiser, on the base weights."""
        self.tuning = make_tuning(self.model, self.cfg)
        if self.cfg.optim.l2_to_base > 0:
            self.tuning.mark_start()
        self.opt = sft.make_optimizer(self.model, self.cfg, self.tuning)

    def resume(self) -> int:
        """The step to start from: that of this configuration's checkpoint, else 0."""
        self.start_tuning()
        if not self.ckpt_path.exists():
            return 0
        try:
            info = load_checkpoint(self.ckpt_path, self.model, self.opt)
            if (info.get("extra") or {}).get("config_hash") != self.hash:
                raise CheckpointError("checkpoint belongs to another configuration")
            try:
                self.tuning.load_state(info["adapter"])
            except ValueError as e:
                raise CheckpointError(str(e)) from None
        except CheckpointError as e:
            self.warn(f"checkpoint {self.ckpt_path} ignored, training starts from the base model: {e}")
            # A load that failed half-way may have overwritten weights: start from the base again.
            self.model, self.cache, _ = self._base_model()
            self.start_tuning()
            return 0
        start_step = int(info["step"])
        log.info("[%s] resuming from step %d", self.name, start_step)
        return start_step

    def train(self, examples: ReplayMix, start_step: int) -> int:
        """SFT from ``start_step`` to the plan's last step, evaluating every ``train.eval_interval``
        steps and at the end, checkpointing every ``train.checkpoint_interval``; the last step."""
        cfg, total = self.cfg, self.plan.total_steps
        self.metrics = self.tracking.tee(MetricsLog(self.dir / METRICS,
                                                    keep_until_step=start_step if start_step else None))
        if start_step == 0:
            self.metrics.write({"kind": "eval", "step": 0, **self.base_metrics})
        self.eval_s = 0.0
        self.diverge_bound = sft.divergence_bound(cfg)
        self.last_eval: dict[str, Any] = {"step": -1, "metrics": None, "gens": None, "final": False}
        self.trial = TrialReporter.from_env(cfg.eval.objective, bool(cfg.eval.objectives), self.base_metrics,
                                            total, self.name)  # None unless a search runs this job

        def on_step_end(step: int) -> None:
            if step % cfg.train.eval_interval == 0 or step == total:
                self._evaluate(step, final=step == total)
            if step % cfg.train.checkpoint_interval == 0 and step < total:
                save_checkpoint(self.ckpt_path, self.model, self.opt, step=step, extra={"config_hash": self.hash},
                                adapter=self.tuning.state())

        tic = time.perf_counter()
        step = sft.train(self.model, self.opt, examples, cfg, self.plan, start_step=start_step,
                         on_log=self.metrics.write, on_step_end=on_step_end, progress=self.progress,
                         desc=self.name, tuning=self.tuning)
        if self.last_eval["step"] != step or not self.last_eval["final"]:  # resumed after the last step,
            self._evaluate(step, final=True)                                   # or no step at all
        self.timings["sft_s"] = time.perf_counter() - tic - self.eval_s
        self.timings["eval_s"] = self.eval_s
        return step

    def _evaluate(self, step: int, final: bool) -> None:
        """Evaluates the model at ``step``: on every item when ``final``, else on the periodic subset."""
        t0 = time.perf_counter()
        periodic = not final
        m, g = self.evaluator.evaluate(self.model, periodic=periodic)
        self.eval_s += time.perf_counter() - t0
        self.last_eval.update(step=step, metrics=m, gens=g, final=final, counts=dict(self.evaluator.counts))
        items = self.evaluator.periodic_items if periodic else 0
        self.metrics.write({"kind": "eval", "step": step, **m,
                            **({"items": f"periodic: {items} per set"} if items else {})})
        log.info("[%s] step %d/%d eval: %s", self.name, step, self.plan.total_steps, _fmt(m))
        for key in ("raw_loss", "response_loss"):  # a blown-up model fails here, not at the end
            sft.check_divergence(key, m.get(key), step, self.diverge_bound)
        if self.trial is not None:
            self.trial.report(step, m, final=step == self.plan.total_steps)

    def finish(self, step: int, examples: ReplayMix, t_start: float) -> dict:
        """Samples and the tuned model to the job directory, the checkpoint removed; the summary."""
        cfg, data, base, final = self.cfg, self.data, self.base_metrics, self.last_eval["metrics"]
        forgetting = None
        if "raw_loss" in final and "raw_loss" in base:
            forgetting = forgetting_pct(base["raw_loss"], final["raw_loss"])
        items = {"answer": data.eval_items, "knowledge": data.probe_items, "follow": data.follow_prompts}
        write_jsonl(self.dir / SAMPLES, sample_rows(self.base_gens, self.last_eval["gens"], items, cfg.eval.n_samples))
        save_checkpoint(self.dir / MODEL, self.model, step=step, extra={"config_hash": self.hash})
        self.save_adapter(step)
        if self.ckpt_path.exists():
            self.ckpt_path.unlink()
        # the final model's per-item scores, taken before any blend is evaluated
        free_form = free_form_summary(self.base_items, self.evaluator.item_scores, base,
                                      self.evaluator.not_measured, self.evaluator.decoding)
        method = {PEFT: self.tuning.describe()}
        change = weight_change(self.base_params, self.model, self.tuning)
        if change is not None:
            method[WEIGHT_CHANGE] = change
        if cfg.eval.blend:
            method[BLENDS] = self.evaluate_blends()
        self.timings["total_s"] = time.perf_counter() - t_start
        data_report = {**data.report, "mix": examples.report(sft.planned_epochs(self.plan, cfg)), "batches": self.plan.batch_report,
                       "n_train_examples": len(examples(0)), "eval_skipped_too_long": self.evaluator.skipped}
        return self._summary(
            COMPLETED, base=base, final=final, forgetting_pct=forgetting, steps=step,
            base_model={"key": self.cache.key, "built_here": self.base_built}, threads=self.threads.sft,
            data=data_report, timings=self.timings, data_fit=data.report.get("fit"),
            not_measured=self.evaluator.not_measured, **method, free_form=free_form,
            **({SCORED: self.last_eval["counts"]} if self.last_eval.get("counts") else {}),
            **{INPUTS: self.inputs})

    def save_adapter(self, step: int) -> None:
        """A LoRA job's adapters beside its merged model, naming the base they apply to."""
        state = self.tuning.state()
        if not state:
            return
        meta = {**self.tuning.describe(), "base_model": self.cache.key, "step": step, "config_hash": self.hash}
        with atomic_path(self.dir / ADAPTER) as tmp, open(tmp, "wb") as f:
            np.savez(f, meta=np.array(json.dumps(meta)), **state)

    def evaluate_blends(self) -> list[dict]:
        """Each ``eval.blend`` t: (1 - t) * base + t * tuned, evaluated like the final model."""
        rows = []
        tic = time.perf_counter()
        for t in self.cfg.eval.blend:
            with blended(self.model, self.base_params, float(t)) as model:
                metrics, _ = self.evaluator.evaluate(model)
            forgetting = None
            if "raw_loss" in metrics and "raw_loss" in self.base_metrics:
                forgetting = forgetting_pct(self.base_metrics["raw_loss"], metrics["raw_loss"])
            rows.append({"t": float(t), "final": metrics, "forgetting_pct": forgetting,
                         "free_form": free_form_summary(self.base_items, self.evaluator.item_scores,
                                                        self.base_metrics, self.evaluator.not_measured,
                                                        self.evaluator.decoding)})
            log.info("[%s] blend t=%g: %s", self.name, t, _fmt(metrics))
        self.timings["blend_eval_s"] = time.perf_counter() - tic
        return rows
