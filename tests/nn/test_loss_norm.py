"""train.loss_norm: per-token weights checked token by token, the group loss against a direct
per-sequence computation, and its gradient against float64 finite differences."""

import numpy as np
import pytest

from sft_sweep.config import Config, validate
from sft_sweep.data import Example, make_batches
from sft_sweep.errors import ConfigError
from sft_sweep.nn import GPT
from sft_sweep.tokenizer import ByteTokenizer
from sft_sweep.data.loss_weights import group_weights
from sft_sweep.train.sft import accumulate

from nn_helpers import numeric_grad, small_config

PAD = ByteTokenizer().pad_id

# (prompt length, response length): a long prompt with a short response and the reverse
SHAPES = [(9, 3), (2, 5), (5, 5), (3, 2)]


def _examples(rng):
    out = []
    for p, r in SHAPES:
        n = p + r
        out.append(Example(ids=[int(t) for t in rng.integers(0, 256, n)], mask=[0] * p + [1] * r))
    return out


def _group(pack, rng):
    batches, _ = make_batches(_examples(rng), 2, 16, pack=pack, seed=0, pad_id=PAD)
    return list(batches)


def _sequences(group):
    """(micro-batch, flat positions) of every sequence, found without the module under test."""
    out = []
    for k, b in enumerate(group):
        B, T = b.ids.shape
        for r in range(B):
            if b.segment_ids is not None:
                for s in sorted(set(b.segment_ids[r].tolist()) - {0}):
                    out.append((k, [r * T + t for t in range(T) if b.segment_ids[r, t] == s]))
            else:
                out.append((k, [r * T + t for t in range(T) if b.ids[r, t] != PAD]))
    return out


@pytest.mark.parametrize("pack", [False, True])
def test_weights_token_by_token(pack):
    group = _group(pack, np.random.default_rng(0))
    seqs = _sequences(group)
    assert len(seqs) == len(SHAPES)
    # every sequence is one example: its positions are prompt + response - 1, its trained ones
    # the response tokens (the first response token is predicted from the last prompt token)
    found = sorted((len(pos), int(sum(group[k].mask.reshape(-1)[pos]))) for k, pos in seqs)
    assert found == sorted((p + r - 1, r) for p, r in SHAPES)
    for norm in ("sequence", "length"):
        weights, normalizer = group_weights(group, norm, PAD)
        assert normalizer == len(SHAPES)
        covered = [np.zeros(b.ids.size, bool) for b in group]
        for k, pos in seqs:
            m = group[k].mask.reshape(-1)[pos]
            w = weights[k].reshape(-1)[pos]
            denom = float(m.sum()) if norm == "sequence" else float(len(pos))
            for mi, wi in zip(m, w):
                assert wi == (1.0 / denom if mi else 0.0)
            covered[k][pos] = True
            assert w.sum() == pytest.approx(m.sum() / denom)
        for k, b in enumerate(group):  # padding weighs nothing
            assert (weights[k].reshape(-1)[~covered[k]] == 0).all()


def test_tokens_is_the_plain_mask():
    group = _group(False, np.random.default_rng(1))
    weights, normalizer = group_weights(group, "tokens", PAD)
    assert all(w is b.mask for w, b in zip(weights, group))
    assert normalizer == sum(r for _, r in SHAPES)


def test_sequence_without_trained_tokens_does_not_count():
    rng = np.random.default_rng(2)
    exs = [Example(ids=list(rng.integers(0, 256, 6)), mask=[0] * 6),
           Example(ids=list(rng.integers(0, 256, 6)), mask=[0] * 3 + [1] * 3)]
    batches, _ = make_batches(exs, 2, 16, pad_id=PAD)
    weights, normalizer = group_weights(list(batches), "length", PAD)
    assert normalizer == 1.0
    assert weights[0].sum() == pytest.approx(3 / 5)


def test_unknown_loss_norm_is_a_config_error():
    cfg = Config()
    cfg.train.loss_norm = "mean"
    with pytest.raises(ConfigError, match="train.loss_norm"):
        validate(cfg)


@pytest.mark.parametrize("pack", [False, True])
@pytest.mark.parametrize("norm", ["tokens", "sequence", "length"])
def test_group_loss_and_gradient(norm, pack):
    """The accumulated loss equals the definition computed sequence by sequence, and its
    gradient matches central differences of that definition in float64."""
    rng = np.random.default_rng(3)
    group = _group(pack, rng)
    model = GPT(small_config(dtype="float64", block_size=16), seed=4)
    loss, grads, _ = accumulate(model, group, norm)
    seqs = _sequences(group)

    def direct():
        nll = []
        for b in group:
            safe = np.where(b.mask != 0, b.targets, 0)
            nll.append(model.token_nll(b.ids, safe, segment_ids=b.segment_ids,
                                       positions=b.positions).reshape(-1))
        if norm == "tokens":
            return (sum(float((n * b.mask.reshape(-1)).sum()) for n, b in zip(nll, group))
                    / sum(float(b.mask.sum()) for b in group))
        per_seq = []
        for k, pos in seqs:
            m = group[k].mask.reshape(-1)[pos].astype(np.float64)
            s = float((nll[k][pos] * m).sum())
            per_seq.append(s / (m.sum() if norm == "sequence" else len(pos)))
        return float(np.mean(per_seq))

    assert loss == pytest.approx(direct(), rel=1e-12)
    check = np.random.default_rng(5)
    for name in model.params:
        idx, num = numeric_grad(model, direct, name, check, max_entries=4)
        ana = grads[name].reshape(-1)[idx]
        denom = max(np.linalg.norm(num), np.linalg.norm(ana))
        if denom == 0:  # e.g. position rows no sequence reaches
            continue
        assert np.linalg.norm(num - ana) / denom <= 1e-6, name


def test_weightings_differ():
    """The three settings give different gradients on prompts of different lengths (a test
    that could not tell them apart would prove nothing)."""
    group = _group(False, np.random.default_rng(3))
    model = GPT(small_config(dtype="float64", block_size=16), seed=4)
    g = {n: accumulate(model, group, n)[1]["wte"] for n in ("tokens", "sequence", "length")}
    assert not np.allclose(g["tokens"], g["sequence"])
    assert not np.allclose(g["sequence"], g["length"])
