"""Multiple-choice accuracy, computed from one prefilled prompt per item, equals scoring every
prompt + candidate as a full sequence."""

import numpy as np
import pytest

from sft_sweep.data import WorldConfig, build_world, get_template, render_prompt
from sft_sweep.nn import GPT, GPTConfig
from sft_sweep.tokenizer import ByteTokenizer
from sft_sweep.train.evaluate import Evaluator, _shared_prefix_len, masked_nll_sums

TOK = ByteTokenizer()


def _full_sequence_accuracy(model, items, template):
    end, hits = template.stop_ids[0], 0
    for it in items:
        prompt = render_prompt(it.prompt, template)
        seqs, masks = [], []
        for c in it.choices():
            ids = np.asarray(prompt + TOK.encode(c) + [end])
            m = np.zeros(len(ids), dtype=np.int32)
            m[len(prompt):] = 1
            seqs.append(ids)
            masks.append(m)
        s = -masked_nll_sums(model, seqs, masks, 8, TOK.pad_id)
        hits += int(np.argmax(s) == 0 and s[0] > np.max(s[1:]))
    return hits / len(items)


def test_shared_prefix_leaves_every_candidate_a_token():
    assert _shared_prefix_len([[1, 2, 3, 9], [1, 2, 4, 9]]) == 2
    assert _shared_prefix_len([[1, 2, 9], [1, 2, 9]]) == 2       # identical: the last token stays
    assert _shared_prefix_len([[1, 9], [1, 2, 3, 9]]) == 1
    assert _shared_prefix_len([[5, 9], [6, 9]]) == 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_full_sequence_scoring_on_world_items(seed):
    world = build_world(WorldConfig())
    template = get_template("chatml")
    items = [it for it in world.eval_items if len(it.choices()) > 1][:24]
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, n_mlp=64, block_size=128, init_std=0.5,
                          dtype="float64"), seed=seed)
    ev = Evaluator(template=template, val_examples=[], heldout_tokens=np.zeros(0, dtype=np.int32),
                   eval_items=items, probe_items=[], follow_prompts=[], block_size=128, max_items=100,
                   max_new_tokens=8, raw_windows=0, batch_size=8)
    got = ev.mc_accuracy(model, ev.eval_items)
    assert got == _full_sequence_accuracy(model, ev.eval_items, template)
    assert 0 < got < 1, "a random model should get some items right and some wrong"
