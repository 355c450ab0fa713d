"""Pre-training text from several files: each read with the raw-text reader, all of them in the
base model's cache key and the job's input digests, errors naming the file, and a one-file
config's hash unchanged."""

import json
from types import SimpleNamespace

import pytest

from sft_sweep.config import config_dict, config_hash, register_configs, to_object
from sft_sweep.data import pretrain_paths, pretrain_source, prepare
from sft_sweep.data.prepare import raw_text
from sft_sweep.errors import ConfigError, DataError
from sft_sweep.train.job import Job
from tests.conftest import REPO, compose_cfg

register_configs()
SMOKE = ["experiment=smoke", "train.threads=1"]


def _files(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"q{i}"},
                                                      {"role": "assistant", "content": f"answer {i}"}]}) + "\n"
                            for i in range(20)))
    c4 = tmp_path / "c4.jsonl"
    c4.write_text("".join(json.dumps({"text": f"Web page {i} talks about the weather in town {i}."}) + "\n"
                          for i in range(12)))
    wiki = tmp_path / "wiki.txt"
    wiki.write_text("".join(f"Article {i} describes the river number {i}.\n" for i in range(8)))
    return data, c4, wiki


def _cfg(data, text, *extra):
    return to_object(compose_cfg([*SMOKE, "data=files", f"data.datasets.main.path={data}",
                                  f"data.pretrain_text={text}", *extra]))


def test_two_files_are_read_in_order_and_counted_per_file(tmp_path):
    data, c4, wiki = _files(tmp_path)
    cfg = _cfg(data, f"[{c4},{wiki}]")
    assert cfg.data.pretrain_text == [str(c4), str(wiki)]
    assert [k for k, _ in pretrain_paths(cfg)] == ["data.pretrain_text[0]", "data.pretrain_text[1]"]
    report: dict = {}
    train, held = raw_text(cfg, report=report)
    rep = report["pretrain_text"]
    assert rep["documents"] == 20 and rep["held_out"] == 2 and len(train) + len(held) == 20
    assert [(f["path"], f["documents"]) for f in rep["files"]] == [(str(c4), 12), (str(wiki), 8)]
    assert rep["files"][1]["split"].startswith("one document per line")
    docs = train + held
    assert any(d.startswith("Web page") for d in docs) and any(d.startswith("Article") for d in docs)
    assert prepare(cfg).report["pretrain_text"] == rep


def test_a_change_of_any_file_changes_the_base_models_key(tmp_path):
    data, c4, wiki = _files(tmp_path)
    cfg = _cfg(data, f"[{c4},{wiki}]")
    before = pretrain_source(cfg)
    assert before["kind"] == "file" and before["files"] == 2
    with wiki.open("a") as f:
        f.write("Article 8 is new.\n")
    after_wiki = pretrain_source(cfg)
    assert after_wiki["tokens_sha256"] != before["tokens_sha256"]
    with c4.open("a") as f:
        f.write(json.dumps({"text": "One more web page."}) + "\n")
    assert pretrain_source(cfg)["tokens_sha256"] not in (before["tokens_sha256"], after_wiki["tokens_sha256"])
    # one file alone: the source as it always was (no "files" key), so its cached base is found again
    assert set(pretrain_source(_cfg(data, c4))) == {"kind", "tokens_sha256", "n_tokens"}


def test_the_job_records_a_digest_of_every_file(tmp_path):
    data, c4, wiki = _files(tmp_path)
    over = [*SMOKE, "data=files", f"data.datasets.main.path={data}", f"data.pretrain_text=[{c4},{wiki}]",
            f"pretrain.cache_dir={tmp_path}/cache"]
    job = Job(compose_cfg(over), tmp_path / "job", overrides=over, base_dir=str(REPO))
    job.cache = SimpleNamespace(model_path=tmp_path / "no-base-yet")  # set once the base is loaded
    inputs = job.read_inputs()
    assert inputs["data.pretrain_text[0]"]["path"] == str(c4)
    assert inputs["data.pretrain_text[1]"]["path"] == str(wiki)
    before = inputs["data.pretrain_text[1]"]["sha256"]
    wiki.write_text("Changed.\nText.\n")
    assert job.read_inputs()["data.pretrain_text[1]"]["sha256"] != before  # so the job runs again


def test_a_bad_file_in_the_list_is_named(tmp_path):
    data, c4, wiki = _files(tmp_path)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "fine"}) + "\n" + json.dumps({"body": "no text"}) + "\n")
    with pytest.raises(DataError) as err:
        raw_text(_cfg(data, f"[{c4},{bad}]"))
    msg = str(err.value)
    assert msg.startswith("data.pretrain_text[1]: file " + str(bad)) and "'text'" in msg and "\n" not in msg, msg
    with pytest.raises(DataError) as err:
        pretrain_source(_cfg(data, f"[{c4},{tmp_path}/missing.txt]"))
    assert "data.pretrain_text[1]" in str(err.value) and "missing.txt" in str(err.value)


def test_a_list_entry_that_is_not_a_path_is_refused():
    with pytest.raises(ConfigError, match=r"data.pretrain_text\[1\] must be a file path"):
        to_object(compose_cfg([*SMOKE, "data=files", "data.datasets.main.path=x.json",
                               "data.pretrain_text=[a.txt,3]"]))


# Hashes the code before lists were accepted gave these configs: a one-file config (or none) must
# keep naming the same jobs.
FILES_CFG = ["experiment=quickstart", "data=files", "data.datasets.main.path=/d/x.json"]


@pytest.mark.parametrize("over,pinned", [([], "f526ab86907019c3"),
                                         (["data.pretrain_text=/d/text.jsonl"], "0f7815027c18d4d5")])
def test_a_one_file_configs_hash_is_unchanged(over, pinned):
    assert config_hash(config_dict(compose_cfg([*FILES_CFG, *over]))) == pinned


def test_two_files_hash_differently_from_either_alone():
    hashes = {config_hash(config_dict(compose_cfg(["experiment=own_data", f"data.pretrain_text={v}"])))
              for v in ("/d/a.jsonl", "/d/b.txt", "[/d/a.jsonl,/d/b.txt]", "[/d/b.txt,/d/a.jsonl]")}
    assert len(hashes) == 4
