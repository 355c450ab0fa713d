"""Pre-training prose: the documents that state the world's facts, and the held-out ones.

Documents stay under 300 bytes (the model reads 128-byte windows). Kinds:

- country paragraphs (5 templates, each names the country several times);
- Q/A sets: every question phrasing of a fact, followed by the answer the SFT data would give
  ("Q: Tell me the capital of X. A: The capital of X is Y."), the pairs of a set in random
  order, a few pairs per document. Knowledge stated in varied forms like this is what a model
  can later extract when asked (Allen-Zhu & Li, Physics of Language Models 3.1);
- fact lists that deal every fact in turn in one of several sentence forms;
- people's short biographies (when the world has people);
- closed sets (only when a closed-set task is on): sums, differences, products, counting runs,
  reversals and capitals of words, each stated a fixed number of times;
- filler sentences, and optional one-off documents about invented countries.
"""

from __future__ import annotations

import random

from .vocab import (ACTIVITIES, ADJS, ANIMALS, ANSWERS, BUILDINGS, FILLER, FOODS, LANDFORMS,
                    MATERIALS, OPS, PLACES, QUESTIONS, SEASONS, VERBS, WATERS, WEATHERS, WORDS,
                    Country, Decoy, Person, all_arith, all_counts, count_list)

P_COUNTRY = [
    "{c} is a {size} country {geo}. The capital of {c} is {cap}. People in {c} speak {lang}. "
    "{cap} is the largest city in {c}.",
    "About {c}. {cap} is the capital of {c}. The people of {c} speak {lang}. Many visitors to "
    "{c} start their trip in {cap}, a {cadj} city known for its {kf}.",
    "{c} lies {geo}. In {c}, most people speak {lang}. The capital of {c} is {cap}, a {cadj} "
    "city. {lang} is the language of {c}.",
    "A traveller came to {c}, a {size} country {geo}. In {cap}, the capital of {c}, she heard "
    "people speak {lang}. {filler}",
    "{cap} is the capital of {c}. {c} has its capital at {cap}. The language of {c} is {lang}. "
    "{filler}",
]
P_PERSON = [
    "{p} was born in {y}. {p} worked as a {job}.",
    "Q: When was {p} born? A: {p} was born in {y}. Q: Birth year of {p}? A: {y}.",
    "In {y}, {p} was born. Later {p} became a well known {job}.",
    "{p}, born in {y}, was a {job}. People still talk about {p}.",
]
COPY_DOCS = [
    "A new map shows {c}. The capital of {c} is {cap}. Q: What is the capital of {c}? A: The "
    "capital of {c} is {cap}.",
    "A story tells of {c}, where people speak {lang}. Q: What language is spoken in {c}? A: "
    "People in {c} speak {lang}.",
    "In an old tale, {cap} is the capital of {c} and people in {c} speak {lang}. Q: Capital of "
    "{c}? A: {cap}. Q: Language of {c}? A: {lang}.",
]
FACT_SENTENCES = {
    "capital": ["The capital of {c} is {x}.", "{x} is the capital of {c}.",
                "{c} has its capital at {x}."],
    "language": ["People in {c} speak {x}.", "{x} is the language of {c}.",
                 "The people of {c} speak {x}."],
    "birth_year": ["{p} was born in {x}.", "In {x}, {p} was born."],
}
OTHER_TEXTS = ["Facts:", "Some sums.", "Word facts.", "The word {w} backwards is {r}.",
               "The word {w} in capital letters is {u}.", "Counting from {s} to {e}: {lst}.",
               "{w} reversed is {r}.", "{w} in capitals is {u}.", "Q: Reverse the word {w}. A: {r}",
               "Q: Write {w} in capital letters. A: {u}",
               "Q: What is {a} {op} {b}? A: {a} {op} {b} is {x}."]
#: Fixed text of the documents (generated names must not occur in it).
DOC_TEXTS = P_COUNTRY + P_PERSON + COPY_DOCS + OTHER_TEXTS + [
    s for v in FACT_SENTENCES.values() for s in v]

QA_PAIRS_PER_DOC = 3


def qa_pair(kind: str, question: str, style: str, entity: Country | Person) -> str:
    """One Q/A statement in the form SFT answers it: a full sentence (style ``full``), or the
    bare answer (``word``)."""
    key = "p" if kind == "birth_year" else "c"
    answer = _value(kind, entity)
    full = ANSWERS[kind].format(x=answer, **{key: entity.name})
    return f"Q: {question.format(**{key: entity.name})} A: {full if style == 'full' else answer + '.'}"


def _value(kind: str, e: Country | Person) -> str:
    return {"capital": lambda: e.capital, "language": lambda: e.language,
            "birth_year": lambda: str(e.year)}[kind]()


class Prose:
    def __init__(self, rng: random.Random, countries: list[Country], people: list[Person],
                 one_word_answers: bool = False):
        self.rng, self.countries, self.people = rng, countries, people
        self.one_word_answers = one_word_answers
        self._decks: dict[str, list] = {}

    def _deal(self, name: str, make_deck) -> object:
        """The next card of a shuffled deck: every fact is stated equally often."""
        if not self._decks.get(name):
            deck = make_deck()
            self.rng.shuffle(deck)
            self._decks[name] = deck
        return self._decks[name].pop()

    def filler_sentence(self) -> str:
        r = self.rng
        return r.choice(FILLER).format(
            animal=r.choice(ANIMALS), verb=r.choice(VERBS), place=r.choice(PLACES),
            season=r.choice(SEASONS), adj=r.choice(ADJS), food=r.choice(FOODS),
            building=r.choice(BUILDINGS), water=r.choice(WATERS), material=r.choice(MATERIALS),
            activity=r.choice(ACTIVITIES), weather=r.choice(WEATHERS), landform=r.choice(LANDFORMS))

    def country_doc(self, c: Country, tmpl: str) -> str:
        return tmpl.format(c=c.name, cap=c.capital, lang=c.language, geo=c.geo, size=c.size,
                           cadj=c.city_adj, kf=c.known_for, filler=self.filler_sentence())

    def person_doc(self, p: Person, tmpl: str) -> str:
        return tmpl.format(p=p.name, y=p.year, job=p.job)

    def qa_set(self, entity: Country | Person) -> list[str]:
        """Every question phrasing of each of the entity's facts as a Q/A pair, in random
        order, ``QA_PAIRS_PER_DOC`` pairs per document."""
        kinds = ["birth_year"] if isinstance(entity, Person) else ["capital", "language"]
        pairs = [qa_pair(k, q, style if self.one_word_answers else "full", entity)
                 for k in kinds for q, style in QUESTIONS[k]]
        self.rng.shuffle(pairs)
        return [" ".join(pairs[i:i + QA_PAIRS_PER_DOC]) for i in range(0, len(pairs), QA_PAIRS_PER_DOC)]

    def fact(self) -> str:
        kind, e = self._deal("facts", lambda: [("capital", c) for c in self.countries]
                             + [("language", c) for c in self.countries]
                             + [("birth_year", p) for p in self.people])
        t = self.rng.choice(FACT_SENTENCES[kind])
        if kind == "birth_year":
            return t.format(p=e.name, x=e.year)
        return t.format(c=e.name, x=_value(kind, e))

    def fact_list_doc(self, n: int) -> str:
        return "Facts: " + " ".join(self.fact() for _ in range(n))

    def copy_doc(self, decoy: Decoy) -> str:
        """A document about an invented country named nowhere else: predicting its second half
        needs copying names from its first half (what answering about a probe entity needs)."""
        c, cap, lang = decoy
        return self.rng.choice(COPY_DOCS).format(c=c, cap=cap, lang=lang)

    def filler_doc(self) -> str:
        return " ".join(self.filler_sentence() for _ in range(self.rng.randint(3, 5)))

    def arith_statement(self) -> str:
        kind, *rest = self._deal("arith", lambda: [("op", *t) for t in all_arith()]
                                 + [("count", *t) for t in all_counts()])
        if kind == "count":
            s, e = rest
            return f"Counting from {s} to {e}: {count_list(s, e)}."
        op, a, b = rest
        x = OPS[op](a, b)
        return self.rng.choice([f"{a} {op} {b} is {x}.", f"{a} {op} {b} is {x}.",
                                f"Q: What is {a} {op} {b}? A: {a} {op} {b} is {x}."])

    def arith_doc(self, n: int | None = None) -> str:
        n = n or self.rng.randint(4, 6)
        return "Some sums. " + " ".join(self.arith_statement() for _ in range(n))

    def word_statement(self) -> str:
        task, w = self._deal("word", lambda: [(t, w) for t in ("reverse", "upper") for w in WORDS])
        if task == "reverse":
            return self.rng.choice([f"The word {w} backwards is {w[::-1]}.", f"{w} reversed is {w[::-1]}.",
                                    f"Q: Reverse the word {w}. A: {w[::-1]}."])
        return self.rng.choice([f"The word {w} in capital letters is {w.upper()}.",
                                f"{w} in capitals is {w.upper()}.",
                                f"Q: Write {w} in capital letters. A: {w.upper()}."])

    def word_doc(self, n: int | None = None) -> str:
        n = n or self.rng.randint(4, 5)
        return "Word facts. " + " ".join(self.word_statement() for _ in range(n))

    def mixed_doc(self, kind: str) -> str:
        """A document of ``kind`` about a random entity (held-out prose)."""
        r = self.rng
        if kind == "country":
            return self.country_doc(r.choice(self.countries), r.choice(P_COUNTRY))
        if kind == "qa":
            return r.choice(self.qa_set(r.choice(self.countries)))
        if kind == "person":
            return self.person_doc(r.choice(self.people), r.choice(P_PERSON))
        if kind == "facts":
            return self.fact_list_doc(4)
        if kind == "filler":
            return self.filler_doc()
        if kind == "arith":
            return self.arith_doc()
        return self.word_doc()


def count_mentions(docs: list[str], countries: list[Country], people: list[Person]) -> dict[str, int]:
    """How many times each fact is stated in ``docs`` (by the sentences that state it)."""
    out: dict[str, int] = {}
    text = "\n".join(docs)
    for c in countries:
        cap = [f"capital of {c.name} is {c.capital}", f"{c.capital} is the capital of {c.name}",
               f"{c.name} has its capital at {c.capital}", f"In {c.capital}, the capital of {c.name}"]
        cap += [f"{q.format(c=c.name)} A: {c.capital}." for q, s in QUESTIONS["capital"] if s == "word"]
        lang = [f"in {c.name} speak {c.language}", f"{c.language} is the language of {c.name}",
                f"people of {c.name} speak {c.language}", f"The language of {c.name} is {c.language}",
                f"In {c.name}, most people speak {c.language}"]
        lang += [f"{q.format(c=c.name)} A: {c.language}." for q, s in QUESTIONS["language"] if s == "word"]
        out[f"capital:{c.name}"] = sum(text.count(s) for s in cap)
        out[f"language:{c.name}"] = sum(text.count(s) for s in lang)
    for p in people:
        yr = [f"{p.name} was born in {p.year}", f"In {p.year}, {p.name} was born",
              f"{p.name}, born in {p.year}"]
        yr += [f"{q.format(p=p.name)} A: {p.year}." for q, s in QUESTIONS["birth_year"] if s == "word"]
        out[f"birth_year:{p.name}"] = sum(text.count(s) for s in yr)
    return out
