"""The top-level fields of a data record: which ones a layout trains on, which ones are ignored, and
which ones say that the record's text is not a training target as it stands.

SFT imitates the assistant's answer. A record may carry fields that change what that answer means:

- a desirability label (``label: false`` as in KTO data, ``desirable``): the answer was judged,
  perhaps as one to avoid; imitating it would teach the undesirable answers too;
- a reward or score (``reward``, ``score``, ``rating`` ...): the record is a judged sample, to be
  weighed or filtered on, not copied;
- attached images, audio or video (``images``, ``audios``, ``videos`` ...): the text refers to media
  (often through ``<image>``-style placeholders) that a text model never sees, so the answer is
  trained without what it answers.

Such a record is refused (a bad record: ``on_bad_record=skip`` skips and counts it). Any other field
the layout does not read is ignored, and the loader reports it once per file with its count.
"""

from __future__ import annotations

import re

# Top-level fields each layout reads; the turn-list layouts keep the rest as metadata, which no
# template renders, so for training they are ignored too.
USED_FIELDS: dict[str, frozenset[str]] = {
    "alpaca": frozenset({"instruction", "input", "output", "system", "history"}),
    "sharegpt": frozenset({"conversations", "system"}),
    "messages": frozenset({"messages"}),
    "chatml": frozenset({"text"}),
}

DESIRABILITY, REWARD, MEDIA = "desirability label", "reward or score", "attached media"

_DESIRABILITY_FIELDS = ("label", "desirable", "is_desirable")
_DESIRABILITY_WORDS = {"desirable", "undesirable", "good", "bad"}
_REWARD_FIELDS = ("reward", "rewards", "score", "scores", "rating", "ratings")
_MEDIA_FIELDS = {"images": "image", "image": "image", "videos": "video", "video": "video",
                 "audios": "audio", "audio": "audio"}
_PLACEHOLDER = re.compile(r"<(image|video|audio)>")


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _present(v: object) -> bool:
    return v not in (None, "", [], {})


def _placeholders(rec: dict) -> int:
    """How many ``<image>`` / ``<video>`` / ``<audio>`` placeholders the record's strings hold."""
    count = 0

    def walk(v: object) -> None:
        nonlocal count
        if isinstance(v, str):
            count += len(_PLACEHOLDER.findall(v))
        elif isinstance(v, list):
            for x in v:
                walk(x)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)

    walk(rec)
    return count


def not_an_sft_target(rec: dict) -> tuple[str, str, str] | None:
    """(reason, field, message) when a field of ``rec`` says its text is no SFT target; else None."""
    for key in _DESIRABILITY_FIELDS:
        v = rec.get(key)
        if isinstance(v, bool) or (isinstance(v, str) and v.strip().lower() in _DESIRABILITY_WORDS):
            return (DESIRABILITY, key,
                    f"is a desirability label ({key}={v!r}): the answer was judged (KTO-style data), "
                    "and SFT would imitate the undesirable answers as well as the good ones; drop the "
                    "undesirable records and the field, or train with a method made for labels")
    for key in _REWARD_FIELDS:
        v = rec.get(key)
        if _is_number(v) or (isinstance(v, list) and v and all(_is_number(x) for x in v)):
            return (REWARD, key,
                    f"is a reward / score ({key}={v!r}): the record is a judged sample (reward or "
                    "preference data), not an answer to imitate as it stands; filter the file on the "
                    "score and drop the field")
    for key, kind in _MEDIA_FIELDS.items():
        v = rec.get(key)
        if _present(v):
            n = len(v) if isinstance(v, list) else 1
            marks = _placeholders({k: x for k, x in rec.items() if k != key})
            seen = f"; its text has {marks} <{kind}>-style placeholder(s)" if marks else ""
            return (MEDIA, key,
                    f"attaches {n} {kind} item(s){seen}: a text model never sees them, so the answer "
                    "would be trained without what it refers to; use text-only records")
    return None


def ignored_fields(rec: dict, fmt: str) -> list[str]:
    """The top-level fields of ``rec`` that layout ``fmt`` does not read."""
    used = USED_FIELDS[fmt]
    return [str(k) for k in rec if k not in used]


def ignored_fields_warning(path: str, counts: dict[str, int], n_records: int) -> str:
    listed = ", ".join(f"{k!r} ({v} of {n_records} records)" for k, v in sorted(counts.items()))
    return f"file {path}: fields not trained on, ignored: {listed}"
