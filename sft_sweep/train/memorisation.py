"""Memorisation: does the model reproduce its training responses rather than answer?

A model that memorises its training set gives, on a training prompt, the very response it was
trained on, and does so more often than it gives the right response to a prompt it has not
seen. So the same measurement runs on two samples of conversations with responses:

- the held-out conversations (those of ``response_loss``), and
- a fixed sample of the *training* conversations matched to them prompt length for prompt
  length (the same at every evaluation of a job and for every job with the same data), so both
  samples hold the same kinds of questions,

and compares, per sample, the greedy answer to the prompt with the conversation's response:

- ``memorised_exact_train`` / ``memorised_exact_heldout``: share of prompts whose greedy answer
  is the response token for token, its end-of-turn marker included;
- ``memorised_ngram_train`` / ``memorised_ngram_heldout``: mean share of the response's word
  n-grams (:data:`NGRAM` words, or the whole response when it is shorter) that the answer also
  contains: long verbatim runs, which partial reproduction still shows;
- ``memorised_loss_gap``: held-out minus training response loss (nats per response token) on
  these samples: how much better the model fits what it was trained on;
- ``memorised_n_train`` / ``memorised_n_heldout``: the sample sizes, for intervals.

The prompt is everything before the conversation's last trained span (the final assistant
turn), so multi-turn conversations are scored on their last answer. A sample that is empty (no
training data given, no held-out conversations) leaves its metrics absent.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..data import Example
from ..nn import GPT, generate

#: Length (in words) of the n-grams whose reproduction ``memorised_ngram_*`` counts.
NGRAM = 4
#: Size of the fixed training sample (and at most that many held-out conversations).
SAMPLE_SIZE = 50
METRICS = ("memorised_exact_train", "memorised_exact_heldout", "memorised_ngram_train",
           "memorised_ngram_heldout", "memorised_loss_gap", "memorised_n_train", "memorised_n_heldout")


@dataclass(frozen=True)
class PromptResponse:
    """A conversation cut before its last trained span: what the model is asked, what it was
    (or would have been) trained to answer."""

    prompt: list[int]
    response: list[int]   # the trained span, its end-of-turn id included
    ids: np.ndarray       # the whole sequence up to the end of the response (for the loss)
    mask: np.ndarray      # 1 on the response only


def response_span(example: Example) -> tuple[int, int] | None:
    """``(start, end)`` of the example's last contiguous run of trained tokens (mask[0] is never a
    target, so start >= 1: a prompt precedes it), or None when nothing is trained."""
    on = np.flatnonzero(np.asarray(example.mask[1:]) > 0) + 1
    if on.size == 0:
        return None
    end = int(on[-1]) + 1
    off = np.flatnonzero(np.asarray(example.mask[1:end]) == 0)  # untrained positions 1.. before end
    return (int(off[-1]) + 2 if off.size else 1), end


def last_response(example: Example) -> PromptResponse | None:
    """The example's last contiguous run of trained tokens as the response, everything before
    it as the prompt; None when nothing is trained or nothing precedes it."""
    span = response_span(example)
    if span is None:
        return None
    start, end = span
    ids = np.asarray(example.ids[:end], dtype=np.int32)
    mask = np.zeros(end, dtype=np.int32)
    mask[start:end] = 1
    return PromptResponse([int(t) for t in ids[:start]], [int(t) for t in ids[start:end]], ids, mask)


def fixed_sample(examples: Sequence[Example], n: int, seed: int = 0) -> list[Example]:
    """``n`` of ``examples`` (all when fewer), chosen by ``seed`` alone and kept in their order."""
    if len(examples) <= n:
        return list(examples)
    picks = sorted(random.Random(f"memorisation:{seed}").sample(range(len(examples)), n))
    return [examples[i] for i in picks]


def matched_sample(pool: Sequence[PromptResponse], targets: Sequence[PromptResponse],
                   seed: int = 0) -> list[PromptResponse]:
    """One member of ``pool`` per target (while the pool lasts), each the unused one whose prompt
    length is nearest the target's; ties go by a seeded order, so the choice is fixed."""
    picks = matched_picks([len(c.prompt) for c in pool], [len(t.prompt) for t in targets], seed)
    return [pool[i] for i in picks]


def matched_picks(pool_lengths: Sequence[int], target_lengths: Sequence[int], seed: int = 0) -> list[int]:
    """``matched_sample`` on prompt lengths alone: the indices into the pool it picks."""
    n = len(pool_lengths)
    order = list(range(n))
    random.Random(f"memorisation-match:{seed}").shuffle(order)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    lengths = np.asarray(pool_lengths, dtype=np.int64)
    taken = np.zeros(n, dtype=bool)
    out: list[int] = []
    for t in target_lengths[:n]:
        # nearest length first, then the seeded rank (unique): one key, gap * n + rank
        key = np.abs(lengths - int(t)) * n + rank
        key[taken] = np.iinfo(np.int64).max
        best = int(np.argmin(key))
        taken[best] = True
        out.append(best)
    return out


def ngram_overlap(answer: str, response: str, n: int = NGRAM) -> float:
    """Share of ``response``'s word n-grams (one gram of all its words when it has fewer than
    ``n``) that occur in ``answer``."""
    ref, got = response.split(), answer.split()
    if not ref:
        return 0.0
    k = min(n, len(ref))
    grams = {tuple(ref[i : i + k]) for i in range(len(ref) - k + 1)}
    have = {tuple(got[i : i + k]) for i in range(len(got) - k + 1)}
    return len(grams & have) / len(grams)


class MemorisationCheck:
    """The memorisation metrics of one job's data, measured on any model by :meth:`measure`.

    ``nll_sums(model, seqs, masks) -> per-sequence summed NLL`` and ``decode(ids) -> text`` come
    from the evaluator, so the losses and texts are those of the other metrics."""

    def __init__(self, train_examples: Sequence[Example], heldout_examples: Sequence[Example], *,
                 block_size: int, halt_ids: Sequence[int], batch_size: int, nll_sums, decode,
                 sample_size: int = SAMPLE_SIZE) -> None:
        self.block_size, self.halt_ids, self.batch_size = block_size, tuple(halt_ids), batch_size
        self.nll_sums, self.decode = nll_sums, decode
        held = [c for c in map(last_response, list(heldout_examples)[:sample_size])
                if c is not None and self._fits(len(c.prompt), len(c.response))]
        # The pool is every training conversation whose last answer fits, known by its index and
        # prompt length; only the sampled ones are cut (the training set may be huge).
        starts = np.zeros(len(train_examples), dtype=np.int64)
        fits = np.zeros(len(train_examples), dtype=bool)
        for i, e in enumerate(train_examples):
            span = response_span(e)
            if span is not None and self._fits(span[0], span[1] - span[0]):
                starts[i], fits[i] = span[0], True
        pool = np.flatnonzero(fits)
        # The training sample mirrors the held-out one prompt length for prompt length, so the
        # two compare the same kinds of questions (held-out sets need not mix tasks as training
        # does); without held-out prompts it is a plain fixed sample.
        picks = (matched_picks(starts[pool], [len(c.prompt) for c in held]) if held
                 else fixed_sample(range(len(pool)), sample_size))
        self.samples = {"train": [last_response(train_examples[int(pool[k])]) for k in picks], "heldout": held}

    def _fits(self, n_prompt: int, n_response: int) -> bool:
        # room to generate the whole response and one more token (an answer that runs on)
        return n_prompt + n_response + 1 <= self.block_size + 1

    def _answers(self, model: GPT, items: list[PromptResponse]) -> list[list[int]]:
        out: list[list[int]] = [[] for _ in items]
        order = sorted(range(len(items)), key=lambda i: len(items[i].prompt))
        for b in range(0, len(order), self.batch_size):
            idx = order[b : b + self.batch_size]
            prompts = [items[i].prompt for i in idx]
            # each row stops at the context's end by itself: a long prompt in the batch must
            # not shorten the others' answers
            max_new = max(len(items[i].response) for i in idx) + 1
            gens = generate(model, prompts, max_new, stop_ids=self.halt_ids, temperature=0.0)
            for i, new in zip(idx, gens):
                out[i] = list(new)
        return out

    def _loss(self, model: GPT, items: list[PromptResponse]) -> float:
        sums = self.nll_sums(model, [c.ids for c in items], [c.mask for c in items])
        return float(sums.sum() / sum(int(c.mask.sum()) for c in items))

    def measure(self, model: GPT) -> dict[str, float]:
        metrics: dict[str, float] = {}
        losses = {}
        for name, items in self.samples.items():
            if not items:
                continue
            answers = self._answers(model, items)
            exact = [a == c.response for a, c in zip(answers, items)]
            overlap = [ngram_overlap(self.decode(a), self.decode(c.response)) for a, c in zip(answers, items)]
            metrics[f"memorised_exact_{name}"] = float(np.mean(exact))
            metrics[f"memorised_ngram_{name}"] = float(np.mean(overlap))
            metrics[f"memorised_n_{name}"] = len(items)
            losses[name] = self._loss(model, items)
        if len(losses) == 2:
            metrics["memorised_loss_gap"] = losses["heldout"] - losses["train"]
        return metrics
