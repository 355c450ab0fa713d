"""Evaluation of a model: what SFT changed (manners) and what it cost (forgetting).

Metrics (each absent when its data is absent, never a fake 0):
- ``raw_loss``: mean next-token loss on held-out pre-training text. Its rise after SFT is
  catastrophic forgetting.
- ``raw_nats_per_byte`` (+ ``_se``, its standard error over the windows): the same windows'
  loss per byte of text, which compares across
  tokenizers (``raw_loss`` is per token: with BPE a token holds several bytes).
- ``response_loss``: mean loss on the assistant tokens of held-out conversations.
- ``follow_rate``: share of held-out prompts where greedy generation produced a non-empty answer
  and ended the assistant turn with the template's end marker, without starting a new turn and
  without running to the token limit. On held-out conversations of files (reference answers, no
  answer key) it counts only the prompts whose reference answer fits the generation room, so a
  long answer cut off by the block is no failure; ``follow_rate_n`` is how many.
- ``response_nats_per_byte`` / ``rouge_l`` (+ ``_n``): see ``freeform``; their intervals and the
  paired base -> tuned changes are in summary.json's ``free_form``. A metric measured on fewer
  than half of its items is absent, with the reason in ``Evaluator.not_measured``.
- ``answer_acc`` / ``knowledge_acc``: share of greedy answers judged correct by the item's rule
  (held-out questions / the knowledge probe).
- ``answer_mc_acc`` / ``knowledge_mc_acc``: share of items where the reference response has the
  highest log-probability among the item's candidates (reference plus distractors). This needs no
  generation, so it also measures what a base model knows before it can follow a chat format.
- ``answer_acc_multi_turn``: ``answer_acc`` over the held-out items that are the second turn of
  a conversation (absent when there are none).
- ``answer_acc_long_prompt`` / ``answer_acc_short_prompt``: ``answer_acc`` over the held-out
  questions asked with / without a long lead-in (world ``long_prompt_fraction``; absent otherwise).
- ``system_format_acc``: share of held-out items whose system prompt sets the answer format
  ("Answer in one word." / "Answer in capital letters." / "Answer with a full sentence.") where
  the greedy answer has that format (absent when there are none).
- ``memorised_*``: greedy answers on a fixed sample of training prompts and on held-out prompts
  against their responses, and the train/held-out loss gap (:mod:`.memorisation`; absent when
  the evaluator is given no training examples).
- ``base_knowledge_sft`` / ``base_knowledge_probe``: share of the asked facts (of the entities
  the SFT data asks about / of the probe entities) that greedy completion of the pre-training
  phrasing gets right, with no chat template: "The capital of X is" -> " Y". What the model
  knows, whether or not it can answer a question about it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..data import EvalItem, Example, render_prompt
from ..data.fit import answer_fits
# the one rule for format-setting system prompts, shared with the report
from ..data.world.items import FORMAT_STYLES, format_obeyed as obeys_format  # noqa: F401 - obeys_format is public
from ..nn import GPT, generate
from ..nn.continuations import continuation_logprobs
from ..tokenizer import ByteTokenizer
from . import freeform
from .memorisation import MemorisationCheck


def _pad(seqs: Sequence[np.ndarray], pad_id: int) -> np.ndarray:
    T = max(len(s) for s in seqs)
    out = np.full((len(seqs), T), pad_id, dtype=np.int32)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return out


def masked_nll_sums(model: GPT, seqs: Sequence[np.ndarray], masks: Sequence[np.ndarray],
                    batch_size: int, pad_id: int) -> np.ndarray:
    """Per sequence: sum of -log p(token) over the tokens whose mask is 1 (mask aligned with ids)."""
    out = np.zeros(len(seqs), dtype=np.float64)
    order = np.argsort([len(s) for s in seqs], kind="stable")  # similar lengths together: less padding
    for b in range(0, len(order), batch_size):
        idx = order[b : b + batch_size]
        ids = _pad([seqs[i] for i in idx], pad_id)
        m = _pad([np.asarray(masks[i], dtype=np.int32) for i in idx], 0)
        nll = model.token_nll(ids[:, :-1], ids[:, 1:])
        out[idx] = (nll.astype(np.float64) * m[:, 1:]).sum(axis=1)
    return out


@dataclass
class Generation:
    prompt: str
    text: str
    ended: bool  # ended with the template's end-of-turn marker
    followed: bool
    reference: str | None = None  # the held-out conversation's own answer, when it has one


class Evaluator:
    def __init__(self, *, template: Any, val_examples: list[Example], heldout_tokens: np.ndarray,
                 eval_items: list[EvalItem], probe_items: list[EvalItem], follow_prompts: list,
                 block_size: int, max_items: int, max_new_tokens: int, raw_windows: int,
                 batch_size: int, fact_completions: Sequence[Any] = (), repetition_penalty: float = 1.0,
                 no_repeat_ngram: int = 0, train_examples: Sequence[Example] = (),
                 periodic_items: int = 0) -> None:
        self.tok = getattr(template, "tok", None) or ByteTokenizer()  # the job's tokenizer
        self.template = template
        self.block_size = block_size
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.periodic_items = int(periodic_items)  # 0: periodic evaluations use every item
        self.decoding = {"repetition_penalty": float(repetition_penalty), "no_repeat_ngram": int(no_repeat_ngram)}
        self.val = val_examples[:max_items]
        self.raw = self._windows(heldout_tokens, raw_windows)
        # Items whose prompt leaves no room for an answer in the context window cannot be
        # scored: they are left out (and counted) rather than scored as failures.
        self.skipped: dict[str, int] = {}
        self.eval_items = self._fitting("answer", eval_items)[:max_items]
        self.probe_items = self._fitting("knowledge", probe_items)[:max_items]
        self.follow_considered: int | None = None  # held-out prompts with references, before the fit
        self.follow_prompts = self._follow_set(follow_prompts[:max_items]) if _have_references(follow_prompts) \
            else self._fitting("follow", follow_prompts)[:max_items]
        self.item_scores: dict[str, list] = {}  # per item, of the last evaluate(): paired comparisons
        self.not_measured: dict[str, str] = {}  # metric -> why it is absent (last evaluate())
        self.counts: dict[str, Any] = {}  # items scored and counted, of the last evaluate() (``scored_counts``)
        self.stop_ids = tuple(template.stop_ids)
        # Any special token ends generation: a model that emits <|im_start|> is opening a new turn.
        self.halt_ids = tuple(sorted(set(self.stop_ids) | set(self.tok.special_tokens.values())))
        self.new_turn = [list(m) for m in template.new_turn_markers]
        # every asked fact, not capped by max_items: the metric is a share of all of them
        self.facts = [f for f in fact_completions
                      if len(self.tok.encode(f.prompt)) + len(self.tok.encode(f.answer)) + 3 <= block_size]
        self.memorisation = MemorisationCheck(
            train_examples, self.val if train_examples else [], block_size=block_size,
            halt_ids=self.halt_ids, batch_size=batch_size, decode=lambda ids: self.tok.decode(ids, skip_special=True),
            nll_sums=lambda m, seqs, masks: masked_nll_sums(m, seqs, masks, batch_size, self.tok.pad_id))

    def _prompt_part(self, x: Any) -> Any:
        return x.prompt if isinstance(x, EvalItem) else x

    def _fitting(self, name: str, items: list) -> list:
        room = min(16, self.max_new_tokens)
        kept = []
        for x in items:
            n_prompt = len(render_prompt(self._prompt_part(x), self.template))
            longest = max((len(self.tok.encode(c)) for c in x.choices()), default=0) + 1 \
                if isinstance(x, EvalItem) else room
            if n_prompt + max(room, longest) <= self.block_size + 1:
                kept.append(x)
        self.skipped[name] = len(items) - len(kept)
        return kept

    def _follow_set(self, prompts: list) -> list:
        """The held-out prompts whose reference answer fits the generation room."""
        kept = [p for p in prompts if answer_fits(render_prompt(p, self.template), p.meta["reference"],
                                                   self.block_size, self.max_new_tokens, self.tok)]
        self.follow_considered = len(prompts)
        self.skipped["follow"] = len(prompts) - len(kept)
        return kept

    def _windows(self, tokens: np.ndarray, n: int) -> list[np.ndarray]:
        L = self.block_size + 1
        starts = range(0, max(len(tokens) - L + 1, 0), L)
        return [tokens[s : s + L] for s in list(starts)[:n]]

    # ---- losses -------------------------------------------------------------------------
    def raw_losses(self, model: GPT) -> tuple[float | None, list[float]]:
        """(mean next-token loss over the held-out windows, each window's mean)."""
        if not self.raw:
            return None, []
        masks = [np.ones(len(w), dtype=np.int32) for w in self.raw]
        for m in masks:
            m[0] = 0  # the first token has no context; it is never a target
        sums = masked_nll_sums(model, self.raw, masks, self.batch_size, self.tok.pad_id)
        counts = [int(m.sum()) for m in masks]
        self._raw_sums = sums
        return float(sums.sum() / sum(counts)), [float(s) / c for s, c in zip(sums, counts)]

    def raw_nats_per_byte(self) -> float | None:
        """Nats per byte of text over the held-out windows of the last ``raw_losses``: the loss
        that compares across tokenizers (each target token counts the bytes it stands for; the
        end-of-text id between documents costs nats, not bytes)."""
        sums = getattr(self, "_raw_sums", None)
        if sums is None or not self.raw:
            return None
        n_bytes = sum(int(self.tok.byte_lengths[w[1:]].sum()) for w in self.raw)
        return float(sums.sum() / n_bytes) if n_bytes else None

    def raw_nats_per_byte_se(self) -> float | None:
        """The standard error of ``raw_nats_per_byte`` over its held-out windows (the ratio
        estimator's: each window's nats against its bytes), so that two models' held-out text
        losses per byte, on whatever tokens, are compared under the noise standard."""
        sums = getattr(self, "_raw_sums", None)
        if sums is None or len(self.raw) < 2:
            return None
        s = np.asarray(sums, dtype=np.float64)
        b = np.asarray([int(self.tok.byte_lengths[w[1:]].sum()) for w in self.raw], dtype=np.float64)
        if b.sum() <= 0:
            return None
        r = s.sum() / b.sum()
        n = len(s)
        return float(np.sqrt(((s - r * b) ** 2).sum() / (n * (n - 1))) / b.mean())

    def raw_loss(self, model: GPT) -> float | None:
        return self.raw_losses(model)[0]

    def response_losses(self, model: GPT) -> tuple[float | None, list[float | None]]:
        """(mean loss per trained token over the held-out answers, each answer's nats per byte)."""
        exs = [e for e in self.val if e.mask.sum() > 0]
        if not exs:
            return None, []
        sums = masked_nll_sums(model, [e.ids for e in exs], [e.mask for e in exs], self.batch_size,
                               self.tok.pad_id)
        # targets are ids[1:] where mask[1:] is set, each counting the bytes of text it stands for;
        # special tokens (the end marker) cost nats, not bytes
        lengths = self.tok.byte_lengths
        n_bytes = [int((lengths[e.ids[1:]] * (e.mask[1:] > 0)).sum()) for e in exs]
        return (float(sums.sum() / sum(int(e.mask.sum()) for e in exs)),
                freeform.per_byte_losses(sums, n_bytes))

    def response_loss(self, model: GPT) -> float | None:
        return self.response_losses(model)[0]

    # ---- generation ---------------------------------------------------------------------
    def _contains(self, ids: list[int], marker: list[int]) -> bool:
        n = len(marker)
        return n > 0 and any(ids[i : i + n] == marker for i in range(len(ids) - n + 1))

    def generate(self, model: GPT, prompts: list) -> list[Generation]:
        encoded = [render_prompt(p, self.template) for p in prompts]
        out: list[Generation | None] = [None] * len(encoded)
        # Similar lengths share a batch, so a long prompt does not shorten the others' answers.
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        for b in range(0, len(order), self.batch_size):
            idx = order[b : b + self.batch_size]
            chunk = [encoded[i] for i in idx]
            room = min(self.max_new_tokens, self.block_size - max(len(c) for c in chunk))
            gens = generate(model, chunk, max(room, 1), stop_ids=self.halt_ids, temperature=0.0,
                            **self.decoding)
            for i, ids, new in zip(idx, chunk, gens):
                ended = bool(new) and new[-1] in self.stop_ids
                body = new[:-1] if ended else new
                text = self.tok.decode(body, skip_special=True)
                followed = ended and bool(text.strip()) and self.template.new_turn_at(list(body)) is None
                meta = getattr(prompts[i], "meta", None) or {}
                out[i] = Generation(prompt=self.tok.decode(ids), text=text, ended=ended, followed=followed,
                                    reference=meta.get("reference"))
        return out  # type: ignore[return-value]

    def mc_accuracy(self, model: GPT, items: list[EvalItem]) -> float | None:
        """Share of items whose reference (first choice) has the highest log-probability, strictly."""
        if not items:
            return None
        end = self.stop_ids[0]
        correct = 0
        # Each item's prompt runs once and its candidates extend the cached prompt (fits: see
        # _fitting). The tokens every candidate of an item begins with ("The capital of X is")
        # join the prompt: their log-probability is the same for every candidate, so the
        # ranking is decided by the rest of each candidate alone.
        prompts, conts = [], []
        for it in items:
            cands = [self.tok.encode(c) + [end] for c in it.choices()]
            k = _shared_prefix_len(cands)
            prompts.append(render_prompt(it.prompt, self.template) + cands[0][:k])
            conts.append([c[k:] for c in cands])
        order = np.argsort([len(q) for q in prompts], kind="stable")  # similar lengths: less padding
        for b in range(0, len(order), self.batch_size):
            idx = order[b : b + self.batch_size]
            for s in continuation_logprobs(model, [prompts[i] for i in idx], [conts[i] for i in idx]):
                correct += int(np.argmax(s) == 0 and (len(s) == 1 or s[0] > np.max(s[1:])))
        return correct / len(items)

    # ---- base knowledge -----------------------------------------------------------------
    def complete(self, model: GPT, prompts: list[str], max_new: int) -> list[str]:
        """Greedy continuations of raw text (no template), each prompt read as a document start."""
        encoded = [[self.tok.eot_id] + self.tok.encode(p) for p in prompts]
        out = [""] * len(encoded)
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        for b in range(0, len(order), self.batch_size):
            idx = order[b : b + self.batch_size]
            gens = generate(model, [encoded[i] for i in idx], max_new, stop_ids=self.halt_ids,
                            temperature=0.0)
            for i, new in zip(idx, gens):
                out[i] = self.tok.decode(new, skip_special=True)
        return out

    @staticmethod
    def completes(text: str, answer: str) -> bool:
        """The continuation states ``answer`` as its first word (" Vaizem." / " Vaizem,")."""
        t = text.lstrip()
        return t.startswith(answer) and (len(t) == len(answer) or not t[len(answer)].isalnum())

    def base_knowledge(self, model: GPT) -> dict[str, float]:
        if not self.facts:
            return {}
        max_new = max(len(self.tok.encode(f.answer)) for f in self.facts) + 2
        texts = self.complete(model, [f.prompt for f in self.facts], max_new)
        out = {}
        for group in ("sft", "probe"):
            hits = [self.completes(t, f.answer) for f, t in zip(self.facts, texts) if f.group == group]
            if hits:
                out[f"base_knowledge_{group}"] = float(np.mean(hits))
        return out

    # ---- free-form answers (held-out conversations with a reference) -----------------------
    def _put_response_per_byte(self, per_byte: list[float | None], put) -> None:
        measured = [v for v in per_byte if v is not None]
        why = freeform.too_few("response_nats_per_byte", len(measured), len(self.val),
                               f"keep a reference byte within model.block_size={self.block_size}")
        if why:
            self.not_measured["response_nats_per_byte"] = why
            return
        self.item_scores["response_nats_per_byte"] = per_byte
        put("response_nats_per_byte", float(np.mean(measured)))
        put("response_nats_per_byte_n", float(len(measured)))

    def _free_form_answers(self, model: GPT, put, prompts: list) -> dict[str, list[Generation]]:
        """follow_rate and rouge_l over the prompts whose reference fits, or their reasons."""
        why = freeform.too_few(
            "follow_rate", len(self.follow_prompts), self.follow_considered,
            f"have a reference answer that fits the generation room (prompt + eval.max_new_tokens="
            f"{self.max_new_tokens} within model.block_size={self.block_size}); see the data_fit check")
        if why:
            self.not_measured["follow_rate"] = self.not_measured["rouge_l"] = why
            return {}
        g = self.generate(model, prompts)
        put("follow_rate", float(np.mean([x.followed for x in g])))
        put("follow_rate_n", float(len(g)))
        rouge = freeform.rouge_l_scores([x.text for x in g], [x.reference or "" for x in g])
        if rouge is None:
            self.not_measured["rouge_l"] = freeform.ROUGE_MISSING
        else:
            self.item_scores["rouge_l"] = rouge
            put("rouge_l", float(np.mean(rouge)))
            put("rouge_l_n", float(len(rouge)))
        return {"follow": g}

    # ---- all ----------------------------------------------------------------------------
    def evaluate(self, model: GPT, periodic: bool = False) -> tuple[dict, dict[str, list[Generation]]]:
        """(metrics, generations by set). Metrics without data are left out.

        ``periodic``: an evaluation during training, between the base's and the final one. The
        losses (the curves, the divergence check) use every held-out item as always; the
        generated and multiple-choice metrics use the first ``periodic_items`` items of each set
        (0: all), and memorisation and base knowledge are left to the final evaluation. The
        final metrics are those of a full evaluation either way."""
        metrics: dict[str, float] = {}
        gens: dict[str, list[Generation]] = {}
        n = self.periodic_items if periodic else 0
        eval_items, probe_items, follow_prompts = (_spread(x, n) for x in
                                                   (self.eval_items, self.probe_items, self.follow_prompts))

        def put(name: str, value: float | None) -> None:
            if value is not None:
                metrics[name] = value

        self.item_scores, self.not_measured, self.counts = {}, {}, {}
        raw, self.item_scores["raw_loss"] = self.raw_losses(model)
        put("raw_loss", raw)
        put("raw_nats_per_byte", self.raw_nats_per_byte())
        put("raw_nats_per_byte_se", self.raw_nats_per_byte_se())
        pooled, per_byte = self.response_losses(model)
        put("response_loss", pooled)
        self._put_response_per_byte(per_byte, put)
        if eval_items:
            g = self.generate(model, [it.prompt for it in eval_items])
            gens["answer"] = g
            put("follow_rate", float(np.mean([x.followed for x in g])))
            put("answer_acc", float(np.mean([it.is_correct(x.text) for it, x in zip(eval_items, g)])))
            put("answer_mc_acc", self.mc_accuracy(model, eval_items))
            multi = [it.is_correct(x.text) for it, x in zip(eval_items, g) if it.meta.get("multi_turn")]
            if multi:
                put("answer_acc_multi_turn", float(np.mean(multi)))
            for flag, name in ((True, "answer_acc_long_prompt"), (False, "answer_acc_short_prompt")):
                part = [it.is_correct(x.text) for it, x in zip(eval_items, g)
                        if it.meta.get("long_prompt") is flag]
                if part:
                    put(name, float(np.mean(part)))
            styled = [obeys_format(it.meta["system_style"], x.text) for it, x in zip(eval_items, g)
                      if it.meta.get("system_style") in FORMAT_STYLES]
            if styled:
                put("system_format_acc", float(np.mean(styled)))
            self.counts = scored_counts(eval_items, g)
        elif self.follow_considered is not None:
            gens.update(self._free_form_answers(model, put, follow_prompts))
        elif follow_prompts:
            g = self.generate(model, follow_prompts)
            gens["follow"] = g
            put("follow_rate", float(np.mean([x.followed for x in g])))
        if probe_items:
            g = self.generate(model, [it.prompt for it in probe_items])
            gens["knowledge"] = g
            put("knowledge_acc", float(np.mean([it.is_correct(x.text) for it, x in zip(probe_items, g)])))
            put("knowledge_mc_acc", self.mc_accuracy(model, probe_items))
        if not periodic:
            metrics.update(self.base_knowledge(model))
            metrics.update(self.memorisation.measure(model))
        return metrics, gens


def scored_counts(eval_items: list[EvalItem], g: list[Generation]) -> dict[str, Any]:
    """What the answer metrics counted, for summary.json's ``scored``: the held-out questions
    scored (``answer``), the second turns among them and how many were answered right
    (``multi_turn``), and per format a system prompt set, how many answers obeyed it
    (``system_format``). Rates alone lose these counts (a rate of the format-prompted items
    pools the formats); each part only when its items exist."""
    out: dict[str, Any] = {"answer": len(eval_items)}
    multi = [it.is_correct(x.text) for it, x in zip(eval_items, g) if it.meta.get("multi_turn")]
    if multi:
        out["multi_turn"] = {"correct": int(sum(bool(v) for v in multi)), "n": len(multi)}
    styles: dict[str, dict[str, int]] = {}
    for it, x in zip(eval_items, g):
        st = it.meta.get("system_style")
        if st in FORMAT_STYLES:
            c = styles.setdefault(st, {"obeyed": 0, "n": 0})
            c["obeyed"] += int(bool(obeys_format(st, x.text)))
            c["n"] += 1
    if styles:
        out["system_format"] = {st: styles[st] for st in FORMAT_STYLES if st in styles}
    return out


def _spread(items: list, n: int) -> list:
    """``n`` of ``items`` spread evenly over the list (all of them when n is 0 or covers it)."""
    if n <= 0 or n >= len(items):
        return items
    return [items[(i * len(items)) // n] for i in range(n)]


def _shared_prefix_len(seqs: list[list[int]]) -> int:
    """Tokens all of ``seqs`` begin with, leaving each at least one token of its own."""
    k, limit = 0, min(len(x) for x in seqs) - 1
    while k < limit and all(x[k] == seqs[0][k] for x in seqs):
        k += 1
    return k


def _have_references(prompts: list) -> bool:
    return bool(prompts) and all(isinstance(getattr(p, "meta", None), dict) and
                                 isinstance(p.meta.get("reference"), str) for p in prompts)


def sample_rows(base: dict[str, list[dict]], tuned: dict[str, list[Generation]], items: dict[str, list],
                n: int) -> list[dict]:
    """Base vs tuned generations for samples.jsonl: up to ``n``, spread over the sets."""
    rows = []
    sets = [s for s in ("answer", "knowledge", "follow") if s in tuned]
    per = {s: max(1, n // max(len(sets), 1)) for s in sets}
    for s in sets:
        for i, g in enumerate(tuned[s][: per[s]]):
            seq = items.get(s) or []
            item = seq[i] if i < len(seq) else None
            b = base.get(s, [])
            rows.append({
                "set": s,
                "task": getattr(item, "task", s),
                "prompt": g.prompt,
                "reference": g.reference if g.reference is not None else getattr(item, "reference", None),
                "base": b[i]["text"] if i < len(b) else None,
                "sft": g.text,
                "sft_followed": g.followed,
                "base_followed": b[i]["followed"] if i < len(b) else None,
            })
    return rows[:n] if n else []
