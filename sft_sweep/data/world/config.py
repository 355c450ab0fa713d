"""The world's settings (``data.world.*``): entities, pre-training prose, instruction data."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...errors import ConfigError

#: Every instruction task the world can generate. The entity tasks ask a fact of the prose;
#: ``context`` states an invented fact in the question; the closed-set tasks ask small facts
#: (sums, reversals, capitals of words, counting runs) that the prose then also states.
ENTITY_TASKS = ("capital", "language", "birth_year")
CLOSED_SET_TASKS = ("arithmetic", "reverse", "uppercase", "list")
TASKS = ENTITY_TASKS + ("context",) + CLOSED_SET_TASKS


def default_task_weights() -> dict[str, float]:
    """Capitals, languages and in-context copy questions: the tasks measured to work on the mini
    model. The others stay available (set a weight > 0 to use them)."""
    return {"capital": 0.4, "language": 0.4, "context": 0.2, "birth_year": 0.0,
            "arithmetic": 0.0, "reverse": 0.0, "uppercase": 0.0, "list": 0.0}


@dataclass
class WorldConfig:
    seed: int = 0
    # entities
    n_countries: int = 40
    n_people: int = 0                     # people (birth years); 0: none
    probe_fraction: float = 0.25          # of countries and of people: facts seen only in pre-training
    # pre-training prose
    paragraphs_per_country: int = 4
    qa_sets_per_country: int = 2          # each set: every question phrasing of each fact, as Q/A
    docs_per_person: int = 6
    n_fact_list_docs: int = -1            # -1: 2 per country
    facts_per_list: int = 4
    n_filler_docs: int = 60
    n_copy_docs: int = 0                  # one-off documents about a fresh invented country each
    n_context_names: int = 80             # invented countries used only in in-context questions
    arith_mentions: int = 3               # closed sets (only with a closed-set task): times each
    word_mentions: int = 3                # sum / word fact / counting run is stated
    count_mentions: int = 2
    n_heldout_docs: int = 60
    # Share of the pre-training documents added a second time in capital letters, so that the
    # base model has seen its names upper-cased (answers "in capital letters" must recall them so)
    caps_doc_fraction: float = 0.0
    # instruction data
    task_weights: dict[str, float] = field(default_factory=default_task_weights)
    n_train: int = 450
    # Train on only this many of the n_train conversations (0: all): a seeded subset, nested
    # across sizes (the 50 are among the 100), drawn before low-quality responses are planted,
    # so the planted share is exact at every size and val / held-out items do not change.
    train_subset: int = 0
    n_val: int = 50
    n_eval: int = 100
    probe_phrasings: int = 2              # probe items per probe fact
    # Terse questions ("Capital of X?") answered with the bare name; off: every answer is a full
    # sentence ("The capital of X is Y."), which routes the answer through the prose's phrasing.
    one_word_answers: bool = False
    n_distractors: int = 9
    multi_turn_fraction: float = 0.0      # share of two-exchange conversations
    # Held-out two-exchange items added after the n_eval others, whatever multi_turn_fraction is
    # (so single-turn training is scored on second turns too); evaluate them with
    # eval.max_items >= n_eval + n_eval_multi_turn.
    n_eval_multi_turn: int = 0
    system_fraction: float = 0.0          # share of single-turn items with a system prompt
    # Every training fact question with a format-setting system prompt is also trained under the
    # other two format prompts: the same question, three formats, only the system prompt decides.
    system_contrast: bool = False
    # Held-out fact questions, each asked under the three format-setting system prompts (3 items
    # each), added after the other held-out items whatever system_fraction is (so training
    # without system prompts is scored on them too); evaluate with eval.max_items large enough.
    n_eval_system: int = 0
    # Share of standalone capital / language questions (no system prompt, not the probe's) that
    # start with a lead-in sentence of ~70 characters: prompts of very different lengths, same
    # answers. The longer conversations need max_tokens (and model.block_size) of ~192.
    long_prompt_fraction: float = 0.0
    # Share of training conversations whose response is planted low-quality, in equal parts: too
    # short ("I know."), repetitive (the answer said three times) and wrong (another entity's fact
    # in the right form). The first two are what quality filters can catch; the third is not.
    low_quality_fraction: float = 0.0
    holdout_fraction: float = 0.15        # arithmetic pairs, words, invented countries for eval only
    max_tokens: int = 128                 # every train/val/eval conversation fits, all templates

    def validate(self) -> None:
        ints = ["n_countries", "n_people", "paragraphs_per_country", "qa_sets_per_country",
                "docs_per_person", "facts_per_list", "n_filler_docs", "n_copy_docs",
                "n_context_names", "arith_mentions", "word_mentions", "count_mentions",
                "n_heldout_docs", "n_train", "train_subset", "n_val", "n_eval_multi_turn", "n_eval_system", "n_eval", "probe_phrasings", "n_distractors"]
        for k in ints:
            if int(getattr(self, k)) < 0:
                raise ConfigError(f"world.{k} must be >= 0, got {getattr(self, k)}")
        if self.train_subset > self.n_train:
            raise ConfigError(f"world.train_subset ({self.train_subset}) must be <= world.n_train "
                              f"({self.n_train}); 0 trains on all of them")
        if self.n_countries < 4:
            raise ConfigError(f"world.n_countries must be >= 4, got {self.n_countries}")
        for k in ("probe_fraction", "multi_turn_fraction", "system_fraction", "holdout_fraction", "caps_doc_fraction",
                  "low_quality_fraction", "long_prompt_fraction"):
            v = float(getattr(self, k))
            if not 0.0 <= v < 1.0:
                raise ConfigError(f"world.{k} must be in [0, 1), got {v}")
        if self.max_tokens < 64:
            raise ConfigError(f"world.max_tokens must be >= 64, got {self.max_tokens}")
        if self.long_prompt_fraction > 0 and self.max_tokens < 192:
            raise ConfigError(f"world.long_prompt_fraction > 0 needs world.max_tokens >= 192 (and "
                              f"model.block_size >= 191), got max_tokens {self.max_tokens}: "
                              "questions with a lead-in do not fit in fewer")
        unknown = sorted(set(self.task_weights) - set(TASKS))
        if unknown:
            raise ConfigError(f"world.task_weights: unknown task(s) {unknown}; known: {list(TASKS)}")
        for k, w in self.task_weights.items():
            if not float(w) >= 0.0:
                raise ConfigError(f"world.task_weights.{k} must be >= 0, got {w}")
        if not any(float(w) > 0 for w in self.task_weights.values()) and self.multi_turn_fraction == 0:
            raise ConfigError("world.task_weights: at least one task needs a weight > 0")
        if float(self.task_weights.get("birth_year", 0)) > 0 and self.n_people == 0:
            raise ConfigError("world.task_weights.birth_year > 0 needs people (world.n_people > 0)")

    def weights(self) -> dict[str, float]:
        """Task weights > 0, in the fixed task order (so the sampling order is stable)."""
        return {t: float(self.task_weights.get(t, 0.0)) for t in TASKS
                if float(self.task_weights.get(t, 0.0)) > 0}

    def closed_sets(self) -> bool:
        """Whether the closed-set facts are part of this world (prose and questions)."""
        w = self.weights()
        return any(t in w for t in CLOSED_SET_TASKS)
