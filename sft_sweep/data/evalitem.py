"""Evaluation items: a prompt, its reference answer and distractors, scored automatically."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .conversation import Conversation

_WORD = re.compile(r"\w+")


def words(text: str, case_sensitive: bool = False) -> list[str]:
    """The word tokens (runs of letters / digits / underscore) of a text, lower-cased unless
    ``case_sensitive``: punctuation and spacing never matter for scoring."""
    return _WORD.findall(text if case_sensitive else text.lower())


def _contains(hay: list[str], needle: list[str]) -> bool:
    n = len(needle)
    if n == 0:
        return False
    return any(hay[i:i + n] == needle for i in range(len(hay) - n + 1))


@dataclass
class EvalItem:
    """A held-out question with a checkable answer.

    Scoring of a generation (:meth:`is_correct`), on word tokens (see :func:`words`):

    - ``match="word"`` (the default): correct iff the reference occurs as a whole word (or
      whole run of words) in the generation and no distractor does. "The capital of Velmor
      is Tarsen." and "Tarsen" both score for reference "Tarsen"; a generation naming two
      capitals does not.
    - ``match="exact"``: correct iff the generation's words equal the reference's or the
      full response's (used for lists, where a wrong answer can contain the right one).

    Matching ignores case unless ``case_sensitive`` (the uppercase task).
    """

    prompt: Conversation
    reference: str
    response: str
    distractors: list[str]
    task: str
    match: str = "word"
    case_sensitive: bool = False
    meta: dict = field(default_factory=dict)

    def is_correct(self, generated_text: str) -> bool:
        cs = self.case_sensitive
        gen = words(generated_text, cs)
        if self.match == "exact":
            return gen == words(self.reference, cs) or gen == words(self.response, cs)
        if not _contains(gen, words(self.reference, cs)):
            return False
        return not any(_contains(gen, words(d, cs)) for d in self.distractors)

    def choices(self) -> list[str]:
        """Full candidate responses for log-prob ranking: index 0 is the reference response,
        then the response with its (last) reference occurrence replaced by each distractor."""
        pat = re.compile(r"(?<!\w)" + re.escape(self.reference) + r"(?!\w)")
        hits = list(pat.finditer(self.response))
        if not hits:
            return [self.response] + list(self.distractors)
        m = hits[-1]
        head, tail = self.response[: m.start()], self.response[m.end():]
        return [self.response] + [head + d + tail for d in self.distractors]

    def to_dict(self) -> dict:
        return {"prompt": self.prompt.to_dict()["messages"], "reference": self.reference,
                "response": self.response, "distractors": list(self.distractors),
                "task": self.task, "match": self.match, "case_sensitive": self.case_sensitive}
