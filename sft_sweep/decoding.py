"""The decoding controls a job's greedy answers were evaluated with, for the tools that generate
again from its models (``sft-sweep-chat``, ``sft-sweep-eval``).

A metric such as the follow rate depends on how answers are decoded: with
``eval.no_repeat_ngram=12`` a model that loops ends its answers more often. So chatting with a
model, or evaluating it again, starts from the decoding that produced the job's metrics: what
the job recorded in ``summary.json`` (``free_form.decoding``), else its config's ``eval.*``
values, else off. ``--repetition-penalty`` / ``--no-repeat-ngram`` change it.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

#: The controls, each with its "off" value.
OFF = {"repetition_penalty": 1.0, "no_repeat_ngram": 0}


def _penalty(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number (1 = off), got {text!r}")
    return v


def _ngram(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = -1
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer (0 = off), got {text!r}")
    return v


def add_decoding_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repetition-penalty", type=_penalty, metavar="P",
                        help="divide the logits of tokens already in the answer by P (1: off; default: what "
                             "the job was evaluated with, eval.repetition_penalty)")
    parser.add_argument("--no-repeat-ngram", type=_ngram, metavar="N",
                        help="no n-gram of N tokens twice in an answer (0: off; default: what the job was "
                             "evaluated with, eval.no_repeat_ngram)")


def _valid(values: Any) -> dict[str, Any] | None:
    if not isinstance(values, dict):
        return None
    p, n = values.get("repetition_penalty", OFF["repetition_penalty"]), values.get("no_repeat_ngram",
                                                                                  OFF["no_repeat_ngram"])
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not (math.isfinite(p) and p > 0):
        return None
    if isinstance(n, bool) or not isinstance(n, (int, float)) or n < 0 or int(n) != n:
        return None
    return {"repetition_penalty": float(p), "no_repeat_ngram": int(n)}


def recorded_decoding(job_dir: Path | None, config: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """(the controls, where they come from) for a job: its summary's ``free_form.decoding``, else
    its config's ``eval`` section, else off (a bare checkpoint, or a job from before the controls)."""
    if job_dir is not None:
        try:
            summary = json.loads((Path(job_dir) / "summary.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            summary = None
        free = summary.get("free_form") if isinstance(summary, dict) else None
        found = _valid(free.get("decoding")) if isinstance(free, dict) else None
        if found is not None:
            return found, "the job's evaluation (summary.json free_form.decoding)"
        ev = config.get("eval") if isinstance(config, dict) else None
        if isinstance(ev, dict) and any(k in ev for k in OFF):
            found = _valid({k: ev[k] for k in OFF if k in ev})
            if found is not None:
                return found, "the job's config (eval.*)"
    return dict(OFF), "off (the default)"


def chosen_decoding(args: argparse.Namespace, job_dir: Path | None,
                    config: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The recorded controls with the command line's ``--repetition-penalty`` / ``--no-repeat-ngram``
    put over them."""
    values, source = recorded_decoding(job_dir, config)
    given = {k: getattr(args, k, None) for k in OFF}
    given = {k: v for k, v in given.items() if v is not None}
    if given:
        values = {**values, **given}
        source = "the command line" + (f", the rest from {source}" if len(given) < len(OFF) else "")
    return values, source


def describe(values: dict[str, Any]) -> str:
    on = [f"{k}={values[k]:g}" for k in OFF if values.get(k, OFF[k]) != OFF[k]]
    return ", ".join(on) if on else "no repetition controls"
