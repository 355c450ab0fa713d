"""Jobs of every peft mode and mitigation on the tiny model: exact resume, frozen weights untouched,
the adapter file, blends and the weight change in summary.json."""

import json

import numpy as np
import pytest

from sft_sweep.jobfiles import read_jsonl
from tests.app.test_job import run_job  # the same smoke jobs
from tests.app.test_job import cache_dir  # noqa: F401 - pytest fixture

MODES = {
    "lora": ["peft=lora", "peft.rank=2", "optim.l2_to_base=0.5"],
    "freeze": ["peft=freeze", "peft.trainable_layers=1", "train.neftune_alpha=5"],
    "full": ["optim.l2_to_base=0.2", "train.neftune_alpha=5", "eval.blend=[0.5]"],
}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_every_mode_resumes_to_the_same_result(tmp_path, cache_dir, monkeypatch, mode):  # noqa: F811
    extra = ["optim.lr=3e-3", *MODES[mode]]
    _, full = run_job(tmp_path, cache_dir, extra, name="whole")
    assert full["status"] == "completed", full.get("error")

    import sft_sweep.train.sft as sft

    real_train = sft.train

    def killed_after_step_7(model, opt, examples, cfg, pl, *, start_step, on_log, on_step_end, **kw):
        def step_end(step):
            on_step_end(step)
            if step == 7:
                raise KeyboardInterrupt
        return real_train(model, opt, examples, cfg, pl, start_step=start_step, on_log=on_log,
                          on_step_end=step_end, **kw)

    monkeypatch.setattr(sft, "train", killed_after_step_7)
    with pytest.raises(KeyboardInterrupt):
        run_job(tmp_path, cache_dir, extra, name="killed")
    monkeypatch.setattr(sft, "train", real_train)
    _, resumed = run_job(tmp_path, cache_dir, extra, name="killed")
    assert resumed["status"] == "completed"
    assert resumed["final"] == full["final"]
    assert resumed.get("blends") == full.get("blends")
    strip = lambda rows: [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in rows]  # noqa: E731
    assert strip(read_jsonl(tmp_path / "whole" / "metrics.jsonl")) == \
        strip(read_jsonl(tmp_path / "killed" / "metrics.jsonl"))


def _weights(path):
    with np.load(path, allow_pickle=False) as z:
        return {k[6:]: z[k] for k in z.files if k.startswith("param/")}


def test_frozen_weights_stay_the_bases_and_the_summary_says_what_trained(tmp_path, cache_dir):  # noqa: F811
    job, s = run_job(tmp_path, cache_dir, ["optim.lr=3e-3", "peft=freeze", "peft.trainable_layers=-1"],
                     name="freeze")
    assert s["status"] == "completed", s.get("error")
    base = _weights(job.cache.model_path)
    tuned = _weights(job.dir / "model.npz")
    for name in base:
        same = np.array_equal(base[name], tuned[name])
        assert same == (not name.startswith("h.0.")), name  # only the first block trained
    assert s["peft"]["method"] == "freeze" and 0 < s["peft"]["trainable_params"] < s["peft"]["total_params"]
    assert "weight_change" not in s and "blends" not in s


def test_lora_job_saves_its_adapter_and_a_low_rank_change(tmp_path, cache_dir):  # noqa: F811
    job, s = run_job(tmp_path, cache_dir, ["optim.lr=1e-2", "peft=lora", "peft.rank=2",
                                           "peft.targets=[attn.qkv,mlp.proj]", "eval.blend=[1,0]"], name="lora")
    assert s["status"] == "completed", s.get("error")
    base = _weights(job.cache.model_path)
    tuned = _weights(job.dir / "model.npz")
    changed = sorted(n for n in base if not np.array_equal(base[n], tuned[n]))
    assert changed and all(n.endswith(("attn.qkv.w", "mlp.proj.w")) for n in changed)
    with np.load(job.dir / "adapter.npz", allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        a, b = z["h.0.attn.qkv.lora_A"], z["h.0.attn.qkv.lora_B"]
    assert meta["base_model"] == job.cache.key and meta["rank"] == 2 and meta["scale"] == 8.0
    np.testing.assert_allclose(tuned["h.0.attn.qkv.w"], base["h.0.attn.qkv.w"] + 8.0 * a @ b, rtol=1e-5, atol=1e-6)
    wc = s["weight_change"]
    assert set(wc["effective_rank"]) == {f"h.{i}.{t}.w" for i in range(2) for t in ("attn.qkv", "mlp.proj")}
    assert all(1 <= r <= 2 for r in wc["effective_rank"].values())
    # t = 0 is the base, t = 1 the tuned model: evaluated like them
    t1, t0 = s["blends"]  # the base last: the job's own intervals must not be the last blend's
    assert t1["t"] == 1.0 and t0["t"] == 0.0 and t0["final"]["raw_loss"] == pytest.approx(s["base"]["raw_loss"], rel=1e-6)
    assert t1["final"] == s["final"] and t1["forgetting_pct"] == s["forgetting_pct"]
    # each blend's intervals are its own; the job's are the tuned model's, not the last blend's
    assert t1["free_form"] == s["free_form"] and "forgetting_pct" in s["free_form"]
    assert t0["free_form"]["forgetting_pct"]["mean"] == pytest.approx(0.0, abs=1e-6)
