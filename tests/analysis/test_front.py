"""The learning-forgetting front: the collector's method columns and blends table, the front
figure, and the findings on fine-tuning methods and mitigations, on synthetic job files."""

from __future__ import annotations

import pytest

from analysis.collect import collect_runs
from analysis.verdicts import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED
from analysis_helpers import make_sweep
from front_helpers import job, make_front_sweep, peft_block, weight_change

FULL_RANKS = [20, 30, 25, 40, 22, 18, 35, 28]
LORA_RANKS = [3, 4, 4, 4, 2, 3, 4, 4]


def _peft_sweep(root):
    """full and LoRA r=4, two learning rates each; the full job at 3e-4 has two blends."""
    return make_front_sweep(root, [
        job({"peft.method": "full", "optim.lr": 3e-4}, 0.60, 50.0, peft=peft_block("full"),
            change=weight_change(FULL_RANKS), blends=[(0.4, 0.50, 10.0), (0.6, 0.55, 20.0)]),
        job({"peft.method": "full", "optim.lr": 1e-4}, 0.45, 20.0, peft=peft_block("full"),
            change=weight_change(FULL_RANKS)),
        job({"peft.method": "lora", "optim.lr": 3e-3}, 0.40, 5.0, peft=peft_block("lora", 4),
            change=weight_change(LORA_RANKS)),
        job({"peft.method": "lora", "optim.lr": 1e-3}, 0.30, 2.0, peft=peft_block("lora", 4),
            change=weight_change(LORA_RANKS)),
    ])


@pytest.fixture(scope="module")
def peft_runs(tmp_path_factory):
    return collect_runs(_peft_sweep(tmp_path_factory.mktemp("front") / "peft"))


# ---- collection -----------------------------------------------------------------------


def test_method_columns_are_read_from_the_summary(peft_runs):
    jobs = peft_runs.jobs.set_index("job")
    assert jobs.loc["0", "peft_method"] == "full" and jobs.loc["2", "peft_method"] == "lora"
    assert jobs.loc["0", "trainable_params"] == 100_000 and jobs.loc["2", "trainable_params"] == 4000
    assert jobs.loc["2", "trainable_share"] == pytest.approx(0.04)
    assert jobs.loc["0", "weight_change_median_rank"] == 26.5
    assert jobs.loc["2", "weight_change_median_rank"] == 4.0
    assert jobs.loc["2", "lora_rank"] == 4 and jobs.loc["2", "lora_targets"] == "attn.qkv,attn.proj,mlp.fc,mlp.proj"
    ranks = peft_runs.weight_ranks
    assert len(ranks) == 4 * 8 and set(ranks.columns) == {"job", "matrix", "effective_rank", "max_rank"}


def test_blends_are_a_table_of_their_own_never_jobs(peft_runs):
    assert len(peft_runs.jobs) == 4  # the two blends did not become jobs
    b = peft_runs.blends
    assert b["job"].tolist() == ["0", "0"] and b["t"].tolist() == [0.4, 0.6]
    assert b["optim.lr"].tolist() == [3e-4, 3e-4] and b["peft.method"].tolist() == ["full", "full"]
    assert b["final_answer_acc"].tolist() == [0.50, 0.55]
    assert b["forgetting_pct"].tolist() == pytest.approx([10.0, 20.0])
    assert b["items_answer"].tolist() == [200, 200]  # scored on the job's held-out items
    assert b["se_forgetting_pct"].tolist() == pytest.approx([0.5, 0.5])


def test_a_blend_without_forgetting_gets_it_from_its_raw_loss(tmp_path):
    import json
    root = _peft_sweep(tmp_path / "s")
    path = root / "0" / "summary.json"
    summary = json.loads(path.read_text())
    for b in summary["blends"]:
        del b["forgetting_pct"]
        del b["free_form"]
    path.write_text(json.dumps(summary))
    b = collect_runs(root).blends
    assert b["forgetting_pct"].tolist() == pytest.approx([10.0, 20.0])
    assert "se_forgetting_pct" not in b


def test_a_plain_sweep_gets_no_new_columns_and_empty_tables(tmp_path):
    runs = collect_runs(make_sweep(tmp_path / "plain", lrs=(1e-4, 1e-3), epochs=(1,), seeds=(0,)))
    assert not any(c.startswith(("peft_", "lora_", "freeze_", "weight_change_", "trainable_"))
                   for c in runs.jobs.columns)
    assert runs.blends.empty and runs.weight_ranks.empty
    assert {"job", "t"} <= set(runs.blends.columns)


def test_export_writes_the_blends(peft_runs, tmp_path):
    written = {p.name for p in peft_runs.export(tmp_path)}
    assert "blends.csv" in written


# ---- the figure -----------------------------------------------------------------------

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_the_front_is_drawn_for_a_sweep_of_methods_with_blends(peft_runs, tmp_path):
    from analysis import plots

    written = plots.plot_all(peft_runs, tmp_path)
    assert "front" in written
    data = written["front"].read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 5000
    assert "blend" in plots.figure_caption("front", peft_runs)


def test_the_front_points_and_its_pareto_front(peft_runs):
    from analysis.front import front_points, learning_of
    from analysis.stats import pareto_mask

    pts = front_points(peft_runs)
    assert learning_of(peft_runs).metric == "final_answer_acc"
    assert sorted(pts["kind"].tolist()) == ["blend", "blend", "job", "job", "job", "job"]
    assert set(pts["variant"]) == {"full", "LoRA r=4"}
    on = pts[pareto_mask(pts, maximize=["learning"], minimize=["forgetting_pct"])]
    # the blend at t=0.4 (50%, +10%) beats the full job at 1e-4 (45%, +20%): off the front
    assert set(zip(on["kind"], on["t"], on["learning"])) == {
        ("job", 1.0, 0.60), ("blend", 0.6, 0.55), ("blend", 0.4, 0.50), ("job", 1.0, 0.40), ("job", 1.0, 0.30)}


def test_a_blend_alone_is_enough_for_the_front(tmp_path):
    from analysis.plots import plot_front

    root = make_front_sweep(tmp_path / "s", [
        job({"optim.lr": 3e-4}, 0.6, 50.0, blends=[(0.5, 0.5, 10.0)]),
        job({"optim.lr": 1e-4}, 0.4, 10.0)])
    assert plot_front(collect_runs(root), tmp_path / "out") is not None


@pytest.mark.parametrize("replay", [None, (0.0, 0.5)])
def test_no_front_for_a_plain_lr_sweep_nor_lr_x_replay(tmp_path, replay):
    """The quickstart (lr x replay) and a plain lr sweep: no front figure, and the report does
    not list it as left out (their reports stay as they were)."""
    from analysis import plots

    runs = collect_runs(make_sweep(tmp_path / "plain", lrs=(3e-5, 3e-4, 2e-3), epochs=(1,), seeds=(0,), replay=replay))
    assert plots.plot_front(runs, tmp_path / "out") is None
    left_out: list[str] = []
    written = plots.plot_all(runs, tmp_path / "all", left_out=left_out)
    assert "front" not in written and not any(k.startswith("front") for k in left_out)


def test_own_data_learning_is_rouge_then_nats_per_byte(tmp_path):
    from analysis.front import learning_of

    def own(acc_key, values):
        return [job({"peft.method": m, "optim.lr": 3e-4}, 0.0, f, peft=peft_block(m, 4) if m == "lora" else None,
                    **{acc_key: v}) for m, v, f in values]

    for key, sign in (("rouge_l", +1), ("response_nats_per_byte", -1)):
        jobs = own(key, [("full", 0.5, 30.0), ("lora", 0.4, 5.0)])
        for j in jobs:
            del j["final"]["answer_acc"]
        root = make_front_sweep(tmp_path / key, jobs, items=None, base={"raw_loss": 1.21, key: 0.3})
        learning = learning_of(collect_runs(root))
        assert learning is not None
        assert (learning.metric, learning.sign) == (f"final_{key}", sign)


# ---- the findings ---------------------------------------------------------------------

FRONT_KEYS = {"lora_learns_less_forgets_less", "full_rank_above_lora_rank", "blending_beats_mitigations",
              "freezing_cuts_forgetting", "neftune_changes_nothing"}


def _findings(root) -> dict:
    from analysis.registry import compute_findings

    return {f.key: f for f in compute_findings(collect_runs(root)) if f.key in FRONT_KEYS}


def _full(lr, acc, fg, **kw):
    return job({"peft.method": "full", "optim.lr": lr}, acc, fg, peft=peft_block("full"), **kw)


def _lora(lr, acc, fg, rank=4, **kw):
    return job({"peft.method": "lora", "optim.lr": lr, "peft.rank": rank}, acc, fg, peft=peft_block("lora", rank), **kw)


def test_findings_of_a_method_sweep_with_blends(peft_runs):
    from analysis.registry import compute_findings

    found = {f.key: f for f in compute_findings(peft_runs) if f.key in FRONT_KEYS}
    # no freezing and no NEFTune job: those two findings do not appear
    assert set(found) == {"lora_learns_less_forgets_less", "full_rank_above_lora_rank", "blending_beats_mitigations"}
    lora = found["lora_learns_less_forgets_less"]
    assert lora.verdict == SUPPORTED
    # each at its best rate: full at 3e-4 (60%), LoRA at 3e-3 (40%)
    assert "LoRA r=4 @ lr 3e-3" in lora.evidence and "full @ lr 3e-4" in lora.evidence
    assert "-20.0 points" in lora.evidence and "-45.0 points" in lora.evidence
    assert "trains 4% of the weights" in lora.evidence
    rank = found["full_rank_above_lora_rank"]
    assert rank.verdict == SUPPORTED and rank.numbers["median_effective_rank"] == 26.5
    assert rank.numbers["exceed"] == 8 and "6.6x" in rank.evidence
    # the blend at t=0.4 (50%, +10%) beats the full job at 1e-4 (45%, +20%) and LoRA at 3e-3 (40%, +5%)?
    # no: LoRA forgets less, so LoRA is a trade-off, not beaten
    blend = found["blending_beats_mitigations"]
    assert blend.verdict == INCONCLUSIVE
    beaten = {m["mitigation"]: m["beaten_by"] for m in blend.numbers["mitigations"]}
    assert beaten["full @ lr 1e-4"] and not beaten["LoRA r=4 @ lr 3e-3"]
    # the findings table's row: what decided each verdict, with its interval where it has one
    assert lora.decided_by.what == "forgetting, LoRA r=4 vs full" and lora.decided_by.value == "-45.0 points"
    assert lora.decided_by.low and lora.decided_by.noise == "item noise"
    assert rank.decided_by.value == "100%" and rank.decided_by.n == "8 matrices"
    assert blend.decided_by.value.endswith(f"of {len(blend.numbers['mitigations'])}")


def test_lora_that_learns_more_is_not_supported(tmp_path):
    root = make_front_sweep(tmp_path / "s", [_full(3e-4, 0.60, 50.0), _lora(3e-3, 0.75, 5.0)])
    f = _findings(root)["lora_learns_less_forgets_less"]
    assert f.verdict == NOT_SUPPORTED and "learns more" in f.evidence


def test_lora_without_any_noise_estimate_is_inconclusive(tmp_path):
    root = make_front_sweep(tmp_path / "s", [_full(3e-4, 0.60, 50.0, se_forgetting=None),
                                             _lora(3e-3, 0.40, 5.0, se_forgetting=None)], items=None)
    f = _findings(root)["lora_learns_less_forgets_less"]
    assert f.verdict == INCONCLUSIVE and "no noise estimate" in f.evidence


def test_a_low_rank_full_change_is_not_supported(tmp_path):
    root = make_front_sweep(tmp_path / "s", [_full(3e-4, 0.60, 50.0, change=weight_change([2, 3, 2, 3, 1, 2, 5, 3])),
                                             _lora(3e-3, 0.40, 5.0, rank=4)])
    f = _findings(root)["full_rank_above_lora_rank"]
    assert f.verdict == NOT_SUPPORTED and f.numbers["exceed"] == 1


def test_no_rank_finding_without_a_lora_job(tmp_path):
    root = make_front_sweep(tmp_path / "s", [_full(3e-4, 0.6, 50.0, change=weight_change(FULL_RANKS)),
                                             _full(1e-4, 0.5, 20.0, change=weight_change(FULL_RANKS),
                                                   blends=[(0.5, 0.5, 10.0)])])
    assert "full_rank_above_lora_rank" not in _findings(root)


def test_replay_beats_the_blends_made_by_hand_on_the_quickstart_models(tmp_path):
    """Blends made by hand on the quickstart's models: replay 0.5 at 3e-4 learns more and forgets less
    than every blend."""
    root = make_front_sweep(tmp_path / "s", [
        job({"optim.lr": 3e-4, "mix.replay_ratio": 0.0}, 0.56, 227.0, blends=[(0.6, 0.77, 58.0), (0.4, 0.57, 19.0)]),
        job({"optim.lr": 3e-4, "mix.replay_ratio": 0.5}, 0.89, -0.4)])
    f = _findings(root)["blending_beats_mitigations"]
    assert f.verdict == NOT_SUPPORTED and "replay 50%" in f.evidence
    assert f.numbers["mitigations"][0]["beats"] and not f.numbers["mitigations"][0]["beaten_by"]


def test_blends_that_beat_every_mitigation_are_supported(tmp_path):
    root = make_front_sweep(tmp_path / "s", [
        _full(3e-4, 0.60, 200.0, blends=[(0.6, 0.70, 40.0), (0.4, 0.55, 8.0)]),
        _lora(3e-3, 0.45, 40.0),
        job({"peft.method": "full", "optim.lr": 3e-4, "optim.l2_to_base": 0.1}, 0.50, 60.0, peft=peft_block("full")),
        _full(1e-4, 0.30, 10.0)])  # a lower rate: beaten by t=0.4
    f = _findings(root)["blending_beats_mitigations"]
    assert f.verdict == SUPPORTED, f.evidence
    assert {m["mitigation"] for m in f.numbers["mitigations"]} == {
        "LoRA r=4 @ lr 3e-3", "full + l2 pull 0.1 @ lr 3e-4", "full @ lr 1e-4"}


def _freeze(lr, acc, fg, layers=2, **kw):
    return job({"peft.method": "freeze", "optim.lr": lr, "peft.trainable_layers": layers}, acc, fg,
               peft=peft_block("freeze", layers=layers), **kw)


@pytest.mark.parametrize("freeze_fg,verdict", [(30.0, SUPPORTED), (50.2, NOT_SUPPORTED), (80.0, NOT_SUPPORTED)])
def test_freezing_the_lower_layers(tmp_path, freeze_fg, verdict):
    root = make_front_sweep(tmp_path / "s", [_full(3e-4, 0.60, 50.0, se_forgetting=0.2),
                                             _freeze(3e-4, 0.55, freeze_fg, se_forgetting=0.2)])
    f = _findings(root)["freezing_cuts_forgetting"]
    assert f.verdict == verdict, f.evidence
    assert "freeze: last 2 blocks train @ lr 3e-4" in f.evidence


def test_freezing_without_a_full_job_at_its_rate_is_inconclusive(tmp_path):
    root = make_front_sweep(tmp_path / "s", [_full(1e-4, 0.60, 50.0), _freeze(3e-4, 0.55, 30.0)])
    f = _findings(root)["freezing_cuts_forgetting"]
    assert f.verdict == INCONCLUSIVE and "no full fine-tuning job" in f.evidence


def _neftune(acc, fg, alpha=5.0):
    return job({"peft.method": "full", "optim.lr": 3e-4, "train.neftune_alpha": alpha}, acc, fg,
               peft=peft_block("full"), se_forgetting=0.1)


@pytest.mark.parametrize("items,acc,fg,verdict", [
    (100_000, 0.601, 50.1, SUPPORTED),      # equal within the minimum effect, measured finely enough
    (200, 0.60, 50.0, INCONCLUSIVE),         # equal, but 200 items cannot rule out 2 points
    (100_000, 0.70, 50.0, NOT_SUPPORTED),    # it does: 10 points more learnt
])
def test_neftune(tmp_path, items, acc, fg, verdict):
    root = make_front_sweep(tmp_path / "s", [job({"peft.method": "full", "optim.lr": 3e-4}, 0.60, 50.0,
                                                 peft=peft_block("full"), se_forgetting=0.1),
                                             _neftune(acc, fg)], items=items)
    f = _findings(root)["neftune_changes_nothing"]
    assert f.verdict == verdict, f.evidence
    if verdict == NOT_SUPPORTED:
        assert "it does change learning" in f.evidence


def test_no_front_findings_for_a_plain_lr_x_replay_sweep(tmp_path):
    root = make_sweep(tmp_path / "plain", lrs=(3e-5, 3e-4, 2e-3), epochs=(1,), seeds=(0,), replay=(0.0, 0.5))
    assert _findings(root) == {}


def test_seeds_are_replicates_of_one_setting(tmp_path):
    jobs = []
    for seed, (a, f) in enumerate([(0.60, 50.0), (0.62, 52.0), (0.61, 49.0)]):
        jobs.append(job({"peft.method": "full", "optim.lr": 3e-4, "train.seed": seed}, a, f, peft=peft_block("full")))
    for seed, (a, f) in enumerate([(0.40, 5.0), (0.41, 6.0), (0.39, 4.0)]):
        jobs.append(job({"peft.method": "lora", "optim.lr": 3e-3, "train.seed": seed}, a, f,
                        peft=peft_block("lora", 4)))
    f = _findings(make_front_sweep(tmp_path / "s", jobs))["lora_learns_less_forgets_less"]
    assert f.verdict == SUPPORTED and "n = 3 seeds" in f.evidence and "seed noise" in f.evidence


def test_sweeps_on_other_data_keep_their_blends_apart(tmp_path):
    from analysis.groups import group_columns, split_runs

    a = make_front_sweep(tmp_path / "a", [_full(3e-4, 0.6, 50.0, blends=[(0.5, 0.5, 10.0)]),
                                          job({"optim.lr": 3e-4, "data.name": "world"}, 0.4, 5.0)])
    b = make_front_sweep(tmp_path / "b", [
        job({"optim.lr": 3e-4, "data.name": "other"}, 0.7, 30.0, blends=[(0.3, 0.6, 5.0), (0.6, 0.65, 15.0)]),
        job({"optim.lr": 1e-4, "data.name": "other"}, 0.5, 10.0)])
    runs = collect_runs([a, b])
    assert len(runs.blends) == 3
    parts = dict(split_runs(runs, group_columns(runs)))
    assert sorted(len(p.blends) for p in parts.values()) == [1, 2]
    for p in parts.values():
        assert set(p.blends["job"]) <= set(p.jobs["job"])


def test_a_sweep_that_chose_the_peft_group_compares_its_methods(tmp_path):
    """``sft-sweep -m peft=lora,full ...``: the override names the group, not ``peft.method``."""
    import json

    root = make_front_sweep(tmp_path / "s", [_full(3e-4, 0.60, 50.0), _lora(3e-3, 0.40, 5.0)])
    for d in (root / "0", root / "1"):
        s = json.loads((d / "summary.json").read_text())
        ov = [o.replace("peft.method=", "peft=") for o in s["overrides"] if not o.startswith("peft.rank")]
        s["overrides"] = ov
        (d / "summary.json").write_text(json.dumps(s))
        (d / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in ov))
    runs = collect_runs(root)
    assert "peft" in runs.swept
    f = _findings(root)["lora_learns_less_forgets_less"]
    assert f.verdict == SUPPORTED, f.evidence


def test_a_sweep_of_ready_made_methods_compares_them(tmp_path):
    """``sft-sweep -m +method=blends,freeze,...``: the method group's choice names each job's variant;
    the keys it set tell the findings what trained, so jobs of one rate are compared."""
    import json

    root = make_front_sweep(tmp_path / "s", [_full(3e-4, 0.60, 50.0, se_forgetting=0.2),
                                             _freeze(3e-4, 0.55, 30.0, se_forgetting=0.2)])
    for d, name in ((root / "0", "blends"), (root / "1", "freeze")):
        s = json.loads((d / "summary.json").read_text())
        s["overrides"] = [f"+method={name}"]
        (d / "summary.json").write_text(json.dumps(s))
        (d / ".hydra" / "overrides.yaml").write_text(f"- +method={name}\n")
    runs = collect_runs(root)
    assert "method" in runs.swept
    f = _findings(root)["freezing_cuts_forgetting"]
    assert f.verdict == SUPPORTED, f.evidence
