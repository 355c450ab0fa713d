"""``sft-sweep-eval MODEL_OR_JOB_DIR [overrides]``: evaluate a model with the current eval config.

    sft-sweep-eval runs/sweeps/quickstart/optim.lr=0.0003,train.epochs=2
    sft-sweep-eval JOB_DIR eval.max_items=200 eval.max_new_tokens=64 --with-base
    sft-sweep-eval path/to/model.npz model=mini data=world --out metrics.json

A job directory is evaluated on its own data and template: its config is composed again from the
job's recorded overrides plus the ones given here, so today's eval settings apply, except the
repetition controls: they stay those the job was evaluated with (``sft_sweep.decoding``) unless
``--repetition-penalty`` / ``--no-repeat-ngram`` or ``eval.*`` overrides say otherwise. A bare ``.npz``
takes the config from the overrides alone (the model's shape from the checkpoint). The metrics are
printed and written as JSON (``--out``; for a job directory by default ``JOB_DIR/eval/<time>.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .data import prepare
from .decoding import OFF, add_decoding_args, chosen_decoding
from .errors import SftSweepError, check_writable, user_errors_exit
from .inspect_data import compose_config
from .jobfiles import SCORED, write_json
from .jobmodels import SHAPE_KEYS, JobModels, check_architecture, load_model, resolve
from .train.evaluate import Evaluator
from .train.job import evaluator_for


def _job_overrides(job_dir: Path) -> list[str]:
    try:
        recorded = yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text())
    except (OSError, yaml.YAMLError):
        recorded = None
    if not isinstance(recorded, list):
        summary = json.loads((job_dir / "summary.json").read_text()) if (job_dir / "summary.json").exists() else {}
        recorded = summary.get("overrides") or []
    return [str(o) for o in recorded]


def _launch_dir(job_dir: Path | None) -> str:
    if job_dir is not None:
        try:
            hydra_cfg = yaml.safe_load((job_dir / ".hydra" / "hydra.yaml").read_text()) or {}
            cwd = ((hydra_cfg.get("hydra") or {}).get("runtime") or {}).get("cwd")
            if cwd and Path(cwd).is_dir():
                return str(cwd)
        except (OSError, yaml.YAMLError):
            pass
    return os.getcwd()


def decoding_overrides(found: JobModels, overrides: list[str], args: Any = None) -> tuple[list[str], str]:
    """``eval.*`` overrides that keep the decoding the job was evaluated with (or the one
    ``args`` asks for), and where it comes from. An ``eval.<control>=`` override given by the
    user wins over both."""
    values, source = chosen_decoding(args, found.job_dir, found.config)
    given = {o.split("=", 1)[0].lstrip("+") for o in overrides if "=" in o}
    pins = [f"eval.{k}={v}" for k, v in values.items() if f"eval.{k}" not in given and
            (found.job_dir is not None or v != OFF[k])]
    if any(f"eval.{k}" in given for k in OFF):
        source = "the overrides given"
    return pins, source


@dataclass
class Evaluation:
    """A model ready to evaluate: the tuned model, the config it is evaluated with and its
    evaluator, and what a base model must match (``shape``, checked ``against``)."""

    model: Any
    cfg: Any
    evaluator: Evaluator
    decoding_from: str
    shape: dict
    against: str


def evaluation_for(found: JobModels, overrides: list[str], args: Any = None) -> Evaluation:
    """Loads the tuned model and builds its evaluator from the job's config plus ``overrides``."""
    if found.tuned is None:
        raise SftSweepError("; ".join(found.notes) or "no model to evaluate")
    model = load_model(found.tuned)  # first: a file that is no checkpoint is refused before any work
    shape = model.config
    base_overrides = _job_overrides(found.job_dir) if found.job_dir is not None else \
        [f"model.{k}={getattr(shape, k)}" for k in SHAPE_KEYS]
    pins, decoding_from = decoding_overrides(found, list(overrides), args)
    cfg = compose_config(base_overrides + pins + list(overrides))
    # The composed shape, not only the job's: an override such as model.block_size=128 would
    # evaluate a 64-token model on sequences it cannot read.
    shape_of_cfg = {"model": {k: getattr(cfg.model, k) for k in SHAPE_KEYS}}
    against = "its job's config" if found.job_dir is not None and not overrides else "the config"
    check_architecture(found.tuned, model, shape_of_cfg, against=against)
    data = prepare(cfg, _launch_dir(found.job_dir))
    model.set_threads(max(1, cfg.train.threads))
    return Evaluation(model, cfg, evaluator_for(cfg, data), decoding_from, shape_of_cfg, against)


def evaluate_model(found: JobModels, overrides: list[str], with_base: bool = False,
                   args: Any = None) -> dict[str, Any]:
    ev = evaluation_for(found, overrides, args)
    model, cfg, evaluator = ev.model, ev.cfg, ev.evaluator
    result: dict[str, Any] = {"model": str(found.tuned), "job": str(found.job_dir) if found.job_dir else None,
                              "overrides": list(overrides), "template": cfg.template.name,
                              "decoding": dict(evaluator.decoding), "decoding_from": ev.decoding_from}
    tic = time.perf_counter()
    result["metrics"], _ = evaluator.evaluate(model)
    if evaluator.counts:  # what the answer metrics counted, as a job records it (summary.json "scored")
        result[SCORED] = dict(evaluator.counts)
    if with_base:
        if found.base is None:
            raise SftSweepError("; ".join(found.notes) or "no base model found (give --base PATH)")
        result["base_model"] = str(found.base)
        base = load_model(found.base)
        check_architecture(found.base, base, ev.shape, "base model", against=ev.against)
        result["base_metrics"], _ = evaluator.evaluate(base)
        b, f = result["base_metrics"].get("raw_loss"), result["metrics"].get("raw_loss")
        if b and f is not None:
            result["forgetting_pct"] = 100.0 * (f - b) / b
    result["eval_skipped_too_long"] = evaluator.skipped
    result["eval_s"] = time.perf_counter() - tic
    return result


def format_result(result: dict[str, Any]) -> str:
    names = sorted(set(result["metrics"]) | set(result.get("base_metrics", {})))
    lines = [f"{'metric':<18} {'base':>10} {'model':>10}" if "base_metrics" in result else f"{'metric':<18} {'model':>10}"]
    for n in names:
        m = result["metrics"].get(n)
        cell = "" if m is None else f"{m:.4g}"
        if "base_metrics" in result:
            b = result["base_metrics"].get(n)
            lines.append(f"{n:<18} {'' if b is None else f'{b:.4g}':>10} {cell:>10}")
        else:
            lines.append(f"{n:<18} {cell:>10}")
    if "forgetting_pct" in result:
        lines.append(f"{'forgetting_pct':<18} {'':>10} {result['forgetting_pct']:>+10.2f}")
    if "decoding" in result:
        shown = ", ".join(f"{k}={v:g}" for k, v in result["decoding"].items())
        lines.append(f"decoding: {shown} (from {result.get('decoding_from')})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    doc = __doc__ or ""
    p = argparse.ArgumentParser(prog="sft-sweep-eval", description=doc.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="examples:\n" + doc.split("\n\n")[1])
    p.add_argument("target", help="a job directory or a model .npz")
    p.add_argument("overrides", nargs="*", help="config overrides, e.g. eval.max_items=200")
    p.add_argument("--base", help="the base model's .npz (default: the job's)")
    p.add_argument("--with-base", action="store_true", help="evaluate the base model too, and the forgetting")
    p.add_argument("--out", help="write the metrics here as JSON")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_decoding_args(p)
    args = p.parse_intermixed_args(argv)
    with user_errors_exit("sft-sweep-eval"):
        found = resolve(args.target, base=args.base)
        out = args.out
        if out is None and found.job_dir is not None:
            out = str(found.job_dir / "eval" / time.strftime("%Y-%m-%d_%H-%M-%S.json", time.gmtime()))
        if out:  # before the evaluation, which may take a while
            check_writable(Path(out), "--out FILE" if args.out is None else None)
        result = evaluate_model(found, args.overrides, with_base=args.with_base, args=args)
        print(json.dumps(result, indent=2) if args.json else format_result(result))
        if out:
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            write_json(out, result)
            if not args.json:
                print(f"written to {out}")


if __name__ == "__main__":
    main()
