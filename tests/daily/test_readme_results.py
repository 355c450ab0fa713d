"""The README's results table is the one rendered from the recorded run of its command."""

import importlib.util

from tests.conftest import REPO

spec = importlib.util.spec_from_file_location("readme_results", REPO / "benchmarks" / "readme_results.py")
readme_results = importlib.util.module_from_spec(spec)
spec.loader.exec_module(readme_results)


def test_readme_table_matches_the_recorded_run():
    import json

    record = json.loads(readme_results.RECORD.read_text())
    assert record["command"][:3] == ["sft-sweep", "-m", "experiment=quickstart"]
    assert len(record["jobs"]) == 6 and record["machine"]["cpu"]
    block = readme_results.readme_block((REPO / "README.md").read_text())
    assert block == readme_results.render(record)


def test_render_formats_every_job(tmp_path):
    job = {"lr": 3e-4, "replay": 0.5, "epochs": 4, "forgetting_pct": -0.4123,
           "base": {"follow_rate": 0.0, "answer_acc": 0.04, "knowledge_acc": 0.0, "base_knowledge_sft": 0.9833,
                    "base_knowledge_probe": 0.95},
           "final": {"follow_rate": 1.0, "answer_acc": 0.89, "knowledge_acc": 0.925, "base_knowledge_sft": 0.9667,
                     "base_knowledge_probe": 1.0}}
    record = {"date": "2026-01-01", "commit": "abc", "command": ["sft-sweep", "-m", "experiment=quickstart"],
              "machine": {"cpu": "X", "cores": 2, "usable_cores": 2, "os": "Linux", "python": "3.11", "numpy": "2"},
              "jobs": [job]}
    lines = readme_results.render(record).splitlines()
    assert lines[-2] == "| base model | | 0% | 4% | 0% | 98% / 95% | |"
    assert lines[-1] == "| 0.0003 | 0.5 | 100% | 89% | 92% | 97% / 100% | -0.4% |"
    readme = tmp_path / "README.md"
    readme.write_text(f"a\n{readme_results.START}\nold\n{readme_results.END}\nb\n")
    readme_results.write_readme(readme, "new table")
    assert readme.read_text() == f"a\n{readme_results.START}\nnew table\n{readme_results.END}\nb\n"


def test_compare_names_every_number_that_moved_or_is_missing():
    import copy
    import json

    record = json.loads(readme_results.RECORD.read_text())
    n, worst, lines = readme_results.compare(record, record)
    assert (worst, lines) == (0.0, []) and n == sum(len(j["base"]) + len(j["final"]) + 1 for j in record["jobs"])
    sweep = copy.deepcopy(record)
    job = sweep["jobs"][0]
    job["final"]["raw_loss"] = record["jobs"][0]["final"]["raw_loss"] * 1.01     # a loss is never 0
    del job["base"]["answer_acc"]
    n2, worst, lines = readme_results.compare(record, sweep)
    assert n2 == n and len(lines) == 2
    assert any("final.raw_loss" in x and "relative 0.01" in x for x in lines)
    assert any("base.answer_acc" in x and "missing" in x for x in lines) and worst == float("inf")
