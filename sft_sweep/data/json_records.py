"""Reading a data file into records: UTF-8 text within the size bound, JSON or JSON Lines parsed
with every repeated key and over-deep nesting found, and the error type a bad record raises.

The formats module (``formats.py``) turns these records into conversations; everything here is
about getting from bytes to records and naming what is wrong with them.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import DataError
from .safe_read import read_bytes_bounded

# The key whose presence says which format a record is in.
_SHAPE_KEYS = (("conversations", "sharegpt"), ("messages", "messages"),
               ("instruction", "alpaca"), ("text", "chatml"))


def _shape(rec: object) -> str | None:
    if not isinstance(rec, dict):
        return None
    for key, fmt in _SHAPE_KEYS:
        if key in rec:
            return fmt
    return None


class _BadRecord(Exception):
    """A record-level problem: reason (a short category for the report), field, message."""

    def __init__(self, reason: str, field: str | None, message: str) -> None:
        super().__init__(message)
        self.reason, self.field, self.message = reason, field, message


# --------------------------------------------------------------------------- file reading


def _read_text(path: Path, max_file_mb: float | None = None) -> str:
    raw = read_bytes_bounded(path, max_file_mb)
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        record = None
        if path.suffix.lower() == ".jsonl":
            lines = raw[: e.start].split(b"\n")
            record = sum(1 for ln in lines[:-1] if ln.strip())
        raise DataError(f"not valid UTF-8: byte 0x{raw[e.start]:02x} at offset {e.start} "
                        f"(line {line})", path=str(path), record=record) from None
    if not text.strip():
        raise DataError("file is empty", path=str(path))
    return text


#: The deepest nesting of arrays and objects a record may have (real records need a handful of
#: levels); deeper ones are bad records, since every reader of a record would walk that deep.
MAX_NESTING = 100


class _KeysSeenTwice:
    """``object_pairs_hook`` for the JSON decoder: builds each object as ``json`` does (the last
    value of a repeated key wins) and notes every object that repeats a key, with the key."""

    def __init__(self) -> None:
        self.found: list[tuple[dict, str]] = []

    def __call__(self, pairs: list) -> dict:
        obj = dict(pairs)
        if len(obj) != len(pairs):
            seen: set = set()
            for key, _ in pairs:
                if key in seen:
                    self.found.append((obj, key))
                    break
                seen.add(key)
        return obj


def _nested_deeper(value: object, limit: int) -> bool:
    """Whether arrays / objects in ``value`` nest more than ``limit`` levels (walked without
    recursion)."""
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, dict):
            v = v.values()
        elif not isinstance(v, list):
            continue
        if depth > limit:
            return True
        stack.extend((x, depth + 1) for x in v if isinstance(x, (dict, list)))
    return False


def _too_deep(text: str, value: object, levels: int = 0) -> bool:
    """Whether ``value`` (parsed from ``text``) nests more than MAX_NESTING levels below its own
    first ``levels``; counting brackets rules out almost every record without a walk."""
    if text.count("[") + text.count("{") <= MAX_NESTING + levels:
        return False
    return _nested_deeper(value, MAX_NESTING + levels)


def _contains(value: object, target: object) -> bool:
    stack = [value]
    while stack:
        v = stack.pop()
        if v is target:
            return True
        if isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return False


def _nested_error(where: str) -> _BadRecord:
    return _BadRecord("nested too deeply", None,
                      f"arrays and objects nested more than {MAX_NESTING} levels deep{where}")


def _records(path: Path, max_file_mb: float | None = None,
             duplicates: list | None = None) -> list[tuple[object, int | None]]:
    """(record, line) pairs. JSON syntax errors and records nested too deeply in a .jsonl line are
    returned as ``(_BadRecord, line)`` so that ``on_bad_record="skip"`` can skip them (in a .json
    array, a record nested too deeply likewise). ``duplicates`` (a list, filled in): (record
    index, key) for each record with an object that repeats a key."""
    text = _read_text(path, max_file_mb)
    suffix = path.suffix.lower()
    repeated = _KeysSeenTwice()
    decode = json.JSONDecoder(object_pairs_hook=repeated).decode
    if suffix == ".jsonl":
        out: list[tuple[object, int | None]] = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = decode(line)
            except json.JSONDecodeError as e:
                rec = _BadRecord("invalid JSON", None,
                                 f"invalid JSON on line {lineno}: {e.msg} (column {e.colno})")
            except RecursionError:
                rec = _nested_error(f" on line {lineno}")
            else:
                if _too_deep(line, rec):
                    rec = _nested_error(f" on line {lineno}")
            if repeated.found and duplicates is not None:
                duplicates.append((len(out), repeated.found[0][1]))
            repeated.found.clear()
            out.append((rec, lineno))
        return out
    if suffix == ".json":
        try:
            data = decode(text)
        except json.JSONDecodeError as e:
            hint = ""
            if e.msg == "Extra data":
                hint = " (one JSON value per line? name the file .jsonl)"
            raise DataError(f"invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}{hint}",
                            path=str(path)) from None
        except RecursionError:
            raise DataError("arrays and objects nested too deeply to read (more than "
                            f"{MAX_NESTING} levels are refused)", path=str(path)) from None
        if isinstance(data, dict):
            if _shape(data) is not None:  # one conversation record on its own
                data = [data]
            else:
                keys = ", ".join(sorted(map(str, data))[:8])
                raise DataError(f"top-level JSON object (keys: {keys}) where an array of records "
                                "was expected; wrap the records in a list [...]", path=str(path))
        if not isinstance(data, list):
            raise DataError(f"top-level JSON {type(data).__name__} where an array of records "
                            "was expected", path=str(path))
        out = [(rec, None) for rec in data]
        if _too_deep(text, data, 1):
            out = [(_nested_error("") if _nested_deeper(rec, MAX_NESTING) else rec, None)
                   for rec in data]
        if repeated.found and duplicates is not None:
            for i, rec in enumerate(data):
                key = next((k for obj, k in repeated.found if _contains(rec, obj)), None)
                if key is not None:
                    duplicates.append((i, key))
        return out
    raise DataError(f"unsupported file extension {path.suffix!r}; use .json or .jsonl",
                    path=str(path))


def duplicate_keys_warning(path: str, duplicates: list, lines: list) -> str:
    """One line naming the records (and keys) with a repeated key: JSON keeps the last value."""
    shown = "; ".join(f"record {i}{'' if lines[i] is None else f' (line {lines[i]})'}: {k!r}"
                      for i, k in duplicates[:5])
    more = f"; and {len(duplicates) - 5} more" if len(duplicates) > 5 else ""
    return (f"file {path}: duplicate keys in {len(duplicates)} record(s), the last value of each "
            f"kept: {shown}{more}")


# --------------------------------------------------------------------------- field helpers
