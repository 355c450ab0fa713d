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


def last_response(example: Example) -> PromptResponse | None:
    """The example's last contiguous run of trained tokens as the response, everything before
    it as the prompt; None when nothing is trained or nothing precedes it."""
    on = np.flatnonzero(np.asarray(example.mask[1:]) > 0) + 1  # mask[0] is never a target
    if on.size == 0:
        return None
    end = int(on[-1]) + 1
    start = end - 1
    while start - 1 >= 1 and example.mask[start - 1]:
        start -= 1
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
    order = list(range(len(pool)))
    random.Random(f"memorisation-match:{seed}").shuffle(order)
    rank = {i: r for r, i in enumerate(order)}
    free = set(order)
    out = []
    for t in targets:
        if not free:
            break
        best = min(free, key=lambda i: (abs(len(pool[i].prompt) - len(t.prompt)), rank[i]))
        free.discard(best)
        out.append(pool[best])
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
        held = self._cut(list(heldout_examples)[:sample_size])
        pool = self._cut(list(train_examples))
        # The training sample mirrors the held-out one prompt length for prompt length, so the
        # two compare the same kinds of questions (held-out sets need not mix tasks as training
        # does); without held-out prompts it is a plain fixed sample.
        self.samples = {"train": matched_sample(pool, held) if held else fixed_sample(pool, sample_size),
                        "heldout": held}

    def _cut(self, examples: list[Example]) -> list[PromptResponse]:
        cut = (last_response(e) for e in examples)
        # room to generate the whole response and one more token (an answer that runs on)
        return [c for c in cut if c is not None and len(c.prompt) + len(c.response) + 1 <= self.block_size + 1]

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
