"""Loading instruction data files into :class:`Conversation` objects.

Files: ``.json`` (a top-level array of records, or a single record object holding one
conversation) or ``.jsonl`` (one JSON object per line; blank lines are ignored). Text must be
UTF-8 (a leading byte-order mark is accepted).

Only supervised data is accepted. Preference data (``chosen`` + ``rejected`` answers in any
layout, KTO's ``completion`` + ``label`` or ``kto_tag``) is refused for the whole file,
whatever ``on_bad_record`` says: its answers are alternatives to rank, not targets to imitate.
Every conversation must end with an assistant turn (the answer trained on); one that ends with
a user or tool turn is a bad record. So is a record whose fields say its text is no training target
as it stands (a desirability label, a reward or score, attached images / audio / video: see
``record_fields``); top-level fields a format does not read are counted and reported once per
file (``report["ignored_fields"]`` and ``report["warnings"]``).

Only regular files are read, up to ``max_file_mb`` (``safe_read``): a FIFO, device, socket or
directory is refused by name without being opened.

Formats (one record -> one conversation):

- ``alpaca``: ``instruction`` (str, required), ``input`` (str, optional), ``output`` (str,
  required), ``system`` (str, optional), ``history`` (optional list of ``[instruction,
  response]`` pairs, earlier exchanges, oldest first). The user turn is ``instruction`` when
  ``input`` is empty, else ``instruction + "\\n\\n" + input``; the ``alpaca`` template shows the
  two under ``### Instruction:`` and ``### Input:`` (kept in ``meta["input"]``).
- ``sharegpt``: ``conversations``: a list of ``{"from", "value"}``. ``from`` names map to roles
  through :data:`SHAREGPT_ROLES` (system, human/user, gpt/assistant/bot/model) extended by
  ``role_map``, e.g. ``{"function_call": "assistant", "observation": "tool"}`` for tool-use
  data. An optional top-level ``system`` string becomes the system turn; other top-level
  fields (such as ``tools``) are kept in ``meta``.
- ``messages``: ``messages``: a list of ``{"role", "content"}`` (OpenAI chat format); roles
  system / user / assistant / tool, plus ``role_map`` for other names.

  In both turn-list formats a turn's text (``value`` / ``content``) is a string or a list of
  parts: ``{"type": "text", "text": ...}`` (OpenAI) or ``{"type": "text", "value": ...}``
  (LLaMA-Factory); text parts are joined with ``"\n"``, any other part (image, audio) makes
  the record bad. An optional per-turn ``loss_weight`` of 0 or 1 decides whether that turn is
  trained (``Turn.trained``); other weights are refused.
- ``chatml``: ``text``: ``<|im_start|>role\\ncontent<|im_end|>`` blocks (whitespace between
  blocks). Inherent to text ChatML: a content that contains the literal ``<|im_end|>`` cannot
  be told apart from the end of the turn.
- ``auto``: decided from the keys of the first records (``conversations`` -> sharegpt,
  ``messages`` -> messages, ``instruction`` -> alpaca, ``text`` -> chatml). Different shapes
  among the first records, or none recognised, is an error that lists what was seen.

Errors are :class:`~sft_sweep.errors.DataError` naming the file, the record (0-based index in
the array, or among the non-blank lines of a ``.jsonl``; the message also gives the line) and
the field (dotted path such as ``conversations[3].from``). ``on_bad_record="skip"`` skips bad
records instead and counts them in ``report`` (file-level problems are always errors).
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Callable
from pathlib import Path

from ..errors import ConfigError, DataError
from .conversation import ROLES, Conversation, ConversationError, Turn
from .record_fields import ignored_fields, ignored_fields_warning, not_an_sft_target
from .json_records import _BadRecord, _read_text, _shape, duplicate_keys_warning, iter_records  # noqa: F401

FORMATS: tuple[str, ...] = ("alpaca", "sharegpt", "messages", "chatml")

SHAREGPT_ROLES: dict[str, str] = {
    "system": "system", "human": "user", "user": "user",
    "gpt": "assistant", "assistant": "assistant", "bot": "assistant", "model": "assistant",
}

_DETECT_RECORDS = 20


def _type_name(v: object) -> str:
    return "null" if v is None else {dict: "object", list: "array", bool: "boolean",
                                     int: "number", float: "number", str: "string"}.get(
        type(v), type(v).__name__)


def _req_str(rec: dict, key: str, field: str | None = None) -> str:
    field = field or key
    if key not in rec:
        raise _BadRecord("missing field", field, "missing required field")
    return _as_str(rec[key], field)


def _as_str(v: object, field: str) -> str:
    if v is None:
        raise _BadRecord("null value", field, "is null; a string is required")
    if not isinstance(v, str):
        raise _BadRecord("wrong type", field, f"must be a string, got {_type_name(v)}")
    return v


def _opt_str(rec: dict, key: str) -> str:
    v = rec.get(key)
    if v is None:
        return ""
    if not isinstance(v, str):
        raise _BadRecord("wrong type", key, f"must be a string, got {_type_name(v)}")
    return v


def _turn_text(v: object, field: str) -> str:
    """A turn's text: a string, or a list of text parts joined by newlines."""
    if not isinstance(v, list):
        if v is None:
            raise _BadRecord("null value", field, "is null; a string is required")
        if not isinstance(v, str):
            raise _BadRecord("wrong type", field, f"must be a string, got {_type_name(v)} "
                             "(or a list of text parts)")
        return v
    if not v:
        raise _BadRecord("no content", field, "has no parts")
    texts = []
    for j, part in enumerate(v):
        where = f"{field}[{j}]"
        if not isinstance(part, dict):
            raise _BadRecord("wrong type", where, f"must be an object {{'type': 'text', 'text': ...}}, "
                             f"got {_type_name(part)}")
        kind = part.get("type", "text")
        if kind != "text":
            raise _BadRecord("non-text content", where,
                             f"non-text content part {kind!r}: only text can be trained on here")
        key = "text" if "text" in part else "value" if "value" in part else None
        if key is None:
            raise _BadRecord("missing field", where, "a text part needs 'text' or 'value'")
        texts.append(_as_str(part[key], f"{where}.{key}"))
    return "\n".join(texts)


def _loss_weight(item: dict, field: str) -> bool | None:
    """A turn's ``loss_weight``: 1 -> trained, 0 -> not, absent / null -> the mask mode decides."""
    w = item.get("loss_weight")
    if w is None:
        return None
    if isinstance(w, bool) or not isinstance(w, (int, float)):
        raise _BadRecord("bad loss_weight", field, f"must be a number (0 or 1), got {_type_name(w)}")
    if w not in (0, 1):
        raise _BadRecord("bad loss_weight", field,
                         f"must be 0 or 1, got {w} (fractional weights are not supported)")
    return w == 1


# Keys that make a record preference data (pairs to rank, or answers labelled good / bad).
_PREFERENCE_KEYS: tuple[tuple[str, ...], ...] = (("chosen", "rejected"), ("completion", "label"),
                                                 ("kto_tag",))


def _preference_keys(rec: object) -> tuple[str, ...] | None:
    if isinstance(rec, dict):
        for keys in _PREFERENCE_KEYS:
            if all(k in rec for k in keys):
                return keys
    return None


def _build(turns: list[Turn], fields: list[str], meta: dict) -> Conversation:
    """A Conversation, with rule violations mapped to the offending record field."""
    try:
        conv = Conversation(turns, meta)
    except ConversationError as e:
        field = None
        if e.turn is not None and e.turn < len(fields):
            field = fields[e.turn]
            if e.part == "content":
                field = re.sub(r"\.(from|role)$", "", field)
        raise _BadRecord("bad turn order", field, str(e)) from None
    if not any(t.role == "assistant" for t in conv.turns):
        raise _BadRecord("no assistant turn", fields[0].split("[")[0] if fields else None,
                         "record has no assistant turn")
    last = conv.turns[-1]
    if last.role != "assistant":
        raise _BadRecord("no final answer", fields[-1] if fields else None,
                         f"the last turn is {last.role!r}, not the assistant's: a training "
                         "conversation must end with the answer to learn")
    if not any(t.trained or (t.trained is None and t.role == "assistant") for t in conv.turns):
        raise _BadRecord("no trained turn", None,
                         "no trained turn: every assistant turn has loss_weight 0")
    return conv


# --------------------------------------------------------------------------- parsers


def _parse_alpaca(rec: dict, role_map: dict) -> Conversation:
    instruction = _req_str(rec, "instruction")
    inp = _opt_str(rec, "input")
    output = _req_str(rec, "output")
    system = _opt_str(rec, "system")
    history = rec.get("history")
    turns: list[Turn] = []
    fields: list[str] = []
    if system:
        turns.append(Turn("system", system))
        fields.append("system")
    if history is not None:
        if not isinstance(history, list):
            raise _BadRecord("wrong type", "history",
                             f"must be a list of [instruction, response] pairs, got {_type_name(history)}")
        for i, pair in enumerate(history):
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise _BadRecord("wrong type", f"history[{i}]",
                                 "must be an [instruction, response] pair")
            turns.append(Turn("user", _as_str(pair[0], f"history[{i}][0]")))
            turns.append(Turn("assistant", _as_str(pair[1], f"history[{i}][1]")))
            fields += [f"history[{i}][0]", f"history[{i}][1]"]
    user = instruction + ("\n\n" + inp if inp else "")
    meta = {"input": inp, "input_turn": len(turns)} if inp else {}
    turns.append(Turn("user", user))
    turns.append(Turn("assistant", output))
    fields += ["instruction", "output"]
    return _build(turns, fields, meta)


def _parse_turn_list(rec: dict, key: str, role_key: str, text_key: str, roles: dict) -> tuple:
    if key not in rec:
        raise _BadRecord("missing field", key, "missing required field")
    items = rec[key]
    if items is None:
        raise _BadRecord("null value", key, "is null; a list of turns is required")
    if not isinstance(items, list):
        raise _BadRecord("wrong type", key, f"must be a list of turns, got {_type_name(items)}")
    if not items:
        raise _BadRecord("no turns", key, "has no turns")
    turns, fields = [], []
    for i, item in enumerate(items):
        base = f"{key}[{i}]"
        if not isinstance(item, dict):
            raise _BadRecord("wrong type", base, f"must be an object, got {_type_name(item)}")
        name = _req_str(item, role_key, f"{base}.{role_key}")
        role = roles.get(name)
        if role is None:
            known = ", ".join(sorted(roles))
            raise _BadRecord("unknown role", f"{base}.{role_key}",
                             f"unknown role {name!r} (known: {known}); map it with "
                             f"role_map={{{name!r}: 'assistant' | 'tool' | 'user' | 'system'}}")
        if text_key not in item:
            raise _BadRecord("missing field", f"{base}.{text_key}", "missing required field")
        content = _turn_text(item[text_key], f"{base}.{text_key}")
        turns.append(Turn(role, content, _loss_weight(item, f"{base}.loss_weight")))
        fields.append(f"{base}.{role_key}")
    return turns, fields


def _parse_sharegpt(rec: dict, role_map: dict) -> Conversation:
    roles = {**SHAREGPT_ROLES, **role_map}
    turns, fields = _parse_turn_list(rec, "conversations", "from", "value", roles)
    system = _opt_str(rec, "system")
    if system and not (turns and turns[0].role == "system"):
        turns.insert(0, Turn("system", system))
        fields.insert(0, "system")
    meta = {k: v for k, v in rec.items() if k not in ("conversations", "system")}
    return _build(turns, fields, meta)


def _parse_messages(rec: dict, role_map: dict) -> Conversation:
    roles = {**{r: r for r in ROLES}, **role_map}
    turns, fields = _parse_turn_list(rec, "messages", "role", "content", roles)
    meta = {k: v for k, v in rec.items() if k != "messages"}
    return _build(turns, fields, meta)


_CHATML_BLOCK = re.compile(r"<\|im_start\|>([^\n<]*)\n(.*?)<\|im_end\|>", re.S)


def _parse_chatml(rec: dict, role_map: dict) -> Conversation:
    text = _req_str(rec, "text")
    roles = {**{r: r for r in ROLES}, **role_map}
    if "<|im_start|>" not in text:
        raise _BadRecord("not chatml", "text", "has no <|im_start|> block (raw text? use "
                         "load_raw_text for pre-training documents)")
    turns, pos = [], 0
    for m in _CHATML_BLOCK.finditer(text):
        between = text[pos:m.start()]
        if between.strip():
            raise _BadRecord("bad chatml", "text", f"text outside a block at character {pos}: "
                             f"{between.strip()[:40]!r}")
        name = m.group(1).strip()
        role = roles.get(name)
        if role is None:
            raise _BadRecord("unknown role", "text", f"block {len(turns)}: unknown role {name!r}")
        turns.append(Turn(role, m.group(2)))
        pos = m.end()
    rest = text[pos:]
    if rest.strip():
        what = "unterminated block (no <|im_end|>)" if "<|im_start|>" in rest else "text after the last block"
        raise _BadRecord("bad chatml", "text", f"{what} at character {pos}: {rest.strip()[:40]!r}")
    return _build(turns, ["text"] * len(turns), {})


_PARSERS = {"alpaca": _parse_alpaca, "sharegpt": _parse_sharegpt,
            "messages": _parse_messages, "chatml": _parse_chatml}


# --------------------------------------------------------------------------- public


def load_conversations(path: str | os.PathLike, format: str = "auto", *,
                       role_map: dict[str, str] | None = None, on_bad_record: str = "error",
                       report: dict | None = None, max_file_mb: float | None = None,
                       progress: Callable[[float, int], None] | None = None) -> list[Conversation]:
    """Parse a data file into conversations (see the module docstring for the formats).

    ``role_map``: extra role names -> role (``system``/``user``/``assistant``/``tool``).
    ``on_bad_record``: ``"error"`` (raise on the first bad record) or ``"skip"``.
    ``report`` (a dict, filled in): ``{"format", "loaded", "skipped", "skipped_reasons":
    {reason: count}, "skipped_examples": [first 5 messages], "ignored_fields": {field: records},
    "warnings": [one line per problem the user should see]}``.
    ``max_file_mb``: the largest file read (default ``safe_read.DEFAULT_MAX_FILE_MB``).
    ``progress(fraction read, records)``: called every few seconds while a large file is read.
    """
    path = Path(path)
    sp = str(path)
    if on_bad_record not in ("error", "skip"):
        raise ConfigError(f"on_bad_record must be 'error' or 'skip', got {on_bad_record!r}")
    if format != "auto" and format not in FORMATS:
        raise ConfigError(f"unknown data format {format!r}; choose auto or one of {', '.join(FORMATS)}")
    role_map = dict(role_map or {})
    for name, role in role_map.items():
        if role not in ROLES:
            raise ConfigError(f"role_map[{name!r}] = {role!r} is not a role ({', '.join(ROLES)})")

    duplicates: list = []
    # Records are read one at a time and each is turned into its conversation at once, so the
    # parsed file is never held whole; only the first records are kept a while, to detect the
    # format from them.
    records = iter_records(path, max_file_mb, duplicates, progress)
    head = list(itertools.islice(records, _DETECT_RECORDS))
    if not head:
        raise DataError("no records (empty array)", path=sp)

    def where(line: int | None) -> str:
        return f" (line {line})" if line is not None else ""

    def refuse_preference(i: int, line: int | None, keys: tuple[str, ...]) -> None:
        # the whole file is counted again for the message: this is the error's path only
        n = total = 0
        for r, _ in iter_records(path, max_file_mb):
            total += 1
            n += _preference_keys(r) is not None
        raise DataError(
            f"has {' and '.join(repr(k) for k in keys)}{where(line)}: this is preference "
            f"(DPO / KTO) data, not SFT data ({n} of {total} records are preference "
            "records); an SFT job would train on the prompts' history and ignore the ranked "
            "answers. Use an SFT file (a conversation that ends with the answer to learn)",
            path=sp, record=i)

    for i, (rec, line) in enumerate(head):
        keys = _preference_keys(rec)
        if keys is not None:
            refuse_preference(i, line, keys)
    fmt = format if format != "auto" else _detect(head, sp, where)
    parse = _PARSERS[fmt]
    out: list[Conversation] = []
    rep = {"format": fmt, "loaded": 0, "skipped": 0, "skipped_reasons": {}, "skipped_examples": [],
           "ignored_fields": {}, "warnings": []}
    ignored = rep["ignored_fields"]
    n_records = 0
    for i, (rec, line) in enumerate(itertools.chain(head, records)):
        n_records += 1
        if i == len(head):
            head.clear()  # read past the head: its records are converted, let them go
        keys = _preference_keys(rec)
        if keys is not None:
            refuse_preference(i, line, keys)
        try:
            if isinstance(rec, _BadRecord):
                raise rec
            if not isinstance(rec, dict):
                raise _BadRecord("not an object", None,
                                 f"record must be a JSON object, got {_type_name(rec)}")
            refused = not_an_sft_target(rec)
            if refused is not None:
                raise _BadRecord(*refused)
            for key in ignored_fields(rec, fmt):
                ignored[key] = ignored.get(key, 0) + 1
            out.append(parse(rec, role_map))
        except _BadRecord as e:
            msg = e.message + where(line)
            shape = _shape(rec) if isinstance(rec, dict) else None
            if e.reason == "missing field" and shape is not None and shape != fmt:
                msg += f" (this record looks like {shape}, the file was read as {fmt})"
            if on_bad_record == "error":
                raise DataError(msg, path=sp, record=i, field=e.field) from None
            rep["skipped"] += 1
            rep["skipped_reasons"][e.reason] = rep["skipped_reasons"].get(e.reason, 0) + 1
            if len(rep["skipped_examples"]) < 5:
                rep["skipped_examples"].append(str(DataError(msg, path=sp, record=i, field=e.field)))
    rep["loaded"] = len(out)
    if duplicates:
        rep["warnings"].append(duplicate_keys_warning(sp, duplicates))
    if ignored:
        rep["warnings"].append(ignored_fields_warning(sp, ignored, n_records))
    if report is not None:
        report.clear()
        report.update(rep)
    if not out:
        reasons = ", ".join(f"{k}: {v}" for k, v in rep["skipped_reasons"].items())
        raise DataError(f"no usable records: all {rep['skipped']} were skipped ({reasons})", path=sp)
    return out


def _detect(records: list, path: str, where) -> str:
    seen: dict[str, list[int]] = {}
    for i, (rec, line) in enumerate(records[:_DETECT_RECORDS]):
        if isinstance(rec, _BadRecord):
            continue
        shape = _shape(rec)
        if shape is None:
            desc = (f"keys {sorted(rec)[:8]}" if isinstance(rec, dict) else f"a JSON {_type_name(rec)}")
            if not seen:
                raise DataError(
                    f"unknown record shape: {desc}{where(line)}; expected a key among "
                    "conversations (ShareGPT), messages, instruction (Alpaca) or text (ChatML)",
                    path=path, record=i)
            continue
        seen.setdefault(shape, []).append(i)
    if not seen:
        raise DataError("could not detect the format: no readable record among the first "
                        f"{_DETECT_RECORDS}", path=path)
    if len(seen) > 1:
        desc = "; ".join(f"{fmt} at records {idx[:5]}" for fmt, idx in seen.items())
        first_other = min(idx[0] for idx in list(seen.values())[1:])
        raise DataError(f"mixed record shapes among the first records: {desc}", path=path,
                        record=first_other)
    return next(iter(seen))


_BLANK_LINE = re.compile(r"\n[ \t\r]*\n")


def load_raw_text(path: str | os.PathLike, report: dict | None = None,
                  max_file_mb: float | None = None) -> list[str]:
    """Raw documents for pre-training / replay.

    - ``.txt``: when the file has blank lines (empty or whitespace-only lines between text),
      they separate documents, so a document may span several lines; when it has none, every
      line is a document (one document per line, as in many corpus dumps). Documents are
      stripped of surrounding whitespace.
    - ``.jsonl``: one object per line with a string field ``text``.
    - ``.json``: an array of such objects, or an array of strings.
    Empty documents are dropped; no documents at all is an error. ``report`` (a dict, filled
    in): ``{"documents": n, "split": how the documents were told apart}``. ``max_file_mb`` as for
    :func:`load_conversations`.
    """
    path = Path(path)
    sp = str(path)
    if path.suffix.lower() == ".txt":
        text = _read_text(path, max_file_mb).replace("\r\n", "\n").strip()
        if _BLANK_LINE.search(text):
            docs, split = _BLANK_LINE.split(text), "blank lines separate documents (the file has blank lines)"
        else:
            docs, split = text.split("\n"), "one document per line (the file has no blank lines)"
        docs = [d.strip() for d in docs]
        docs = [d for d in docs if d]
    else:
        split = "one document per record"
        docs = []
        for i, (rec, line) in enumerate(iter_records(path, max_file_mb)):
            w = f" (line {line})" if line is not None else ""
            if isinstance(rec, _BadRecord):
                raise DataError(rec.message, path=sp, record=i)
            if isinstance(rec, str):
                docs.append(rec)
                continue
            if not isinstance(rec, dict):
                raise DataError(f"record must be an object with a 'text' field, got "
                                f"{_type_name(rec)}{w}", path=sp, record=i)
            if "text" not in rec:
                raise DataError(f"missing required field{w}", path=sp, record=i, field="text")
            v = rec["text"]
            if not isinstance(v, str):
                raise DataError(f"must be a string, got {_type_name(v)}{w}", path=sp, record=i,
                                field="text")
            docs.append(v)
        docs = [d for d in docs if d.strip()]
    if report is not None:
        report.clear()
        report.update({"documents": len(docs), "split": split})
    if not docs:
        raise DataError("no documents", path=sp)
    return docs
