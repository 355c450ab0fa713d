"""The exported checkpoint in Hugging Face transformers: the same logits, tokens, chat ids and greedy
replies as the numpy model. Needs torch and transformers (installed for this test only)."""

import numpy as np
import pytest

from sft_sweep.data.templates import TEMPLATE_NAMES, get_template, render, render_prompt
from sft_sweep.export import main
from sft_sweep.nn import generate
from sft_sweep.tokenizer import ByteTokenizer

from .export_fixtures import conversations, messages, saved_model

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.slow
TOK = ByteTokenizer()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    model, path = saved_model(tmp)
    out = {}
    for name in TEMPLATE_NAMES:
        main([str(path), str(tmp / name), "--template", name])
        out[name] = tmp / name
    return model, out


def _hf(path):
    hf = transformers.AutoModelForCausalLM.from_pretrained(path)
    hf.eval()
    return hf, transformers.AutoTokenizer.from_pretrained(path)


def test_logits_match_the_numpy_model(exported):
    model, out = exported
    hf, _ = _hf(out["chatml"])
    assert type(hf).__name__ == "GPT2LMHeadModel"
    ids = np.random.default_rng(3).integers(0, TOK.vocab_size, size=(3, model.config.block_size))
    with torch.no_grad():
        theirs = hf(torch.tensor(ids)).logits.numpy()
    ours = model.logits(ids)
    assert np.abs(ours).max() > 1.0  # logits far from uniform: a wrong mapping would show
    assert np.abs(theirs - ours).max() <= 1e-4


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_tokenizer_and_chat_template_give_our_ids(exported, name):
    _, out = exported
    tok = transformers.AutoTokenizer.from_pretrained(out[name])
    text = "Héllo wörld\n\t two  spaces ✓ \x00\x7f end"
    assert tok(text)["input_ids"] == TOK.encode(text)
    assert tok.decode(TOK.encode(text)) == text
    assert tok.convert_tokens_to_ids(list(TOK.special_tokens)) == list(TOK.special_tokens.values())
    template = get_template(name)
    for conv in conversations():
        full = tok.apply_chat_template(messages(conv), tokenize=True, return_dict=True)["input_ids"]
        assert list(full) == render(conv, template)[0], (name, conv)
        prompt = tok.apply_chat_template(messages(conv)[:-1], add_generation_prompt=True, tokenize=True,
                                         return_dict=True)["input_ids"]
        assert list(prompt) == render_prompt(conv, template), (name, conv)


def test_greedy_generation_matches(exported):
    model, out = exported
    hf, tok = _hf(out["chatml"])
    conv = conversations()[0]
    prompt = render_prompt(conv, "chatml")
    ours = generate(model, [prompt], 20, stop_ids=[TOK.im_end_id])[0]
    with torch.no_grad():
        theirs = hf.generate(torch.tensor([prompt]), max_new_tokens=20, do_sample=False,
                             eos_token_id=TOK.im_end_id, pad_token_id=TOK.pad_id)[0, len(prompt):].tolist()
    assert theirs == ours


def test_lora_adapter_loads_in_peft_with_the_merged_models_logits(tmp_path):
    """A LoRA job's export: PeftModel(base, adapter) computes the merged checkpoint's logits."""
    peft = pytest.importorskip("peft")
    from sft_sweep.config import register_configs
    from sft_sweep.train.job import Job
    from tests.conftest import REPO, compose_cfg

    register_configs()
    extra = ["peft=lora", "peft.rank=2", "peft.targets=[attn.qkv,mlp.proj]", "optim.lr=1e-2"]
    cfg = compose_cfg(["experiment=smoke", "train.threads=1", f"pretrain.cache_dir={tmp_path / 'cache'}", *extra])
    summary = Job(cfg, tmp_path / "job", overrides=extra, base_dir=str(REPO)).run()
    assert summary["status"] == "completed", summary.get("error")
    main([str(tmp_path / "job"), str(tmp_path / "out")])
    out = tmp_path / "out"
    merged = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    base = transformers.AutoModelForCausalLM.from_pretrained(out / "base").eval()
    ids = torch.tensor(np.random.default_rng(0).integers(0, TOK.vocab_size, size=(2, 24)))
    with torch.no_grad():
        before = base(ids).logits.numpy()
        adapted = peft.PeftModel.from_pretrained(base, out / "adapter").eval()
        theirs = adapted(ids).logits.numpy()
        ours = merged(ids).logits.numpy()
    assert np.abs(ours - before).max() > 1e-2  # the adapter changed the model
    assert np.abs(theirs - ours).max() <= 1e-4
