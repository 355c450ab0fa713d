"""Instruction items: questions about the world, their reference answers and distractors.

An ``ItemSpec`` is a conversation prompt, the response SFT trains on, the reference a greedy
answer is judged by, and a pool of same-type wrong answers; ``finish`` turns it into an
``EvalItem``. ``ItemMaker`` generates specs for one set of entities (SFT entities for the
training and held-out questions; all entities for the knowledge probe).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from ..conversation import Conversation, Turn
from ..evalitem import EvalItem, _contains, words
from ..templates import TEMPLATE_NAMES, render, render_prompt
from .config import WorldConfig

#: The system prompts' answer formats (``SYSTEMS`` also has a neutral prompt).
FORMAT_STYLES = ("word", "caps", "full")
from .vocab import (ANSWERS, ARITH_A, ARITH_Q, LIST_Q, OPS, QUESTIONS, REVERSE_Q, SYSTEMS,
                    UPPER_Q, WORDS, Country, Decoy, Person, count_list)


@dataclass
class ItemSpec:
    """An instruction item: prompt turns, the response, and how to score it."""

    turns: list[Turn]          # up to and including the final user turn
    response: str
    reference: str
    pool: list[str]            # candidate distractors (same type), reference excluded later
    task: str
    match: str = "word"
    case_sensitive: bool = False
    meta: dict = field(default_factory=dict)   # the fact asked: kind + its arguments

    def conversation(self) -> Conversation:
        return Conversation(self.turns + [Turn("assistant", self.response)])

    def prompt(self) -> Conversation:
        return Conversation(list(self.turns))

    def prompt_key(self):
        return tuple((t.role, t.content) for t in self.turns)


def apply_style(style: str, full: str, answer: str) -> tuple[str, str]:
    """(response, reference) for an answer style."""
    if style == "word":
        return answer, answer
    if style == "caps":
        return full.upper(), answer.upper()
    return full, answer


def format_obeyed(style: str, text: str) -> bool:
    """Whether an answer has the format a system prompt of ``style`` asks for: one word, capital
    letters (every letter upper case), or a full sentence (three words or more, ending with a
    full stop). The evaluator's ``system_format_acc`` and the report both use it."""
    t = text.strip()
    if not t:
        return False
    if style == "word":
        return len(t.rstrip(".").split()) == 1
    if style == "caps":
        return any(c.isalpha() for c in t) and t == t.upper()
    return len(t.split()) >= 3 and t.endswith(".")


def near_numbers(r: random.Random, x: int, exclude: set[int], n: int) -> list[int]:
    out = []
    d = 1
    while len(out) < n and d < 1000:
        for v in (x - d, x + d):
            if v >= 0 and v != x and v not in exclude:
                out.append(v)
        d += 1
    return out


#: Lead-ins that lengthen a question without changing what it asks (``long_prompt_fraction``).
PREAMBLES = (
    "I am writing a short school report about the countries of the world.",
    "My friend and I talked about geography last night and did not agree.",
    "Please help me with a question from the quiz we are making for class.",
    "I have been reading an old travel book and one detail made me curious.",
)


#: Second questions that refer back to the first turn's country.
FOLLOW_UPS = {
    "capital": ("And its capital?", "Its capital?", "What is its capital?", "And the capital?",
                "Its capital city?"),
    "language": ("And its language?", "Its language?", "What is its language?", "And the language?",
                 "Its main language?"),
}


def fits(conv: Conversation, max_tokens: int) -> bool:
    """The conversation renders to at most ``max_tokens`` ids with every template."""
    return all(len(render(conv, name)[0]) <= max_tokens for name in TEMPLATE_NAMES)


def choices_fit(item: EvalItem, max_tokens: int) -> bool:
    """The prompt plus the longest candidate response plus its end id fit, every template."""
    longest = max(len(c.encode("utf-8")) for c in item.choices())
    return all(len(render_prompt(item.prompt, name)) + longest + 1 <= max_tokens
               for name in TEMPLATE_NAMES)


def finish(spec: ItemSpec, r: random.Random, n: int) -> EvalItem:
    """An EvalItem from a spec: ``n`` distractors drawn from the spec's pool, none equal to the
    reference and none that the correct response itself contains (it would be unscorable)."""
    cs = spec.case_sensitive
    resp_words = words(spec.response, cs)
    seen = {spec.reference if cs else spec.reference.lower()}
    candidates = []
    for d in spec.pool:
        key = d if cs else d.lower()
        if key in seen:
            continue
        seen.add(key)
        if spec.match == "word" and _contains(resp_words, words(d, cs)):
            continue
        candidates.append(d)
    picked = r.sample(candidates, min(n, len(candidates)))
    return EvalItem(spec.prompt(), spec.reference, spec.response, picked, spec.task,
                    spec.match, spec.case_sensitive, dict(spec.meta))


class ItemMaker:
    """Generators of instruction items over a set of entities."""

    def __init__(self, rng: random.Random, cfg: WorldConfig, countries: list[Country],
                 people: list[Person], *, arith: list[tuple[str, int, int]], words: list[str],
                 decoys: list[Decoy], decoy_pool: list[Decoy], capitals: list[str],
                 languages: list[str], years: list[int]):
        self.r, self.cfg = rng, cfg
        self.countries, self.people = countries, people
        self.arith, self.words = arith, words
        self.decoys = decoys            # invented countries to ask about in context
        self.decoy_pool = decoy_pool    # their distractors
        self.capitals, self.languages, self.years = capitals, languages, years

    def _answer_style(self, style: str) -> str:
        return style if style != "word" or self.cfg.one_word_answers else "full"

    def _system(self, allowed: tuple[str, ...], force: str | None = None) -> tuple[list[Turn], str | None]:
        if force is not None:
            return [Turn("system", next(t for t, st in SYSTEMS if st == force))], force
        r = self.r
        if r.random() >= self.cfg.system_fraction:
            return [], None
        text, style = r.choice([s for s in SYSTEMS if s[1] in allowed])
        return [Turn("system", text)], style

    def format_siblings(self, spec: ItemSpec, styles: tuple[str, ...] = FORMAT_STYLES) -> list[ItemSpec]:
        """The same fact question (entity, phrasing) under each format-setting system prompt in
        ``styles`` other than its own: only the system prompt tells them apart."""
        meta = spec.meta
        if spec.task not in ("capital", "language", "birth_year") or "phrasing" not in meta:
            return []
        pool = self.people if spec.task == "birth_year" else self.countries
        entity = next(e for e in pool if e.name == meta["entity"])
        return [self.fact(spec.task, entity, meta["phrasing"], force_system=st)
                for st in styles if st != meta.get("system_style")]

    # fact questions --------------------------------------------------------------------
    def fact(self, kind: str, entity=None, phrasing: int | None = None, allow_system=True,
             force_system: str | None = None) -> ItemSpec:
        r = self.r
        if kind == "birth_year":
            e = entity or r.choice(self.people)
            fmt, answer, pool = {"p": e.name}, str(e.year), [str(y) for y in self.years]
        else:
            e = entity or r.choice(self.countries)
            fmt = {"c": e.name}
            answer, pool = ((e.capital, self.capitals) if kind == "capital" else (e.language, self.languages))
        qs = QUESTIONS[kind]
        index = phrasing if phrasing is not None else r.randrange(len(qs))
        q, style = qs[index]
        style = self._answer_style(style)
        sys_turns, sys_style = (self._system(("neutral", "full", "word", "caps"), force_system)
                                if allow_system else ([], None))
        if sys_style in ("full", "word"):
            style = sys_style
        elif sys_style == "caps":
            style = "caps" if style == "full" else "caps_word"
        full = ANSWERS[kind].format(x=answer, **fmt)
        if style == "caps_word":
            resp, ref = answer.upper(), answer.upper()
            pool = [x.upper() for x in pool]
        else:
            resp, ref = apply_style(style, full, answer)
            if style == "caps":
                pool = [x.upper() for x in pool]
        user = q.format(**fmt)
        meta = {"fact": kind, "entity": e.name}
        # drawn only when the setting is on, so worlds without it keep their random stream;
        # standalone questions only (not the probe's, not a conversation's first turn)
        if self.cfg.long_prompt_fraction > 0 and allow_system and not sys_turns:
            meta["long_prompt"] = r.random() < self.cfg.long_prompt_fraction
            if meta["long_prompt"]:
                user = r.choice(PREAMBLES) + " " + user
        turns = sys_turns + [Turn("user", user)]
        if sys_style:
            meta["system_style"] = sys_style
            if self.cfg.system_contrast or force_system:
                meta["phrasing"] = index  # to ask the same question under the other prompts
        return ItemSpec(turns, resp, ref, list(pool), kind, meta=meta)

    # in-context facts ------------------------------------------------------------------
    def context(self) -> ItemSpec:
        """A fact stated in the question about an invented country that exists nowhere else:
        the answer is copied from the prompt (practice in copying names into the answer)."""
        r = self.r
        c, cap, lang = r.choice(self.decoys)
        kind = r.choice(["capital", "language"])
        if kind == "capital":
            stmt = r.choice(["{x} is the capital of {c}.", "The capital of {c} is {x}."])
            answer, pool = cap, [d[1] for d in self.decoy_pool]
        else:
            stmt = r.choice(["People in {c} speak {x}.", "{x} is the language of {c}."])
            answer, pool = lang, [d[2] for d in self.decoy_pool]
        # no system prompt: the statement already makes these the longest prompts
        q, style = r.choice(QUESTIONS[kind])
        style = self._answer_style(style)
        resp, ref = apply_style(style, ANSWERS[kind].format(c=c, x=answer), answer)
        user = stmt.format(c=c, x=answer) + " " + q.format(c=c)
        return ItemSpec([Turn("user", user)], resp, ref, pool, "context",
                        meta={"fact": "context_" + kind, "entity": c})

    # closed sets -----------------------------------------------------------------------
    def arithmetic(self, allow_system=True) -> ItemSpec:
        r = self.r
        op, a, b = r.choice(self.arith)
        x = OPS[op](a, b)
        q = r.choice(ARITH_Q).format(a=a, op=op, b=b)
        sys_turns, style = (self._system(("neutral", "full", "word", "caps")) if allow_system
                            else ([], None))
        resp, ref = apply_style(style or "full", ARITH_A.format(a=a, op=op, b=b, x=x), str(x))
        pool = near_numbers(r, x, exclude={a, b}, n=3 * self.cfg.n_distractors)
        meta = {"fact": op, "a": a, "b": b, **({"system_style": style} if style else {})}
        return ItemSpec(sys_turns + [Turn("user", q)], resp, ref, [str(v) for v in pool], "arithmetic",
                        meta=meta)

    def word(self, task: str, allow_system=True) -> ItemSpec:
        r = self.r
        w = r.choice(self.words)
        sys_turns, _ = self._system(("neutral", "word")) if allow_system else ([], None)
        if task == "reverse":
            q, ans = r.choice(REVERSE_Q).format(w=w), w[::-1]
            pool = [w] + [v[::-1] for v in WORDS if v != w]
            return ItemSpec(sys_turns + [Turn("user", q)], ans, ans, pool, "reverse",
                            meta={"fact": "reverse", "word": w})
        q, ans = r.choice(UPPER_Q).format(w=w), w.upper()
        pool = [w, w.capitalize()] + [v.upper() for v in WORDS if v != w]
        return ItemSpec(sys_turns + [Turn("user", q)], ans, ans, pool, "uppercase", case_sensitive=True,
                        meta={"fact": "upper", "word": w})

    def listing(self, allow_system=True) -> ItemSpec:
        r = self.r
        s = r.randint(0, 15)
        e = s + r.randint(2, 4)
        q = r.choice(LIST_Q).format(s=s, e=e)
        ans = count_list(s, e)
        sys_turns, _ = self._system(("neutral",)) if allow_system else ([], None)
        shifts = sorted(((ds, de) for ds in range(-3, 4) for de in range(-3, 4) if ds or de),
                        key=lambda t: (abs(t[0]) + abs(t[1]), t))
        pool = [count_list(s + ds, e + de) for ds, de in shifts
                if s + ds >= 0 and e + de > s + ds][: 2 * self.cfg.n_distractors]
        return ItemSpec(sys_turns + [Turn("user", q)], ans, ans, pool, "list", match="exact",
                        meta={"fact": "count", "a": s, "b": e})

    # two exchanges ---------------------------------------------------------------------
    def multi_turn(self) -> ItemSpec:
        """Two exchanges; the second question depends on the first (the country, the number) or
        is a second question of the same kind. Closed-set kinds only when those tasks are on."""
        r = self.r
        kinds = ["fact"] + (["arith", "word", "mixed"] if self.cfg.closed_sets() else [])
        kind = r.choice(kinds)
        if kind == "fact":
            # a terse first exchange, then one of several follow-ups that refer back to the
            # country (short: the two exchanges must fit max_tokens in every template)
            c = r.choice(self.countries)
            first, second = r.sample(["capital", "language"], 2)
            q1 = {"capital": "Capital of {c}?", "language": "Language of {c}?"}[first].format(c=c.name)
            a1 = c.capital if first == "capital" else c.language
            a2 = c.capital if second == "capital" else c.language
            pool = self.capitals if second == "capital" else self.languages
            turns = [Turn("user", q1), Turn("assistant", a1), Turn("user", r.choice(FOLLOW_UPS[second]))]
            return ItemSpec(turns, a2, a2, list(pool), second,
                            meta={"fact": second, "entity": c.name, "multi_turn": True})
        if kind == "arith":
            # both steps are facts of this generator's arithmetic set (x + k is "x plus k")
            plus = {(a, b) for op, a, b in self.arith if op == "plus" and b > 0}
            firsts = [t for t in self.arith if t[0] != "times"
                      and any((OPS[t[0]](t[1], t[2]), k) in plus for k in range(1, 10))]
            op, a, b = r.choice(firsts)
            x = OPS[op](a, b)
            k = r.choice([k for k in range(1, 10) if (x, k) in plus])
            turns = [Turn("user", f"What is {a} {op} {b}?"), Turn("assistant", str(x)),
                     Turn("user", f"Add {k} to that.")]
            y = x + k
            pool = [str(v) for v in near_numbers(r, y, exclude={k, x}, n=3 * self.cfg.n_distractors)]
            return ItemSpec(turns, str(y), str(y), pool, "arithmetic",
                            meta={"fact": "plus", "a": x, "b": k, "multi_turn": True})
        if kind == "word":
            w1, w2 = r.sample(self.words, 2)
            first, second = r.choice([("reverse", "upper"), ("upper", "reverse"),
                                      ("reverse", "reverse"), ("upper", "upper")])
            a1 = w1[::-1] if first == "reverse" else w1.upper()
            q1 = f"Reverse the word {w1}." if first == "reverse" else f"Write {w1} in capital letters."
            turns = [Turn("user", q1), Turn("assistant", a1)]
            if second == "reverse":
                turns.append(Turn("user", f"Now reverse the word {w2}."))
                ans = w2[::-1]
                pool = [w2] + [v[::-1] for v in WORDS if v != w2]
                return ItemSpec(turns, ans, ans, pool, "reverse",
                                meta={"fact": "reverse", "word": w2, "multi_turn": True})
            turns.append(Turn("user", f"Now write {w2} in capital letters."))
            ans = w2.upper()
            pool = [w2, w2.capitalize()] + [v.upper() for v in WORDS if v != w2]
            return ItemSpec(turns, ans, ans, pool, "uppercase", case_sensitive=True,
                            meta={"fact": "upper", "word": w2, "multi_turn": True})
        # mixed: a fact, then a sum
        first = self.fact(r.choice(["capital", "language"]), allow_system=False)
        second = self.arithmetic(allow_system=False)
        turns = first.turns + [Turn("assistant", first.response)] + second.turns
        return ItemSpec(turns, second.response, second.reference, second.pool, "arithmetic",
                        meta={**second.meta, "multi_turn": True})

    def sample(self, task: str) -> ItemSpec:
        if task in QUESTIONS:
            return self.fact(task)
        if task == "context":
            return self.context()
        if task == "arithmetic":
            return self.arithmetic()
        if task in ("reverse", "uppercase"):
            return self.word(task)
        if task == "list":
            return self.listing()
        if task == "multi_turn":
            return self.multi_turn()
        raise ValueError(task)
