"""The built-in synthetic world: the default data, deterministic from a seed, no files.

Entities: invented countries (capital, language) and people (birth year, 1900-1999). A
fraction ``probe_fraction`` of each are *probe* entities: their facts appear in the
pre-training prose only, never in ``train``, ``val`` or ``eval_items`` (not even as a
distractor), so the knowledge probe measures what SFT elicits from pre-training. All names are
distinct and no name is a substring of another name or of any fixed text of the world.

``pretrain_docs``: short documents (< 300 bytes; the model sees 128-byte windows):

- per-country paragraphs that repeat the name (4 per country, 5 phrasings), Q/A sheets
  ("Q: What is the capital of X? A: The capital of X is Y.", 2 per country), and fact lists
  that deal every fact in turn (so each fact is stated ~10 times in several phrasings);
- people's biographies and Q/A lines;
- closed sets of small facts, each stated a fixed number of times: sums and differences of
  0..9 and products of 1..5, counting runs ("Counting from 3 to 6: 3, 4, 5, 6."), and the
  reversal and capitals of 40 short words. Answering such questions is recall, like the
  entity facts, which is what a 0.8M-parameter byte model can do;
- generic filler sentences.

Budget (measured on the mini model, seed 0, 1200 steps of 16 x 128 tokens = 2.5M tokens):
with the default ~94 KB of prose each entity fact is seen ~260 times in pre-training; the base
model then completed "The capital of X is" correctly for 40/40 countries, the language for
39/40 and the birth year for 8/12 people. A 126 KB variant (with ``n_copy_docs=150``, ~160
exposures per 2M tokens) dropped the capitals to ~65%: grow ``n_countries`` or the prose only
together with the pre-training budget. ``World.stats()`` reports the exposures.

``heldout_docs``: more documents from the same generators, none equal to a pre-training
document (the forgetting metric).

``train`` / ``val``: short conversations (each renders to at most ``max_tokens`` ids with every
template; no exact duplicates; disjoint): questions about the non-probe entities in several
phrasings (a terse one answered in one word), small arithmetic, reversing / uppercasing a
word, counting, questions whose fact is stated in the prompt about an invented country that
exists nowhere else ("context": practice in copying a name into the answer), system prompts
that set the answer format ("Answer in one word.", "Answer in capital letters.", ...), and
two-exchange conversations.

``eval_items``: the same distribution, but no prompt of theirs occurs in train / val, and their
arithmetic operand pairs, words and invented countries are held out from the training tasks.
Each has a reference, the full reference response, ``n_distractors`` wrong answers of the
same type, the fact it asks in ``meta``, and the whole prompt plus its longest candidate
response fits ``max_tokens`` with every template. ``probe_items``: every probe fact in
``probe_phrasings`` phrasings, distractors drawn from all entities.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from ..errors import ConfigError
from .conversation import Conversation, Turn
from .evalitem import EvalItem, _contains, words
from .templates import TEMPLATE_NAMES, render, render_prompt

# --------------------------------------------------------------------------- configuration


@dataclass
class WorldConfig:
    seed: int = 0
    # entities
    n_countries: int = 40
    n_people: int = 12
    probe_fraction: float = 0.25          # of countries and of people: facts seen only in pre-training
    # pre-training prose
    paragraphs_per_country: int = 4
    qa_docs_per_country: int = 2
    docs_per_person: int = 6
    n_fact_list_docs: int = -1            # -1: 2 per country
    facts_per_list: int = 4
    n_filler_docs: int = 60
    n_copy_docs: int = 0                  # one-off documents about a fresh invented country each
    n_context_names: int = 60             # invented countries used only in in-context questions
    arith_mentions: int = 3               # times each small sum / difference / product is stated
    word_mentions: int = 3                # times each word's reversal / capitals is stated
    count_mentions: int = 2               # times each "counting from s to e" sequence is stated
    n_heldout_docs: int = 60
    # instruction data
    n_train: int = 1500
    n_val: int = 100
    n_eval: int = 100
    probe_phrasings: int = 2              # probe items per probe fact
    n_distractors: int = 9
    multi_turn_fraction: float = 0.12
    system_fraction: float = 0.35         # share of single-turn items with a system prompt
    holdout_fraction: float = 0.15        # arithmetic pairs and words reserved for eval items
    max_tokens: int = 128                 # every train/val/eval conversation fits, all templates

    def validate(self) -> None:
        ints = ["n_countries", "n_people", "paragraphs_per_country", "qa_docs_per_country",
                "docs_per_person", "facts_per_list", "n_filler_docs", "n_copy_docs", "n_context_names", "arith_mentions",
                "word_mentions", "count_mentions", "n_heldout_docs", "n_train", "n_val", "n_eval",
                "probe_phrasings", "n_distractors"]
        for k in ints:
            if int(getattr(self, k)) < 0:
                raise ConfigError(f"world.{k} must be >= 0, got {getattr(self, k)}")
        if self.n_countries < 4:
            raise ConfigError(f"world.n_countries must be >= 4, got {self.n_countries}")
        for k in ("probe_fraction", "multi_turn_fraction", "system_fraction", "holdout_fraction"):
            v = float(getattr(self, k))
            if not 0.0 <= v < 1.0:
                raise ConfigError(f"world.{k} must be in [0, 1), got {v}")
        if self.max_tokens < 64:
            raise ConfigError(f"world.max_tokens must be >= 64, got {self.max_tokens}")


# --------------------------------------------------------------------------- vocabulary

ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z",
          "br", "dr", "gr", "kr", "tr", "th", "st", "sk", "vr", "zh"]
VOWELS = ["a", "e", "i", "o", "u", "a", "e", "o", "ai", "ou"]
CODAS = ["n", "r", "l", "s", "th", "m", "k", "sk", "nd", "rn"]
COUNTRY_ENDINGS = ["ia", "or", "and", "esh", "ova", "ur", "eth", "ane"]
LANGUAGE_ENDINGS = ["ish", "ic", "ese", "ari"]

GEO = ["by the sea", "in the mountains", "on a large island", "between two rivers",
       "in the far north", "in the warm south", "on a wide plain", "beside a great lake"]
SIZES = ["small", "large", "proud", "quiet", "busy", "green", "rocky", "sunny"]
CITY_ADJ = ["busy", "quiet", "grand", "bright", "windy", "crowded", "pretty", "walled"]
KNOWN_FOR = ["bridges", "markets", "towers", "gardens", "harbour", "bread", "music", "libraries"]
JOBS = ["painter", "sailor", "teacher", "baker", "poet", "builder", "doctor", "farmer",
        "singer", "weaver", "mapmaker", "judge"]

ANIMALS = ["goat", "horse", "heron", "fox", "owl", "sheep", "cat", "dog", "crow", "mule"]
VERBS = ["sleeps", "rests", "waits", "runs", "sings", "hides", "walks"]
PLACES = ["river", "bridge", "market", "square", "harbour", "hill", "mill", "gate", "well"]
SEASONS = ["spring", "summer", "autumn", "winter"]
ADJS = ["quiet", "busy", "green", "cold", "bright", "calm", "wet", "golden"]
FOODS = ["bread", "cheese", "apples", "fish", "honey", "grain", "plums", "onions"]
BUILDINGS = ["tower", "chapel", "mill", "house", "inn", "barn", "school"]
WATERS = ["river", "lake", "sea", "canal", "pond"]
MATERIALS = ["stone", "wood", "brick", "clay"]
ACTIVITIES = ["swim", "read", "sing", "play", "run", "fish", "dance"]
WEATHERS = ["warm", "dry", "mild", "clear", "windy"]
LANDFORMS = ["hills", "plain", "valley", "coast", "fields"]

FILLER = [
    "The {animal} {verb} near the {place}.",
    "In {season}, the {place} is {adj}.",
    "Farmers bring {food} to the market every week.",
    "The old {building} by the {water} was built of {material}.",
    "Children like to {activity} when the weather is {weather}.",
    "A {adj} wind came over the {landform}.",
    "Nobody knows who built the {building} on the {landform}.",
    "The {food} from the {landform} tastes sweet in {season}.",
    "At night the {animal} {verb} by the {water}.",
    "The road to the {place} is long and {adj}.",
]

WORDS = ["cat", "dog", "sun", "tree", "bird", "book", "lamp", "rain", "milk", "star",
         "moon", "ship", "road", "door", "hat", "cup", "pen", "box", "egg", "map",
         "key", "bell", "rose", "leaf", "sand", "wolf", "frog", "ring", "coin", "fire",
         "wind", "snow", "gold", "kite", "nest", "drum", "corn", "boat", "cake", "duck"]

OPS = {"plus": lambda a, b: a + b, "minus": lambda a, b: a - b, "times": lambda a, b: a * b}
# The closed sets of arithmetic facts: small enough that pre-training states every one of them
# several times, so answering them is recall (like the entity facts), not computation.
OP_RANGES = {"plus": (0, 9), "minus": (0, 9), "times": (1, 5)}

# Question phrasings. style "full": sentence answer; "word": one-word answer.
CAPITAL_Q = [("What is the capital of {c}?", "full"), ("Which city is the capital of {c}?", "full"),
             ("Name the capital of {c}.", "full"), ("Tell me the capital of {c}.", "full"),
             ("Capital of {c}?", "word")]
LANGUAGE_Q = [("What language is spoken in {c}?", "full"),
              ("Which language do people speak in {c}?", "full"),
              ("What do people in {c} speak?", "full"), ("Language of {c}?", "word")]
YEAR_Q = [("When was {p} born?", "full"), ("In which year was {p} born?", "full"),
          ("What is the birth year of {p}?", "full"), ("Birth year of {p}?", "word")]
CAPITAL_A = "The capital of {c} is {x}."
LANGUAGE_A = "People in {c} speak {x}."
YEAR_A = "{p} was born in {x}."
ARITH_Q = ["What is {a} {op} {b}?", "Compute {a} {op} {b}.", "How much is {a} {op} {b}?"]
ARITH_A = "{a} {op} {b} is {x}."
REVERSE_Q = ["Reverse the word {w}.", "Write {w} backwards.", "Spell {w} backwards."]
UPPER_Q = ["Write {w} in capital letters.", "Uppercase the word {w}.", "Make {w} uppercase."]
LIST_Q = ["List the numbers from {s} to {e}.", "Count from {s} to {e}."]

SYSTEMS = [("You are a helpful assistant.", "neutral"), ("Answer in one word.", "word"),
           ("Answer in capital letters.", "caps"), ("Answer with a full sentence.", "full")]

TASK_WEIGHTS = {"capital": 0.20, "language": 0.16, "birth_year": 0.08, "context": 0.08,
                "arithmetic": 0.22,
                "reverse": 0.12, "uppercase": 0.12, "list": 0.10}


def _fixed_text() -> str:
    """All fixed text the world uses; generated names must not occur inside it."""
    parts = (GEO + SIZES + CITY_ADJ + KNOWN_FOR + JOBS + ANIMALS + VERBS + PLACES + SEASONS + ADJS
             + FOODS + BUILDINGS + WATERS + MATERIALS + ACTIVITIES + WEATHERS + LANDFORMS + FILLER
             + WORDS + [w[::-1] for w in WORDS] + list(OPS)
             + [q for q, _ in CAPITAL_Q + LANGUAGE_Q + YEAR_Q] + [CAPITAL_A, LANGUAGE_A, YEAR_A]
             + ARITH_Q + [ARITH_A] + REVERSE_Q + UPPER_Q + LIST_Q + [s for s, _ in SYSTEMS]
             + _DOC_TEXTS)
    return "\n".join(parts).lower()


# --------------------------------------------------------------------------- entities


@dataclass(frozen=True)
class Country:
    name: str
    capital: str
    language: str
    geo: str
    size: str
    city_adj: str
    known_for: str
    probe: bool


@dataclass(frozen=True)
class Person:
    name: str
    year: int
    job: str
    probe: bool


def _make_names(rng: random.Random, n_countries: int, n_people: int,
                decoy_groups: list[tuple[random.Random, int]]):
    fixed = _fixed_text()
    taken: list[str] = []

    def ok(name: str) -> bool:
        low = name.lower()
        if low in fixed or len(low) < 5:
            return False
        return all(low not in t and t not in low for t in taken)

    def syl(k: int, coda: bool) -> str:
        s = "".join(rng.choice(ONSETS) + rng.choice(VOWELS) for _ in range(k))
        return s + (rng.choice(CODAS) if coda else "")

    def fresh(make) -> str:
        for _ in range(10000):
            name = make()
            if ok(name):
                taken.append(name.lower())
                return name
        raise ConfigError("could not generate enough distinct names; use fewer entities")

    countries = []
    for _ in range(n_countries):
        c = fresh(lambda: (syl(rng.choice([1, 2]), False) + rng.choice(COUNTRY_ENDINGS)).capitalize())
        cap = fresh(lambda: syl(rng.choice([1, 2]), True).capitalize())
        lang = fresh(lambda: (syl(rng.choice([1, 2]), False) + rng.choice(LANGUAGE_ENDINGS)).capitalize())
        countries.append((c, cap, lang))
    people = []
    for _ in range(n_people):
        first = fresh(lambda: syl(2, rng.random() < 0.5).capitalize())
        last = fresh(lambda: syl(rng.choice([1, 2]), True).capitalize())
        people.append(f"{first} {last}")
    # decoys: invented countries that are mentioned in a single place (an in-context question,
    # a one-off document); drawn after the world's names, each group from its own stream, so
    # they change nothing else. All names stay distinct and substring-free.
    groups = []
    for rng, n in decoy_groups:
        decoys = []
        for _ in range(n):
            c = fresh(lambda: (syl(rng.choice([1, 2]), False) + rng.choice(COUNTRY_ENDINGS)).capitalize())
            cap = fresh(lambda: syl(rng.choice([1, 2]), True).capitalize())
            lang = fresh(lambda: (syl(rng.choice([1, 2]), False) + rng.choice(LANGUAGE_ENDINGS)).capitalize())
            decoys.append((c, cap, lang))
        groups.append(decoys)
    return countries, people, groups


# --------------------------------------------------------------------------- prose

_DOC_TEXTS = [
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
    "Q: What is the capital of {c}? A: The capital of {c} is {cap}. Q: What language is spoken "
    "in {c}? A: People in {c} speak {lang}.",
    "Q: Which city is the capital of {c}? A: {cap}. Q: What do people in {c} speak? A: {lang}. "
    "Q: Capital of {c}? A: {cap}.",
    "{p} was born in {y}. {p} worked as a {job}.",
    "Q: When was {p} born? A: {p} was born in {y}. Q: Birth year of {p}? A: {y}.",
    "In {y}, {p} was born. Later {p} became a well known {job}.",
    "{p}, born in {y}, was a {job}. People still talk about {p}.",
    "Facts:", "Some sums.", "Word facts.", "The word {w} backwards is {r}.",
    "The word {w} in capital letters is {u}.", "Counting from {s} to {e}: {lst}.",
    "{w} reversed is {r}.", "{w} in capitals is {u}.", "Q: Reverse the word {w}. A: {r}",
    "Q: Write {w} in capital letters. A: {u}", "Q: What is {a} {op} {b}? A: {a} {op} {b} is {x}.",
]
COPY_DOCS = [
    "A new map shows {c}. The capital of {c} is {cap}. Q: What is the capital of {c}? A: The "
    "capital of {c} is {cap}.",
    "A story tells of {c}, where people speak {lang}. Q: What language is spoken in {c}? A: "
    "People in {c} speak {lang}.",
    "In an old tale, {cap} is the capital of {c} and people in {c} speak {lang}. Q: Capital of "
    "{c}? A: {cap}. Q: Language of {c}? A: {lang}.",
    "Q: What is the capital of {c}? A: The capital of {c} is {cap}. Q: What do people in {c} "
    "speak? A: People in {c} speak {lang}.",
]
_DOC_TEXTS += COPY_DOCS
P_COUNTRY = _DOC_TEXTS[0:5]
P_COUNTRY_QA = _DOC_TEXTS[5:7]
P_PERSON = _DOC_TEXTS[7:11]

FACT_SENTENCES = {
    "capital": ["The capital of {c} is {x}.", "{x} is the capital of {c}.",
                "{c} has its capital at {x}.", "Q: What is the capital of {c}? A: The capital of {c} is {x}."],
    "language": ["People in {c} speak {x}.", "{x} is the language of {c}.",
                 "The people of {c} speak {x}.", "Q: What language is spoken in {c}? A: People in {c} speak {x}."],
    "birth_year": ["{p} was born in {x}.", "In {x}, {p} was born.",
                   "Q: When was {p} born? A: {p} was born in {x}."],
}


class _Prose:
    def __init__(self, rng: random.Random, countries: list[Country], people: list[Person]):
        self.rng, self.countries, self.people = rng, countries, people

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

    def fact(self) -> tuple[str, str]:
        """The next fact sentence from a shuffled deck of all facts (so fact lists state every
        fact equally often); returns (sentence, fact id)."""
        r = self.rng
        if not getattr(self, "_deck", None):
            deck = ([("capital", c) for c in self.countries] + [("language", c) for c in self.countries]
                    + [("birth_year", p) for p in self.people])
            r.shuffle(deck)
            self._deck = deck
        kind, e = self._deck.pop()
        t = r.choice(FACT_SENTENCES[kind])
        if kind == "birth_year":
            return t.format(p=e.name, x=e.year), f"birth_year:{e.name}"
        return t.format(c=e.name, x=e.capital if kind == "capital" else e.language), f"{kind}:{e.name}"

    def fact_list_doc(self, n: int) -> str:
        return "Facts: " + " ".join(self.fact()[0] for _ in range(n))

    def copy_doc(self, decoy: tuple[str, str, str]) -> str:
        """A document about an invented country named nowhere else: predicting its second half
        needs copying names from its first half (what answering about a probe entity needs)."""
        c, cap, lang = decoy
        return self.rng.choice(COPY_DOCS).format(c=c, cap=cap, lang=lang)

    def filler_doc(self) -> str:
        return " ".join(self.filler_sentence() for _ in range(self.rng.randint(3, 5)))

    def _deal(self, name: str, make_deck) -> object:
        decks = self.__dict__.setdefault("_decks", {})
        if not decks.get(name):
            deck = make_deck()
            self.rng.shuffle(deck)
            decks[name] = deck
        return decks[name].pop()

    def arith_statement(self) -> str:
        r = self.rng
        kind, *rest = self._deal("arith", lambda: [("op", *t) for t in _all_arith()]
                                 + [("count", *t) for t in _all_counts()])
        if kind == "count":
            s, e = rest
            return f"Counting from {s} to {e}: {_count_list(s, e)}."
        op, a, b = rest
        x = OPS[op](a, b)
        return r.choice([f"{a} {op} {b} is {x}.", f"{a} {op} {b} is {x}.",
                         f"Q: What is {a} {op} {b}? A: {a} {op} {b} is {x}."])

    def arith_doc(self, n: int | None = None) -> str:
        n = n or self.rng.randint(4, 6)
        return "Some sums. " + " ".join(self.arith_statement() for _ in range(n))

    def word_statement(self) -> str:
        r = self.rng
        task, w = self._deal("word", lambda: [(t, w) for t in ("reverse", "upper") for w in WORDS])
        if task == "reverse":
            return r.choice([f"The word {w} backwards is {w[::-1]}.", f"{w} reversed is {w[::-1]}.",
                             f"Q: Reverse the word {w}. A: {w[::-1]}."])
        return r.choice([f"The word {w} in capital letters is {w.upper()}.",
                         f"{w} in capitals is {w.upper()}.",
                         f"Q: Write {w} in capital letters. A: {w.upper()}."])

    def word_doc(self, n: int | None = None) -> str:
        n = n or self.rng.randint(4, 5)
        return "Word facts. " + " ".join(self.word_statement() for _ in range(n))

    def mixed_doc(self, kind: str) -> str:
        r = self.rng
        if kind == "country":
            return self.country_doc(r.choice(self.countries), r.choice(P_COUNTRY + P_COUNTRY_QA))
        if kind == "person":
            return self.person_doc(r.choice(self.people), r.choice(P_PERSON))
        if kind == "facts":
            return self.fact_list_doc(4)
        if kind == "filler":
            return self.filler_doc()
        if kind == "arith":
            return self.arith_doc()
        return self.word_doc()


def _count_list(s: int, e: int) -> str:
    return ", ".join(str(i) for i in range(s, e + 1))


def _all_counts() -> list[tuple[int, int]]:
    return [(s, s + k) for s in range(16) for k in (2, 3, 4)]


def _all_arith() -> list[tuple[str, int, int]]:
    out = []
    for op, (lo, hi) in OP_RANGES.items():
        for a in range(lo, hi + 1):
            for b in range(lo, hi + 1):
                if op == "minus" and b > a:
                    continue
                out.append((op, a, b))
    return out


# --------------------------------------------------------------------------- items


@dataclass
class _Spec:
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


def _apply_style(style: str, full: str, answer: str) -> tuple[str, str]:
    """(response, reference) for an answer style."""
    if style == "word":
        return answer, answer
    if style == "caps":
        return full.upper(), answer.upper()
    return full, answer


class _Items:
    """Generators of instruction items over a set of entities."""

    def __init__(self, rng: random.Random, countries: list[Country], people: list[Person],
                 arith: list[tuple[str, int, int]], words: list[str], cfg: WorldConfig,
                 all_capitals: list[str], all_languages: list[str], all_years: list[int]):
        self.r = rng
        self.countries, self.people = countries, people
        self.arith, self.words, self.cfg = arith, words, cfg
        self.capitals, self.languages, self.years = all_capitals, all_languages, all_years
        self.decoys: list[tuple[str, str, str]] = []      # to ask about
        self.decoy_pool: list[tuple[str, str, str]] = []  # for distractors

    def _system(self, allowed: tuple[str, ...]) -> tuple[list[Turn], str | None]:
        r = self.r
        if r.random() >= self.cfg.system_fraction:
            return [], None
        options = [s for s in SYSTEMS if s[1] in allowed]
        text, style = r.choice(options)
        return [Turn("system", text)], style

    # fact questions --------------------------------------------------------------------
    def fact(self, kind: str, entity=None, phrasing: int | None = None, allow_system=True) -> _Spec:
        r = self.r
        if kind == "birth_year":
            p = entity or r.choice(self.people)
            qs, a_tmpl, fmt = YEAR_Q, YEAR_A, {"p": p.name}
            answer, pool = str(p.year), [str(y) for y in self.years]
        else:
            c = entity or r.choice(self.countries)
            fmt = {"c": c.name}
            if kind == "capital":
                qs, a_tmpl, answer, pool = CAPITAL_Q, CAPITAL_A, c.capital, self.capitals
            else:
                qs, a_tmpl, answer, pool = LANGUAGE_Q, LANGUAGE_A, c.language, self.languages
        q, style = qs[phrasing if phrasing is not None else r.randrange(len(qs))]
        sys_turns, sys_style = (self._system(("neutral", "full", "word", "caps")) if allow_system
                                else ([], None))
        if sys_style in ("full", "word"):
            style = sys_style
        elif sys_style == "caps":
            style = "caps" if style == "full" else "caps_word"
        full = a_tmpl.format(x=answer, **fmt)
        if style == "caps_word":
            resp, ref = answer.upper(), answer.upper()
            pool = [x.upper() for x in pool]
        else:
            resp, ref = _apply_style(style, full, answer)
            if style == "caps":
                pool = [x.upper() for x in pool]
        turns = sys_turns + [Turn("user", q.format(**fmt))]
        name = entity.name if entity is not None else fmt.get("c", fmt.get("p"))
        return _Spec(turns, resp, ref, list(pool), kind, meta={"fact": kind, "entity": name})

    # arithmetic ------------------------------------------------------------------------
    def arithmetic(self, allow_system=True) -> _Spec:
        r = self.r
        op, a, b = r.choice(self.arith)
        x = OPS[op](a, b)
        q = r.choice(ARITH_Q).format(a=a, op=op, b=b)
        sys_turns, style = (self._system(("neutral", "full", "word", "caps")) if allow_system
                            else ([], None))
        full = ARITH_A.format(a=a, op=op, b=b, x=x)
        resp, ref = _apply_style(style or "full", full, str(x))
        pool = _near_numbers(r, x, exclude={a, b}, n=3 * self.cfg.n_distractors)
        return _Spec(sys_turns + [Turn("user", q)], resp, ref, [str(v) for v in pool], "arithmetic",
                     meta={"fact": op, "a": a, "b": b})

    # words -----------------------------------------------------------------------------
    def word(self, task: str, allow_system=True) -> _Spec:
        r = self.r
        w = r.choice(self.words)
        sys_turns, _ = self._system(("neutral", "word")) if allow_system else ([], None)
        if task == "reverse":
            q = r.choice(REVERSE_Q).format(w=w)
            ans = w[::-1]
            pool = [w] + [v[::-1] for v in WORDS if v != w]
            return _Spec(sys_turns + [Turn("user", q)], ans, ans, pool, "reverse",
                         meta={"fact": "reverse", "word": w})
        q = r.choice(UPPER_Q).format(w=w)
        ans = w.upper()
        pool = [w, w.capitalize()] + [v.upper() for v in WORDS if v != w]
        return _Spec(sys_turns + [Turn("user", q)], ans, ans, pool, "uppercase", case_sensitive=True,
                     meta={"fact": "upper", "word": w})

    # lists -----------------------------------------------------------------------------
    def listing(self, allow_system=True) -> _Spec:
        r = self.r
        s = r.randint(0, 15)
        e = s + r.randint(2, 4)
        q = r.choice(LIST_Q).format(s=s, e=e)
        ans = ", ".join(str(i) for i in range(s, e + 1))
        sys_turns, _ = self._system(("neutral",)) if allow_system else ([], None)
        shifts = sorted(((ds, de) for ds in range(-3, 4) for de in range(-3, 4) if ds or de),
                        key=lambda t: (abs(t[0]) + abs(t[1]), t))
        pool = [_count_list(s + ds, e + de) for ds, de in shifts
                if s + ds >= 0 and e + de > s + ds][: 2 * self.cfg.n_distractors]
        return _Spec(sys_turns + [Turn("user", q)], ans, ans, pool, "list", match="exact",
                     meta={"fact": "count", "a": s, "b": e})

    # two exchanges ---------------------------------------------------------------------
    def multi_turn(self) -> _Spec:
        r = self.r
        kind = r.choice(["fact", "arith", "word", "mixed"])
        if kind == "fact":
            c = r.choice(self.countries)
            first, second = r.sample(["capital", "language"], 2)
            q1 = {"capital": "Capital of {c}?", "language": "Language of {c}?"}[first].format(c=c.name)
            a1 = c.capital if first == "capital" else c.language
            q2 = {"capital": "And its capital?", "language": "And its language?"}[second]
            a2 = c.capital if second == "capital" else c.language
            pool = self.capitals if second == "capital" else self.languages
            turns = [Turn("user", q1), Turn("assistant", a1), Turn("user", q2)]
            return _Spec(turns, a2, a2, list(pool), second,
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
            pool = [str(v) for v in _near_numbers(r, y, exclude={k, x}, n=3 * self.cfg.n_distractors)]
            return _Spec(turns, str(y), str(y), pool, "arithmetic",
                         meta={"fact": "plus", "a": x, "b": k, "multi_turn": True})
        if kind == "word":
            # two independent word questions: each answer is a fact of the prose
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
                return _Spec(turns, ans, ans, pool, "reverse",
                             meta={"fact": "reverse", "word": w2, "multi_turn": True})
            turns.append(Turn("user", f"Now write {w2} in capital letters."))
            ans = w2.upper()
            pool = [w2, w2.capitalize()] + [v.upper() for v in WORDS if v != w2]
            return _Spec(turns, ans, ans, pool, "uppercase", case_sensitive=True,
                         meta={"fact": "upper", "word": w2, "multi_turn": True})
        # mixed: a fact, then a sum
        first = self.fact(r.choice(["capital", "language"]), phrasing=None, allow_system=False)
        second = self.arithmetic(allow_system=False)
        turns = first.turns + [Turn("assistant", first.response)] + second.turns
        return _Spec(turns, second.response, second.reference, second.pool, "arithmetic",
                     meta={**second.meta, "multi_turn": True})

    # in-context facts ------------------------------------------------------------------
    def context(self) -> _Spec:
        """A fact stated in the question about an invented country that exists nowhere else:
        the answer is copied from the prompt (practice in copying names into the answer)."""
        r = self.r
        c, cap, lang = r.choice(self.decoys)
        kind = r.choice(["capital", "language"])
        if kind == "capital":
            stmt = r.choice(["{x} is the capital of {c}.", "The capital of {c} is {x}."])
            qs, a_tmpl, answer = CAPITAL_Q, CAPITAL_A, cap
            pool = [d[1] for d in self.decoy_pool]
        else:
            stmt = r.choice(["People in {c} speak {x}.", "{x} is the language of {c}."])
            qs, a_tmpl, answer = LANGUAGE_Q, LANGUAGE_A, lang
            pool = [d[2] for d in self.decoy_pool]
        # no system prompt: the statement already makes these the longest prompts
        q, style = r.choice(qs)
        full = a_tmpl.format(c=c, x=answer)
        resp, ref = _apply_style(style, full, answer)
        user = stmt.format(c=c, x=answer) + " " + q.format(c=c)
        return _Spec([Turn("user", user)], resp, ref, pool, "context",
                     meta={"fact": "context_" + kind, "entity": c})

    def sample(self, task: str) -> _Spec:
        if task in ("capital", "language", "birth_year"):
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


def _near_numbers(r: random.Random, x: int, exclude: set[int], n: int) -> list[int]:
    out = []
    d = 1
    while len(out) < n and d < 1000:
        for v in (x - d, x + d):
            if v >= 0 and v != x and v not in exclude:
                out.append(v)
        d += 1
    return out


# --------------------------------------------------------------------------- the world


@dataclass
class World:
    config: WorldConfig
    countries: list[Country]
    people: list[Person]
    pretrain_docs: list[str]
    heldout_docs: list[str]
    train: list[Conversation]
    val: list[Conversation]
    eval_items: list[EvalItem]
    probe_items: list[EvalItem]
    fact_mentions: dict[str, int] = field(default_factory=dict)

    @property
    def probe_names(self) -> list[str]:
        """Every name that belongs to a probe entity (country, capital, language, person)."""
        out = []
        for c in self.countries:
            if c.probe:
                out += [c.name, c.capital, c.language]
        out += [p.name for p in self.people if p.probe]
        return out

    def exposures_per_fact(self, n_tokens: float) -> float:
        """Mean number of times a fact is seen when pre-training on ``n_tokens`` tokens sampled
        uniformly from ``pretrain_docs`` (each document followed by one end-of-text id)."""
        total = sum(len(d.encode("utf-8")) + 1 for d in self.pretrain_docs)
        mean = sum(self.fact_mentions.values()) / max(len(self.fact_mentions), 1)
        return mean * n_tokens / max(total, 1)

    def stats(self) -> dict:
        def nbytes(docs):
            return sum(len(d.encode("utf-8")) for d in docs)

        def tasks(items):
            out: dict[str, int] = {}
            for it in items:
                out[it.task] = out.get(it.task, 0) + 1
            return dict(sorted(out.items()))

        lengths = {}
        for name in TEMPLATE_NAMES:
            ls = [len(render(c, name)[0]) for c in self.train]
            lengths[name] = {"mean": round(sum(ls) / max(len(ls), 1), 1), "max": max(ls, default=0)}
        mentions = list(self.fact_mentions.values())
        return {
            "seed": self.config.seed,
            "n_countries": len(self.countries),
            "n_probe_countries": sum(c.probe for c in self.countries),
            "n_people": len(self.people),
            "n_probe_people": sum(p.probe for p in self.people),
            "n_pretrain_docs": len(self.pretrain_docs),
            "pretrain_bytes": nbytes(self.pretrain_docs),
            "max_doc_bytes": max((len(d.encode()) for d in self.pretrain_docs), default=0),
            "n_heldout_docs": len(self.heldout_docs),
            "heldout_bytes": nbytes(self.heldout_docs),
            "n_facts": len(mentions),
            "fact_mentions_min": min(mentions, default=0),
            "fact_mentions_mean": round(sum(mentions) / max(len(mentions), 1), 2),
            "exposures_per_fact_at_2M_tokens": round(self.exposures_per_fact(2_000_000), 1),
            "n_train": len(self.train),
            "n_val": len(self.val),
            "n_eval_items": len(self.eval_items),
            "n_probe_items": len(self.probe_items),
            "n_multi_turn_train": sum(sum(t.role == "user" for t in c.turns) > 1 for c in self.train),
            "n_with_system_train": sum(c.system is not None for c in self.train),
            "eval_tasks": tasks(self.eval_items),
            "probe_tasks": tasks(self.probe_items),
            "train_tokens": lengths,
        }


def _n_docs(cfg: WorldConfig) -> int:
    """Number of pre-training documents ``cfg`` asks for."""
    n_lists = 2 * cfg.n_countries if cfg.n_fact_list_docs < 0 else cfg.n_fact_list_docs
    n_arith = len(_all_arith()) * cfg.arith_mentions + len(_all_counts()) * cfg.count_mentions
    return (cfg.n_countries * (cfg.paragraphs_per_country + cfg.qa_docs_per_country)
            + cfg.n_people * cfg.docs_per_person + n_lists + cfg.n_filler_docs
            + -(-n_arith // 5) + -(-2 * len(WORDS) * cfg.word_mentions // 4) + cfg.n_copy_docs)


def _choices_fit(item: EvalItem, max_tokens: int) -> bool:
    """The prompt plus the longest candidate response plus its end id fit, every template."""
    longest = max(len(c.encode("utf-8")) for c in item.choices())
    return all(len(render_prompt(item.prompt, name)) + longest + 1 <= max_tokens
               for name in TEMPLATE_NAMES)


def _fits(conv: Conversation, max_tokens: int) -> bool:
    return all(len(render(conv, name)[0]) <= max_tokens for name in TEMPLATE_NAMES)


def _finish(spec: _Spec, r: random.Random, n: int) -> EvalItem:
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


def build_world(cfg: WorldConfig | None = None) -> World:
    """Build the synthetic world for ``cfg`` (deterministic per ``cfg.seed``)."""
    cfg = cfg or WorldConfig()
    cfg.validate()
    seed = int(cfg.seed)

    def rng(tag: str) -> random.Random:
        return random.Random(f"sft-sweep-world:{seed}:{tag}")

    # entities ----------------------------------------------------------------------------
    r = rng("entities")
    n_copy_held = int(round(cfg.n_heldout_docs * cfg.n_copy_docs
                            / max(_n_docs(cfg), 1))) if cfg.n_copy_docs else 0
    names, pnames, (decoys, copy_names, copy_held) = _make_names(
        r, cfg.n_countries, cfg.n_people,
        [(rng("decoys"), cfg.n_context_names), (rng("copy"), cfg.n_copy_docs),
         (rng("copy-heldout"), n_copy_held)])
    n_probe_c = int(round(cfg.probe_fraction * cfg.n_countries))
    n_probe_p = int(round(cfg.probe_fraction * cfg.n_people))
    probe_c = set(r.sample(range(cfg.n_countries), n_probe_c))
    probe_p = set(r.sample(range(cfg.n_people), n_probe_p))
    countries = [Country(c, cap, lang, r.choice(GEO), r.choice(SIZES), r.choice(CITY_ADJ),
                         r.choice(KNOWN_FOR), i in probe_c)
                 for i, (c, cap, lang) in enumerate(names)]
    years = r.sample(range(1900, 2000), cfg.n_people)
    people = [Person(n, y, r.choice(JOBS), i in probe_p)
              for i, (n, y) in enumerate(zip(pnames, years))]

    # pre-training prose ------------------------------------------------------------------
    r = rng("pretrain")
    prose = _Prose(r, countries, people)
    docs: list[str] = []
    for c in countries:
        tmpls = [P_COUNTRY[i % len(P_COUNTRY)] for i in range(cfg.paragraphs_per_country)]
        tmpls += [P_COUNTRY_QA[i % len(P_COUNTRY_QA)] for i in range(cfg.qa_docs_per_country)]
        docs += [prose.country_doc(c, t) for t in tmpls]
    for p in people:
        docs += [prose.person_doc(p, P_PERSON[i % len(P_PERSON)]) for i in range(cfg.docs_per_person)]
    n_lists = 2 * cfg.n_countries if cfg.n_fact_list_docs < 0 else cfg.n_fact_list_docs
    docs += [prose.fact_list_doc(cfg.facts_per_list) for _ in range(n_lists)]
    docs += [prose.filler_doc() for _ in range(cfg.n_filler_docs)]
    n_arith = (len(_all_arith()) * cfg.arith_mentions + len(_all_counts()) * cfg.count_mentions)
    n_arith_docs = -(-n_arith // 5)
    docs += [prose.arith_doc(5) for _ in range(n_arith_docs)]
    n_word_docs = -(-2 * len(WORDS) * cfg.word_mentions // 4)
    docs += [prose.word_doc(4) for _ in range(n_word_docs)]
    docs += [prose.copy_doc(d) for d in copy_names]
    r.shuffle(docs)

    # held-out prose: same generators, same proportions, never equal to a pre-training doc
    r = rng("heldout")
    hprose = _Prose(r, countries, people)
    kinds = (["country"] * (cfg.n_countries * (cfg.paragraphs_per_country + cfg.qa_docs_per_country))
             + ["person"] * (cfg.n_people * cfg.docs_per_person if people else 0)
             + ["facts"] * n_lists + ["filler"] * cfg.n_filler_docs
             + ["arith"] * n_arith_docs + ["word"] * n_word_docs + ["copy"] * cfg.n_copy_docs)
    held_copy = list(copy_held)
    pre_set = set(docs)
    heldout: list[str] = []
    tries = 0
    while len(heldout) < cfg.n_heldout_docs and kinds and tries < 100 * (cfg.n_heldout_docs + 1):
        tries += 1
        kind = r.choice(kinds)
        if kind == "copy":
            if not held_copy:
                continue
            d = hprose.copy_doc(held_copy.pop())
        else:
            d = hprose.mixed_doc(kind)
        if d not in pre_set and d not in heldout:
            heldout.append(d)

    # fact mention counts (exact, by searching the answers' sentences)
    mentions = _count_mentions(docs, countries, people)

    # instruction items -------------------------------------------------------------------
    r = rng("split")
    all_arith = _all_arith()
    r.shuffle(all_arith)
    n_hold = int(round(cfg.holdout_fraction * len(all_arith)))
    arith_eval, arith_train = all_arith[:n_hold], all_arith[n_hold:]
    word_list = list(WORDS)
    r.shuffle(word_list)
    n_wh = max(1, int(round(cfg.holdout_fraction * len(word_list))))
    words_eval, words_train = word_list[:n_wh], word_list[n_wh:]

    sft_c = [c for c in countries if not c.probe]
    sft_p = [p for p in people if not p.probe]
    sft_caps = [c.capital for c in sft_c]
    sft_langs = [c.language for c in sft_c]
    sft_years = [p.year for p in sft_p] + [y for y in range(1900, 2000, 7)
                                          if y not in {p.year for p in people}]
    weights = dict(TASK_WEIGHTS)
    if not sft_p:
        weights.pop("birth_year")
    n_dh = int(round(cfg.holdout_fraction * len(decoys)))
    decoys_eval, decoys_train = decoys[:n_dh], decoys[n_dh:]
    if not decoys_eval or not decoys_train:
        weights.pop("context")
    task_names = list(weights) + ["multi_turn"]
    single = 1.0 - cfg.multi_turn_fraction
    total_w = sum(weights.values())
    task_w = [w / total_w * single for w in weights.values()] + [cfg.multi_turn_fraction]

    # eval items first: their prompts are reserved (never used in train / val)
    r = rng("eval")
    gen_eval = _Items(r, sft_c, sft_p, arith_eval, words_eval, cfg, sft_caps, sft_langs, sft_years)
    gen_eval.decoys, gen_eval.decoy_pool = decoys_eval, decoys
    eval_items: list[EvalItem] = []
    reserved: set = set()
    tries = 0
    while len(eval_items) < cfg.n_eval and tries < 200 * (cfg.n_eval + 1):
        tries += 1
        spec = gen_eval.sample(r.choices(task_names, task_w)[0])
        if spec.prompt_key() in reserved or not _fits(spec.conversation(), cfg.max_tokens):
            continue
        item = _finish(spec, r, cfg.n_distractors)
        if not item.distractors or not _choices_fit(item, cfg.max_tokens):
            continue
        reserved.add(spec.prompt_key())
        eval_items.append(item)

    # train + val: unique conversations, no reserved prompt
    r = rng("train")
    gen = _Items(r, sft_c, sft_p, arith_train, words_train, cfg, sft_caps, sft_langs, sft_years)
    gen.decoys, gen.decoy_pool = decoys_train, decoys_train
    convs: list[Conversation] = []
    seen: set = set()
    want = cfg.n_train + cfg.n_val
    tries = 0
    while len(convs) < want and tries < 50 * (want + 1):
        tries += 1
        spec = gen.sample(r.choices(task_names, task_w)[0])
        conv = spec.conversation()
        key = conv.key()
        if key in seen or spec.prompt_key() in reserved or not _fits(conv, cfg.max_tokens):
            continue
        seen.add(key)
        convs.append(conv)
    if len(convs) < want:
        raise ConfigError(f"the world can only make {len(convs)} distinct instruction "
                          f"conversations, fewer than n_train + n_val = {want}; add entities "
                          "or lower the sizes")
    val, train = convs[:cfg.n_val], convs[cfg.n_val:]

    # knowledge probe -----------------------------------------------------------------------
    r = rng("probe")
    all_caps = [c.capital for c in countries]
    all_langs = [c.language for c in countries]
    all_years = [p.year for p in people] + [y for y in range(1900, 2000, 7)
                                           if y not in {p.year for p in people}]
    gp = _Items(r, countries, people, arith_eval, words_eval, cfg, all_caps, all_langs, all_years)
    probe_items: list[EvalItem] = []
    for c in countries:
        if not c.probe:
            continue
        for kind, qs in (("capital", CAPITAL_Q), ("language", LANGUAGE_Q)):
            for ph in range(min(cfg.probe_phrasings, len(qs))):
                spec = gp.fact(kind, c, phrasing=ph, allow_system=False)
                spec.task = "probe_" + kind
                probe_items.append(_finish(spec, r, cfg.n_distractors))
    for p in people:
        if not p.probe:
            continue
        for ph in range(min(cfg.probe_phrasings, len(YEAR_Q))):
            spec = gp.fact("birth_year", p, phrasing=ph, allow_system=False)
            spec.task = "probe_birth_year"
            probe_items.append(_finish(spec, r, cfg.n_distractors))

    return World(cfg, countries, people, docs, heldout, train, val, eval_items, probe_items,
                 mentions)


def _count_mentions(docs: list[str], countries: list[Country], people: list[Person]) -> dict[str, int]:
    """How many times each fact is stated in the documents (by its phrasings)."""
    out: dict[str, int] = {}
    text = "\n".join(docs)
    for c in countries:
        cap = [f"capital of {c.name} is {c.capital}", f"{c.capital} is the capital of {c.name}",
               f"{c.name} has its capital at {c.capital}", f"Q: Capital of {c.name}? A: {c.capital}",
               f"capital of {c.name}? A: {c.capital}.", f"In {c.capital}, the capital of {c.name}"]
        lang = [f"in {c.name} speak {c.language}", f"{c.language} is the language of {c.name}",
                f"people of {c.name} speak {c.language}", f"The language of {c.name} is {c.language}",
                f"In {c.name}, most people speak {c.language}", f"{c.name} speak? A: {c.language}"]
        out[f"capital:{c.name}"] = sum(text.count(s) for s in cap)
        out[f"language:{c.name}"] = sum(text.count(s) for s in lang)
    for p in people:
        yr = [f"{p.name} was born in {p.year}", f"In {p.year}, {p.name} was born",
              f"{p.name}, born in {p.year}", f"Birth year of {p.name}? A: {p.year}"]
        out[f"birth_year:{p.name}"] = sum(text.count(s) for s in yr)
    return out
