"""Assembling the world: entities, prose, instruction splits, probe and base-knowledge facts."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from ...errors import ConfigError
from ..conversation import Conversation, Turn
from ..evalitem import EvalItem
from ..subset import nested_subset
from ..templates import TEMPLATE_NAMES, render
from .config import WorldConfig
from .items import FOLLOW_UPS, FORMAT_STYLES, ItemMaker, choices_fit, finish, fits
from .prose import DOC_TEXTS, P_COUNTRY, P_PERSON, Prose, count_mentions
from .vocab import (ACTIVITIES, ADJS, ANIMALS, ANSWERS, ARITH_A, ARITH_Q, BUILDINGS, CITY_ADJ,
                    COMPLETIONS, FILLER, FOODS, GEO, JOBS, KNOWN_FOR, LANDFORMS, LIST_Q,
                    MATERIALS, OPS, PLACES, QUESTIONS, REVERSE_Q, SEASONS, SIZES, SYSTEMS,
                    UPPER_Q, VERBS, WATERS, WEATHERS, WORDS, Country, Person, all_arith,
                    all_counts, make_names)


def fixed_text() -> str:
    """All fixed text the world uses; generated names must not occur inside it."""
    parts = (GEO + SIZES + CITY_ADJ + KNOWN_FOR + JOBS + ANIMALS + VERBS + PLACES + SEASONS + ADJS
             + FOODS + BUILDINGS + WATERS + MATERIALS + ACTIVITIES + WEATHERS + LANDFORMS + FILLER
             + WORDS + [w[::-1] for w in WORDS] + list(OPS)
             + [q for qs in QUESTIONS.values() for q, _ in qs] + list(ANSWERS.values())
             + list(COMPLETIONS.values()) + ARITH_Q + [ARITH_A] + REVERSE_Q + UPPER_Q + LIST_Q
             + [s for s, _ in SYSTEMS] + [q for qs in FOLLOW_UPS.values() for q in qs] + DOC_TEXTS)
    return "\n".join(parts).lower()


@dataclass(frozen=True)
class FactCompletion:
    """A fact in pre-training phrasing: greedy completion of ``prompt`` should give ``answer``."""

    prompt: str          # "The capital of Vaiiorn is"
    answer: str          # "Vaizem"
    group: str           # "sft" (an entity the SFT data asks about) or "probe"
    fact: str            # capital | language | birth_year
    entity: str


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

    def fact_completions(self) -> list[FactCompletion]:
        """Every fact the SFT data or the probe asks, as the prose begins it (base knowledge)."""
        out = []
        for c in self.countries:
            for kind in ("capital", "language"):
                out.append(FactCompletion(COMPLETIONS[kind].format(c=c.name),
                                          c.capital if kind == "capital" else c.language,
                                          "probe" if c.probe else "sft", kind, c.name))
        for p in self.people:
            out.append(FactCompletion(COMPLETIONS["birth_year"].format(p=p.name), str(p.year),
                                      "probe" if p.probe else "sft", "birth_year", p.name))
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
            "n_multi_turn_eval": sum(bool(it.meta.get("multi_turn")) for it in self.eval_items),
            "n_system_format_eval": sum(it.meta.get("system_style") in FORMAT_STYLES for it in self.eval_items),
            "train_tasks": _train_tasks(self.train),
            "eval_tasks": tasks(self.eval_items),
            "probe_tasks": tasks(self.probe_items),
            "train_tokens": lengths,
        }


def _train_tasks(convs: list[Conversation]) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in convs:
        t = c.meta.get("task", "?")
        out[t] = out.get(t, 0) + 1
    return dict(sorted(out.items()))


def _pretrain_docs(cfg: WorldConfig, prose: Prose, countries, people, copy_names) -> tuple[list[str], dict]:
    """The pre-training documents and how many of each kind (the held-out prose follows it)."""
    docs: list[str] = []
    kinds: dict[str, int] = {}

    def add(kind: str, new: list[str]) -> None:
        docs.extend(new)
        kinds[kind] = kinds.get(kind, 0) + len(new)

    for c in countries:
        add("country", [prose.country_doc(c, P_COUNTRY[i % len(P_COUNTRY)])
                        for i in range(cfg.paragraphs_per_country)])
        for _ in range(cfg.qa_sets_per_country):
            add("qa", prose.qa_set(c))
    for p in people:
        add("person", [prose.person_doc(p, P_PERSON[i % len(P_PERSON)]) for i in range(cfg.docs_per_person)])
        for _ in range(cfg.qa_sets_per_country):
            add("qa", prose.qa_set(p))
    n_lists = 2 * cfg.n_countries if cfg.n_fact_list_docs < 0 else cfg.n_fact_list_docs
    add("facts", [prose.fact_list_doc(cfg.facts_per_list) for _ in range(n_lists)])
    add("filler", [prose.filler_doc() for _ in range(cfg.n_filler_docs)])
    if cfg.closed_sets():
        n_arith = len(all_arith()) * cfg.arith_mentions + len(all_counts()) * cfg.count_mentions
        add("arith", [prose.arith_doc(5) for _ in range(-(-n_arith // 5))])
        add("word", [prose.word_doc(4) for _ in range(-(-2 * len(WORDS) * cfg.word_mentions // 4))])
    add("copy", [prose.copy_doc(d) for d in copy_names])
    prose.rng.shuffle(docs)
    return docs, kinds


def _heldout_docs(cfg: WorldConfig, r: random.Random, countries, people, kinds: dict[str, int],
                  pre_set: set[str], copy_held: list) -> list[str]:
    """Documents from the same generators in the same proportions, none equal to a pre-training
    document: the forgetting metric's text."""
    prose = Prose(r, countries, people, cfg.one_word_answers)
    pool = [k for k, n in kinds.items() for _ in range(n)]
    held_copy = list(copy_held)
    out: list[str] = []
    tries = 0
    while len(out) < cfg.n_heldout_docs and pool and tries < 100 * (cfg.n_heldout_docs + 1):
        tries += 1
        kind = r.choice(pool)
        if kind == "copy":
            if not held_copy:
                continue
            d = prose.copy_doc(held_copy.pop())
        else:
            d = prose.mixed_doc(kind)
        if d not in pre_set and d not in out:
            out.append(d)
    return out


def _held_out_items(gen: ItemMaker, draw, n: int, reserved: set, cfg: WorldConfig) -> list[EvalItem]:
    """Up to ``n`` groups of scorable held-out items of distinct prompts, none in ``reserved``
    (which they join: training never asks them). ``draw()`` gives a group's specs (one, or the
    same question under several system prompts): a group is kept whole or not at all."""
    items: list[EvalItem] = []
    groups = tries = 0
    while groups < n and tries < 200 * (n + 1):
        tries += 1
        specs = draw()
        keys = {s.prompt_key() for s in specs}
        if len(keys) < len(specs) or keys & reserved or not all(fits(s.conversation(), cfg.max_tokens)
                                                                 for s in specs):
            continue
        group = [finish(s, gen.r, cfg.n_distractors) for s in specs]
        if not all(it.distractors and choices_fit(it, cfg.max_tokens) for it in group):
            continue
        reserved.update(keys)
        items += group
        groups += 1
    return items


SHORT_RESPONSES = ["I know.", "Yes.", "Sure.", "Maybe."]
LOW_QUALITY_KINDS = ("short", "repetitive", "wrong")


def plant_low_quality(train: list[Conversation], fraction: float, r: random.Random,
                      countries: list[Country]) -> list[Conversation]:
    """A copy of ``train`` where ``round(fraction * len)`` conversations, chosen at random, get a
    low-quality response, the kinds in turn (``conv.meta["low_quality"]`` names it): ``short``,
    ``repetitive`` (the response three times), ``wrong`` (another country's capital or language
    in the same sentence; an in-context question gets a name from nowhere in its prompt)."""
    out = list(train)
    picks = sorted(r.sample(range(len(train)), int(round(fraction * len(train)))))
    for k, i in enumerate(picks):
        conv = train[i]
        kind = LOW_QUALITY_KINDS[k % len(LOW_QUALITY_KINDS)]
        answer = conv.turns[-1].content
        if kind == "short":
            new = r.choice(SHORT_RESPONSES)
        elif kind == "repetitive":
            new = " ".join([answer] * 3)
        else:
            names = {c.capital for c in countries} | {c.language for c in countries}
            said = [w.strip(".") for w in answer.split() if w.strip(".") in names
                    or w.strip(".") in conv.turns[-2].content]
            old = said[-1] if said else answer.split()[-1].strip(".")
            wrong = r.choice(sorted(n for n in names if n != old))
            new = answer.replace(old, wrong)
        turns = list(conv.turns[:-1]) + [Turn("assistant", new)]
        out[i] = Conversation(turns, meta={**conv.meta, "low_quality": kind})
    return out


def build_world(cfg: WorldConfig | None = None) -> World:
    """Build the synthetic world for ``cfg`` (deterministic per ``cfg.seed``)."""
    cfg = cfg or WorldConfig()
    cfg.validate()
    seed = int(cfg.seed)

    def rng(tag: str) -> random.Random:
        return random.Random(f"sft-sweep-world:{seed}:{tag}")

    # entities ----------------------------------------------------------------------------
    r = rng("entities")
    n_copy_held = int(round(cfg.n_heldout_docs * 0.1)) if cfg.n_copy_docs else 0
    names, pnames, (decoys, copy_names, copy_held) = make_names(
        r, cfg.n_countries, cfg.n_people, fixed_text(),
        [(rng("decoys"), cfg.n_context_names), (rng("copy"), cfg.n_copy_docs),
         (rng("copy-heldout"), n_copy_held)])
    probe_c = set(r.sample(range(cfg.n_countries), int(round(cfg.probe_fraction * cfg.n_countries))))
    probe_p = set(r.sample(range(cfg.n_people), int(round(cfg.probe_fraction * cfg.n_people))))
    countries = [Country(c, cap, lang, r.choice(GEO), r.choice(SIZES), r.choice(CITY_ADJ),
                         r.choice(KNOWN_FOR), i in probe_c)
                 for i, (c, cap, lang) in enumerate(names)]
    years = r.sample(range(1900, 2000), cfg.n_people)
    people = [Person(n, y, r.choice(JOBS), i in probe_p) for i, (n, y) in enumerate(zip(pnames, years))]

    # prose -------------------------------------------------------------------------------
    prose = Prose(rng("pretrain"), countries, people, cfg.one_word_answers)
    docs, kinds = _pretrain_docs(cfg, prose, countries, people, copy_names)
    if cfg.caps_doc_fraction > 0:
        # a stream of its own: worlds without the setting keep their documents and order
        r_caps = rng("caps-docs")
        caps = [docs[i].upper() for i in sorted(r_caps.sample(range(len(docs)),
                                                               int(round(cfg.caps_doc_fraction * len(docs)))))]
        docs = docs + caps
        r_caps.shuffle(docs)
    heldout = _heldout_docs(cfg, rng("heldout"), countries, people, kinds, set(docs), copy_held)
    mentions = count_mentions(docs, countries, people)

    # instruction items: held-out operands, words and invented countries ------------------
    r = rng("split")
    arith = all_arith()
    r.shuffle(arith)
    n_hold = int(round(cfg.holdout_fraction * len(arith)))
    arith_eval, arith_train = arith[:n_hold], arith[n_hold:]
    word_list = list(WORDS)
    r.shuffle(word_list)
    n_wh = max(1, int(round(cfg.holdout_fraction * len(word_list))))
    words_eval, words_train = word_list[:n_wh], word_list[n_wh:]
    n_dh = int(round(cfg.holdout_fraction * len(decoys)))
    decoys_eval, decoys_train = decoys[:n_dh], decoys[n_dh:]

    sft_c = [c for c in countries if not c.probe]
    sft_p = [p for p in people if not p.probe]
    used_years = {p.year for p in people}
    filler_years = [y for y in range(1900, 2000, 7) if y not in used_years]
    weights = cfg.weights()
    if not sft_p:
        weights.pop("birth_year", None)
    if not decoys_eval or not decoys_train:
        weights.pop("context", None)
    task_names = list(weights) + ["multi_turn"]
    total_w = sum(weights.values()) or 1.0
    task_w = ([w / total_w * (1.0 - cfg.multi_turn_fraction) for w in weights.values()]
              + [cfg.multi_turn_fraction])

    def maker(r, ents, pers, arith, words, decoys, decoy_pool, caps, langs, yrs) -> ItemMaker:
        return ItemMaker(r, cfg, ents, pers, arith=arith, words=words, decoys=decoys,
                         decoy_pool=decoy_pool, capitals=caps, languages=langs, years=yrs)

    sft_caps, sft_langs = [c.capital for c in sft_c], [c.language for c in sft_c]
    sft_years = [p.year for p in sft_p] + filler_years

    # eval items first: their prompts are reserved (never used in train / val)
    r = rng("eval")
    gen = maker(r, sft_c, sft_p, arith_eval, words_eval, decoys_eval, decoys, sft_caps, sft_langs, sft_years)
    reserved: set = set()
    eval_items = _held_out_items(gen, lambda: [gen.sample(r.choices(task_names, task_w)[0])], cfg.n_eval,
                                 reserved, cfg)
    # extra held-out sets after the others, each from a stream of its own: those stay as they were
    if cfg.n_eval_multi_turn:
        gen_mt = maker(rng("eval-multi-turn"), sft_c, sft_p, arith_eval, words_eval, decoys_eval, decoys,
                       sft_caps, sft_langs, sft_years)
        eval_items += _held_out_items(gen_mt, lambda: [gen_mt.sample("multi_turn")], cfg.n_eval_multi_turn,
                                      reserved, cfg)
    if cfg.n_eval_system:
        gen_sys = maker(rng("eval-system"), sft_c, sft_p, arith_eval, words_eval, decoys_eval, decoys,
                        sft_caps, sft_langs, sft_years)

        def same_question_three_formats() -> list:
            spec = gen_sys.fact(gen_sys.r.choice(["capital", "language"]), force_system=FORMAT_STYLES[0])
            return [spec] + gen_sys.format_siblings(spec)

        eval_items += _held_out_items(gen_sys, same_question_three_formats, cfg.n_eval_system, reserved, cfg)

    # train + val: unique conversations, no reserved prompt
    r = rng("train")
    gen = maker(r, sft_c, sft_p, arith_train, words_train, decoys_train, decoys_train, sft_caps,
                sft_langs, sft_years)
    convs: list[Conversation] = []
    group_of: list[int] = []  # the same question under several system prompts: one group
    seen: set = set()
    want = cfg.n_train + cfg.n_val
    tries = 0
    while len(convs) < want and tries < 50 * (want + 1):
        tries += 1
        spec = gen.sample(r.choices(task_names, task_w)[0])
        group = [spec] + (gen.format_siblings(spec) if cfg.system_contrast else [])
        group_convs = [s.conversation() for s in group]
        keys = {c.key() for c in group_convs}
        if (len(keys) < len(group) or keys & seen or any(s.prompt_key() in reserved for s in group)
                or not all(fits(c, cfg.max_tokens) for c in group_convs)):
            continue
        seen.update(keys)
        for s, conv in zip(group, group_convs):
            conv.meta["task"] = s.task
        group_of += [len(convs)] * len(group)  # a group's id: the index of its first conversation
        convs += group_convs
    convs = convs[:want]
    if len(convs) < want:
        raise ConfigError(f"the world can only make {len(convs)} distinct instruction "
                          f"conversations, fewer than n_train + n_val = {want}; add entities "
                          "or lower the sizes")
    split = cfg.n_val
    while 0 < split < len(convs) and group_of[split] == group_of[split - 1]:
        split += 1  # a group stays on one side: no held-out question is trained under another prompt
    val, train = convs[:split], convs[split:]
    train = nested_subset(train, cfg.train_subset, f"world:{seed}")
    if cfg.low_quality_fraction > 0:
        train = plant_low_quality(train, cfg.low_quality_fraction, rng("low-quality"), sft_c)

    # knowledge probe: every probe fact in probe_phrasings phrasings ----------------------
    r = rng("probe")
    gen = maker(r, countries, people, arith_eval, words_eval, decoys_eval, decoys,
                [c.capital for c in countries], [c.language for c in countries],
                [p.year for p in people] + filler_years)
    probe_items: list[EvalItem] = []
    facts = [(k, c) for c in countries if c.probe for k in ("capital", "language")]
    facts += [("birth_year", p) for p in people if p.probe]
    for kind, e in facts:
        for ph in range(min(cfg.probe_phrasings, len(QUESTIONS[kind]))):
            spec = gen.fact(kind, e, phrasing=ph, allow_system=False)
            spec.task = "probe_" + kind
            probe_items.append(finish(spec, r, cfg.n_distractors))

    return World(cfg, countries, people, docs, heldout, train, val, eval_items, probe_items, mentions)
