"""Reading a data file costs a few times its size, not tens of times, and says how far it is.

The file is read a record at a time and each record becomes its conversation at once, so the
parsed file (every record's dicts and strings) is never held whole; Turn, Conversation and
Example carry no per-object dict. Measured with tracemalloc (the Python allocations, which is
what grows with the file), on the worst shape for overhead: many short records.
"""

from __future__ import annotations

import json
import tracemalloc

import pytest

from sft_sweep.data import json_records, load_conversations


def _short_records(path, n: int, suffix: str) -> int:
    recs = [{"instruction": f"Name a colour that rhymes with item {i}.", "input": "",
             "output": f"Colour number {i % 97} is fine."} for i in range(n)]
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    else:
        path.write_text(json.dumps(recs), encoding="utf-8")
    return path.stat().st_size


# A JSON array's text is held while its records are read (a JSON value is parsed from text): one
# file's size more than JSON Lines, read a line at a time.
@pytest.mark.parametrize("suffix,bound", [(".jsonl", 5.0), (".json", 6.0)])
def test_loading_a_file_peaks_at_a_few_times_its_size(tmp_path, suffix, bound):
    path = tmp_path / f"short{suffix}"
    size = _short_records(path, 30_000, suffix)
    tracemalloc.start()
    try:
        convs = load_conversations(path, "alpaca")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(convs) == 30_000
    # 78x before: the whole file parsed before any conversation was built, Turn and Conversation
    # with a __dict__ each, and the read buffer allocated at the size limit (256 MB)
    assert peak <= bound * size, f"peak {peak / size:.1f}x the file's size"


def test_reading_a_large_file_reports_its_progress(tmp_path, monkeypatch):
    path = tmp_path / "short.jsonl"
    _short_records(path, 2_000, ".jsonl")
    # report at every record, as a file that takes long would every few seconds
    monkeypatch.setattr(json_records.ReadProgress.__init__, "__defaults__", (0.0, 0.0))
    seen: list[tuple[float, int]] = []
    load_conversations(path, "alpaca", progress=lambda f, n: seen.append((f, n)))
    assert [n for _, n in seen] == list(range(1, 2_001))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)


def test_a_small_file_reports_nothing(tmp_path):
    path = tmp_path / "short.jsonl"
    _short_records(path, 200, ".jsonl")
    seen: list = []
    load_conversations(path, "alpaca", progress=lambda f, n: seen.append((f, n)))
    assert seen == []
