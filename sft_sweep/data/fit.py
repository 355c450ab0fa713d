"""Does the data fit the model? Counted before any training, per dataset.

A model of ``block_size`` positions trains on at most ``block_size + 1`` ids of a conversation
and answers a held-out prompt in the room the block leaves after it, at most
``eval.max_new_tokens`` tokens. Three shares tell whether a data set can teach and show anything:

- ``truncated``: conversations longer than the block that still keep a trained token after the
  cut (under ``train.truncation=drop`` these are dropped instead);
- ``no_trained_token``: conversations left with no trained token in the block (every one is
  dropped: the assistant's answer starts beyond the block);
- ``answer_too_long``: conversations whose reference answer (the last assistant turn, plus the
  end-of-turn marker) does not fit the generation room after its prompt. A greedy answer to such
  a prompt is cut off by construction, so instruction following cannot be judged on it.

The same counts are what the job's length fitting reports (``length.NAME`` in summary.json), so
a user sees in ``sft-sweep-inspect`` what the job will do before running it.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from .conversation import Conversation
from .templates import render, render_prompt

#: Above this share a count is a warning: the data does not fit the model.
WARN_SHARE = 0.2

def split_last_answer(conv: Conversation) -> tuple[Conversation, str | None]:
    """(the conversation up to its last assistant turn, that turn's text or None)."""
    turns = list(conv.turns)
    answer = None
    while turns and turns[-1].role == "assistant":
        answer = turns.pop().content if answer is None else answer
    return Conversation(turns=turns, meta=dict(conv.meta)), answer


def answer_room(n_prompt: int, block_size: int, max_new_tokens: int) -> int:
    """Tokens an evaluation may generate after a prompt of ``n_prompt`` ids."""
    return max(0, min(max_new_tokens, block_size - n_prompt))


def answer_fits(prompt_ids: list[int], reference: str, block_size: int, max_new_tokens: int,
                tok: Any = None) -> bool:
    """Whether the reference answer (in tokens of ``tok``, the byte tokenizer when None) and its
    end-of-turn marker fit the generation room."""
    n = len(tok.encode(reference)) if tok is not None else len(reference.encode("utf-8"))
    return n + 1 <= answer_room(len(prompt_ids), block_size, max_new_tokens)


def dataset_fit(convs: Iterable[Conversation], template: Any, mask: str, block_size: int,
                max_new_tokens: int) -> dict:
    """The counts and shares of one dataset (see the module's docstring)."""
    max_tokens = block_size + 1
    n = truncated = no_trained = too_long_answer = no_answer = 0
    for conv in convs:
        n += 1
        ids, m = render(conv, template, mask=mask)
        kept = np.asarray(m[:max_tokens])
        trained = int(kept[1:].sum())
        if trained == 0:
            no_trained += 1
        elif len(ids) > max_tokens:
            truncated += 1
        prompt, answer = split_last_answer(conv)
        if answer is None:
            no_answer += 1
        elif not answer_fits(render_prompt(prompt, template), answer, block_size, max_new_tokens,
                             getattr(template, "tok", None)):
            too_long_answer += 1
    out = {"n": n, "truncated": truncated, "no_trained_token": no_trained, "answer_too_long": too_long_answer}
    if no_answer:
        out["no_answer"] = no_answer
    for key in ("truncated", "no_trained_token", "answer_too_long"):
        out[f"{key}_share"] = out[key] / n if n else 0.0
    return out


def data_fit(sets: dict[str, list[Conversation]], template: Any, mask: str, block_size: int,
             max_new_tokens: int) -> dict:
    """Per dataset (training sets under their names, the held-out set as ``heldout``), with the
    settings the counts depend on."""
    per = {name: dataset_fit(convs, template, mask if name != "heldout" else "assistant", block_size,
                             max_new_tokens) for name, convs in sets.items()}
    return {"block_size": block_size, "max_new_tokens": max_new_tokens, "warn_share": WARN_SHARE,
            "datasets": per}


def fit_warnings(fit: dict) -> list[str]:
    """One line per dataset whose shares pass ``WARN_SHARE``: the numbers and what to change."""
    out = []
    block, room = fit["block_size"], fit["max_new_tokens"]
    for name, d in fit["datasets"].items():
        n = d["n"]
        problems = []
        if d["truncated_share"] > WARN_SHARE:
            problems.append(f"{d['truncated']} of {n} ({d['truncated_share']:.0%}) are cut at the block")
        if d["no_trained_token_share"] > WARN_SHARE:
            problems.append(f"{d['no_trained_token']} of {n} ({d['no_trained_token_share']:.0%}) keep no "
                            "trained token")
        if d["answer_too_long_share"] > WARN_SHARE:
            problems.append(f"{d['answer_too_long']} of {n} ({d['answer_too_long_share']:.0%}) have a reference "
                            f"answer that cannot fit the generation room (prompt + eval.max_new_tokens={room} "
                            f"within model.block_size={block})")
        if problems:
            out.append(f"dataset {name!r} does not fit the model: " + "; ".join(problems)
                       + f". Raise model.block_size (now {block}) and eval.max_new_tokens (now {room}), keep "
                       "short answers (data.quality.max_response_chars=...), or use a bigger model")
    return out


def fit_lines(fit: dict | None) -> list[str]:
    """The fit check as lines for a terminal (``sft-sweep-inspect``)."""
    if not fit:
        return []
    lines = [f"fit check (model.block_size={fit['block_size']}, eval.max_new_tokens={fit['max_new_tokens']}):"]
    for name, d in fit["datasets"].items():
        lines.append(f"  {name}: {d['n']} conversations; truncated {d['truncated']} ({d['truncated_share']:.0%}), "
                     f"no trained token {d['no_trained_token']} ({d['no_trained_token_share']:.0%}), "
                     f"answer too long for the generation room {d['answer_too_long']} "
                     f"({d['answer_too_long_share']:.0%})")
    return lines + [f"  warning: {w}" for w in fit_warnings(fit)]


__all__ = ["WARN_SHARE", "answer_fits", "answer_room", "data_fit", "dataset_fit", "fit_lines",
           "fit_warnings", "split_last_answer"]
