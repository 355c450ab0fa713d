"""Quality filters for instruction data (length, response-to-prompt ratio, word diversity) and exact dedup.

Per conversation:

- response = the contents of all assistant turns joined by ``"\\n"``; prompt = the contents
  of all other turns (system, user, tool) joined by ``"\\n"``;
- ``response_chars`` = characters in the response;
- ``response_to_prompt_ratio`` = response chars / max(prompt chars, 1);
- ``token_diversity`` = distinct words / words of the response (lower-cased, split on
  whitespace; 1.0 for an empty response). Words rather than byte tokens: with a byte-level
  tokenizer, distinct-bytes / bytes mostly measures length, while a repetitive answer has
  low word diversity.

Rules apply in this order and each removed conversation is counted under the first rule
that removes it: ``too_short`` (chars < min_response_chars), ``too_long`` (chars >
max_response_chars, when that is > 0), ``low_ratio``, ``low_diversity``, then
``duplicate`` (the same turns, roles and texts, as an earlier kept conversation).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from .conversation import Conversation


@dataclass
class QualityConfig:
    min_response_chars: int = 1
    max_response_chars: int = 0               # 0 = no limit
    min_response_to_prompt_ratio: float = 0.0
    min_token_diversity: float = 0.0
    dedup: bool = True

    def validate(self) -> None:
        if self.min_response_chars < 0 or self.max_response_chars < 0:
            raise ConfigError("quality: response char limits must be >= 0")
        if self.min_response_to_prompt_ratio < 0:
            raise ConfigError("quality: min_response_to_prompt_ratio must be >= 0")
        if not 0.0 <= self.min_token_diversity <= 1.0:
            raise ConfigError("quality: min_token_diversity must be in [0, 1]")


RULES = ("too_short", "too_long", "low_ratio", "low_diversity", "duplicate")


def quality_metrics(conv: Conversation) -> dict:
    """The per-conversation measures the filters use."""
    response = "\n".join(t.content for t in conv.turns if t.role == "assistant")
    prompt = "\n".join(t.content for t in conv.turns if t.role != "assistant")
    ws = response.lower().split()
    return {
        "response_chars": len(response),
        "prompt_chars": len(prompt),
        "response_to_prompt_ratio": len(response) / max(len(prompt), 1),
        "token_diversity": (len(set(ws)) / len(ws)) if ws else 1.0,
    }


def filter_quality(conversations: list[Conversation],
                   cfg: QualityConfig | None = None) -> tuple[list[Conversation], dict]:
    """Keep the conversations that pass every rule. Report: ``{"n_in", "n_kept", "removed":
    {rule: count}}`` plus the mean measures of the kept conversations."""
    cfg = cfg or QualityConfig()
    cfg.validate()
    removed = {k: 0 for k in RULES}
    kept: list[Conversation] = []
    seen: set = set()
    sums = {"response_chars": 0.0, "response_to_prompt_ratio": 0.0, "token_diversity": 0.0}
    for conv in conversations:
        m = quality_metrics(conv)
        if m["response_chars"] < cfg.min_response_chars:
            removed["too_short"] += 1
        elif cfg.max_response_chars > 0 and m["response_chars"] > cfg.max_response_chars:
            removed["too_long"] += 1
        elif m["response_to_prompt_ratio"] < cfg.min_response_to_prompt_ratio:
            removed["low_ratio"] += 1
        elif m["token_diversity"] < cfg.min_token_diversity:
            removed["low_diversity"] += 1
        elif cfg.dedup and conv.key() in seen:
            removed["duplicate"] += 1
        else:
            seen.add(conv.key())
            kept.append(conv)
            for k in sums:
                sums[k] += m[k]
    n = max(len(kept), 1)
    report = {"n_in": len(conversations), "n_kept": len(kept), "removed": removed,
              "kept_mean": {k: round(v / n, 4) for k, v in sums.items()}}
    return kept, report


def dedup_conversations(conversations: list[Conversation]) -> tuple[list[Conversation], int]:
    """Exact duplicates removed (the first copy kept, order kept); returns (kept, n_removed).

    Run before a validation split, so that copies of one conversation never land on both sides.
    """
    seen: set = set()
    kept = []
    for conv in conversations:
        k = conv.key()
        if k not in seen:
            seen.add(k)
            kept.append(conv)
    return kept, len(conversations) - len(kept)
