"""Reading a data file into records: UTF-8 text within the size bound, JSON or JSON Lines parsed
with every repeated key and over-deep nesting found, and the error type a bad record raises.

The formats module (``formats.py``) turns these records into conversations; everything here is
about getting from bytes to records and naming what is wrong with them.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import DataError
from .safe_read import lines_bounded, read_bytes_bounded

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


def _nested_error(where: str) -> _BadRecord:
    return _BadRecord("nested too deeply", None,
                      f"arrays and objects nested more than {MAX_NESTING} levels deep{where}")


class ReadProgress:
    """Calls ``report(fraction read, records so far)`` while a file is read, first after
    ``first_s`` seconds and then every ``every_s``: a large file says it is being read, a small
    one says nothing."""

    def __init__(self, report: Callable[[float, int], None] | None, first_s: float = 3.0,
                 every_s: float = 10.0) -> None:
        self.report, self.every_s = report, every_s
        self.next = time.monotonic() + first_s

    def __call__(self, fraction: float, records: int) -> None:
        if self.report is not None and time.monotonic() >= self.next:
            self.report(min(max(fraction, 0.0), 1.0), records)
            self.next = time.monotonic() + self.every_s


def _decode_line(raw: bytes, offset: int, lineno: int, record: int, path: Path) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"not valid UTF-8: byte 0x{raw[e.start]:02x} at offset {offset + e.start} "
                        f"(line {lineno})", path=str(path), record=record) from None


def _jsonl_records(path: Path, max_file_mb: float | None, duplicates: list | None,
                   progress: ReadProgress) -> Iterator[tuple[object, int | None]]:
    """The records of a JSON Lines file, a line at a time (see ``iter_records``)."""
    repeated = _KeysSeenTwice()
    decode = json.JSONDecoder(object_pairs_hook=repeated).decode
    n = 0
    for lineno, (offset, size, raw) in enumerate(lines_bounded(path, max_file_mb), 1):
        if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw, offset = raw[3:], offset + 3
        line = _decode_line(raw, offset, lineno, n, path).rstrip("\r\n")
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
            duplicates.append((n, repeated.found[0][1], lineno))
        repeated.found.clear()
        yield rec, lineno
        n += 1
        progress((offset + len(raw)) / max(size, 1), n)
    if n == 0:
        raise DataError("file is empty", path=str(path))


_SPACE = re.compile(r"[ \t\n\r]*")


def _json_error(e: json.JSONDecodeError, path: Path) -> DataError:
    hint = " (one JSON value per line? name the file .jsonl)" if e.msg == "Extra data" else ""
    return DataError(f"invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}{hint}", path=str(path))


def _json_records(path: Path, max_file_mb: float | None, duplicates: list | None,
                  progress: ReadProgress) -> Iterator[tuple[object, int | None]]:
    """The records of a JSON file, an array element at a time (see ``iter_records``): only the
    text and the record being read are held, never the whole parsed array."""
    text = _read_text(path, max_file_mb)
    repeated = _KeysSeenTwice()
    decoder = json.JSONDecoder(object_pairs_hook=repeated)
    at = _SPACE.match(text).end()
    if text[at] != "[":  # one record, or not records at all: read whole (it is a single value)
        try:
            data = decoder.decode(text)
        except json.JSONDecodeError as e:
            raise _json_error(e, path) from None
        except RecursionError:
            raise _too_deep_file(path) from None
        if isinstance(data, dict) and _shape(data) is not None:  # one conversation record on its own
            if repeated.found and duplicates is not None:
                duplicates.append((0, repeated.found[0][1], None))
            yield (_nested_error("") if _too_deep(text, data) else data), None
            return
        if isinstance(data, dict):
            keys = ", ".join(sorted(map(str, data))[:8])
            raise DataError(f"top-level JSON object (keys: {keys}) where an array of records "
                            "was expected; wrap the records in a list [...]", path=str(path))
        raise DataError(f"top-level JSON {type(data).__name__} where an array of records "
                        "was expected", path=str(path))
    at = _SPACE.match(text, at + 1).end()
    n = 0
    try:
        if text.startswith("]", at):
            at = _SPACE.match(text, at + 1).end()
        else:
            while True:
                start = at
                try:
                    rec, at = decoder.raw_decode(text, start)
                except RecursionError:
                    raise _too_deep_file(path) from None
                if _too_deep(text[start:at], rec):
                    rec = _nested_error("")
                if repeated.found and duplicates is not None:
                    duplicates.append((n, repeated.found[0][1], None))
                repeated.found.clear()
                yield rec, None
                n += 1
                progress(at / len(text), n)
                at = _SPACE.match(text, at).end()
                if text.startswith(",", at):
                    at = _SPACE.match(text, at + 1).end()
                elif text.startswith("]", at):
                    at = _SPACE.match(text, at + 1).end()
                    break
                else:
                    raise json.JSONDecodeError("Expecting ',' delimiter", text, at)
        if at != len(text):
            raise json.JSONDecodeError("Extra data", text, at)
    except json.JSONDecodeError as e:
        raise _json_error(e, path) from None


def _too_deep_file(path: Path) -> DataError:
    return DataError("arrays and objects nested too deeply to read (more than "
                     f"{MAX_NESTING} levels are refused)", path=str(path))


def iter_records(path: Path, max_file_mb: float | None = None, duplicates: list | None = None,
                 progress: Callable[[float, int], None] | None = None
                 ) -> Iterator[tuple[object, int | None]]:
    """(record, line) pairs, one at a time: a caller that turns each into what it keeps holds
    no more than that. JSON syntax errors and records nested too deeply in a .jsonl line come
    as ``(_BadRecord, line)`` so that ``on_bad_record="skip"`` can skip them (in a .json array,
    a record nested too deeply likewise); a .json array with a syntax error is a DataError when
    the reading reaches it. ``duplicates`` (a list, filled in): (record index, key, line) for
    each record with an object that repeats a key. ``progress(fraction read, records)`` is
    called now and then while a large file is read."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _jsonl_records(path, max_file_mb, duplicates, ReadProgress(progress))
    if suffix == ".json":
        return _json_records(path, max_file_mb, duplicates, ReadProgress(progress))
    _read_text(path, max_file_mb)  # what the path is, and its bytes, are named first
    raise DataError(f"unsupported file extension {path.suffix!r}; use .json or .jsonl",
                    path=str(path))


def duplicate_keys_warning(path: str, duplicates: list) -> str:
    """One line naming the records (and keys) with a repeated key: JSON keeps the last value.
    ``duplicates``: (record index, key, line or None) as ``iter_records`` finds them."""
    shown = "; ".join(f"record {i}{'' if line is None else f' (line {line})'}: {k!r}"
                      for i, k, line in duplicates[:5])
    more = f"; and {len(duplicates) - 5} more" if len(duplicates) > 5 else ""
    return (f"file {path}: duplicate keys in {len(duplicates)} record(s), the last value of each "
            f"kept: {shown}{more}")


# --------------------------------------------------------------------------- field helpers
