"""The world's fixed vocabulary, question phrasings, entities and the invented names.

All names are distinct, at least 5 letters, and no name is a substring of another name or of
any fixed text of the world, so a name found in a text means that entity and nothing else.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ...errors import ConfigError

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
QUESTIONS = {"capital": CAPITAL_Q, "language": LANGUAGE_Q, "birth_year": YEAR_Q}
CAPITAL_A = "The capital of {c} is {x}."
LANGUAGE_A = "People in {c} speak {x}."
YEAR_A = "{p} was born in {x}."
ANSWERS = {"capital": CAPITAL_A, "language": LANGUAGE_A, "birth_year": YEAR_A}
# How pre-training prose begins each fact: the base-knowledge metric completes these.
COMPLETIONS = {"capital": "The capital of {c} is", "language": "People in {c} speak",
               "birth_year": "{p} was born in"}
ARITH_Q = ["What is {a} {op} {b}?", "Compute {a} {op} {b}.", "How much is {a} {op} {b}?"]
ARITH_A = "{a} {op} {b} is {x}."
REVERSE_Q = ["Reverse the word {w}.", "Write {w} backwards.", "Spell {w} backwards."]
UPPER_Q = ["Write {w} in capital letters.", "Uppercase the word {w}.", "Make {w} uppercase."]
LIST_Q = ["List the numbers from {s} to {e}.", "Count from {s} to {e}."]

SYSTEMS = [("You are a helpful assistant.", "neutral"), ("Answer in one word.", "word"),
           ("Answer in capital letters.", "caps"), ("Answer with a full sentence.", "full")]


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


Decoy = tuple[str, str, str]  # an invented country named in one place only: (name, capital, language)


def make_names(rng: random.Random, n_countries: int, n_people: int, fixed_text: str,
               decoy_groups: list[tuple[random.Random, int]]):
    """(countries as (name, capital, language), people's names, decoy groups).

    Decoys are drawn after the world's names, each group from its own stream, so asking for more
    or fewer of them changes nothing else."""
    taken: list[str] = []

    def ok(name: str) -> bool:
        low = name.lower()
        if low in fixed_text or len(low) < 5:
            return False
        return all(low not in t and t not in low for t in taken)

    def syl(r: random.Random, k: int, coda: bool) -> str:
        s = "".join(r.choice(ONSETS) + r.choice(VOWELS) for _ in range(k))
        return s + (r.choice(CODAS) if coda else "")

    def fresh(make) -> str:
        for _ in range(10000):
            name = make()
            if ok(name):
                taken.append(name.lower())
                return name
        raise ConfigError("could not generate enough distinct names; use fewer entities")

    def country(r: random.Random) -> Decoy:
        c = fresh(lambda: (syl(r, r.choice([1, 2]), False) + r.choice(COUNTRY_ENDINGS)).capitalize())
        cap = fresh(lambda: syl(r, r.choice([1, 2]), True).capitalize())
        lang = fresh(lambda: (syl(r, r.choice([1, 2]), False) + r.choice(LANGUAGE_ENDINGS)).capitalize())
        return c, cap, lang

    countries = [country(rng) for _ in range(n_countries)]
    people = []
    for _ in range(n_people):
        first = fresh(lambda: syl(rng, 2, rng.random() < 0.5).capitalize())
        last = fresh(lambda: syl(rng, rng.choice([1, 2]), True).capitalize())
        people.append(f"{first} {last}")
    groups = [[country(r) for _ in range(n)] for r, n in decoy_groups]
    return countries, people, groups


def count_list(s: int, e: int) -> str:
    return ", ".join(str(i) for i in range(s, e + 1))


def all_counts() -> list[tuple[int, int]]:
    return [(s, s + k) for s in range(16) for k in (2, 3, 4)]


def all_arith() -> list[tuple[str, int, int]]:
    out = []
    for op, (lo, hi) in OP_RANGES.items():
        for a in range(lo, hi + 1):
            for b in range(lo, hi + 1):
                if op == "minus" and b > a:
                    continue
                out.append((op, a, b))
    return out
