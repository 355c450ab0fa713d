"""sft-sweep-export without transformers: the weight names and values, config.json, the byte
alphabet, the Jinja chat template against the product's templates, one-line errors, no pickle."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from sft_sweep.data.templates import TEMPLATE_NAMES, get_template, render, render_prompt
from sft_sweep.export import byte_alphabet, chat_template_jinja, hf_name, main, tokenizer_json
from sft_sweep.jobmodels import load_model
from sft_sweep.errors import CheckpointError
from sft_sweep.tokenizer import ByteTokenizer
from tests.conftest import REPO

from .export_fixtures import conversations, messages, saved_model

TOK = ByteTokenizer()


def test_safetensors_hold_every_parameter_under_its_gpt2_name(tmp_path):
    st = pytest.importorskip("safetensors.numpy", reason='needs pip install -e ".[export]"')
    model, path = saved_model(tmp_path)
    main([str(path), str(tmp_path / "out")])
    tensors = st.load_file(str(tmp_path / "out" / "model.safetensors"))
    assert len(tensors) == len(model.params) and "lm_head.weight" not in tensors  # the head is tied
    for name, p in model.params.items():
        np.testing.assert_array_equal(tensors[hf_name(name)], p)
    assert tensors["transformer.h.1.attn.c_attn.weight"].shape == (32, 96)  # Conv1D: (in, out)
    assert tensors["transformer.h.0.mlp.c_proj.weight"].shape == (80, 32)
    cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    assert (cfg["n_layer"], cfg["n_head"], cfg["n_embd"], cfg["n_inner"], cfg["n_positions"],
            cfg["vocab_size"]) == (2, 4, 32, 80, 96, TOK.vocab_size)
    assert cfg["activation_function"] == "gelu_new" and cfg["layer_norm_epsilon"] == 1e-5
    assert cfg["tie_word_embeddings"] is True and cfg["eos_token_id"] == TOK.im_end_id
    tok_cfg = json.loads((tmp_path / "out" / "tokenizer_config.json").read_text())
    assert tok_cfg["chat_template"] == chat_template_jinja(get_template("chatml"))
    assert oct(os.stat(tmp_path / "out" / "model.safetensors").st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask():
    m = os.umask(0o022)
    os.umask(m)
    return m


def test_byte_alphabet_is_gpt2s_printable_bytes_then_the_rest_in_order():
    chars = byte_alphabet()
    assert len(set(chars)) == 256
    assert chars[ord("A")] == "A" and chars[ord("~")] == "~" and chars[0xE9] == "é"
    assert chars[0] == chr(256) and chars[ord(" ")] == chr(256 + 32)  # "Ġ", GPT-2's space
    vocab = tokenizer_json()["model"]["vocab"]
    assert sorted(vocab.values()) == list(range(TOK.vocab_size))


def _jinja_render(source, msgs, add_generation_prompt):
    """Renders a chat template the way transformers does (sandboxed, trim/lstrip blocks)."""
    jinja2 = pytest.importorskip("jinja2.sandbox")

    def raise_exception(message):
        raise ValueError(message)

    env = jinja2.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    return env.from_string(source).render(messages=msgs, add_generation_prompt=add_generation_prompt)


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_jinja_chat_template_renders_the_products_text(name):
    template = get_template(name)
    source = chat_template_jinja(template)
    for conv in conversations():
        full = _jinja_render(source, messages(conv), add_generation_prompt=False)
        assert full == TOK.decode(render(conv, template)[0]), (name, conv)
        # the prompt to answer the last assistant turn: every turn before it, then the header
        prompt = _jinja_render(source, messages(conv)[:-1], add_generation_prompt=True)
        assert prompt == TOK.decode(render_prompt(conv, template)), (name, conv)


def test_missing_target_is_one_line_and_exit_2(tmp_path):
    r = subprocess.run([sys.executable, "-m", "sft_sweep.export", str(tmp_path / "nope"), str(tmp_path / "out")],
                       cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("sft-sweep-export: no such job directory") and not (tmp_path / "out").exists()


class _WritesAFile:
    """Unpickling this would create a file: the proof that a loader ran code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_checkpoint_that_holds_a_pickle_is_refused_and_runs_nothing(tmp_path):
    _, path = saved_model(tmp_path)
    marker = tmp_path / "code-ran"
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["param/wte"] = np.array([_WritesAFile(str(marker))], dtype=object)
    np.savez(tmp_path / "evil.npz", **arrays)
    with pytest.raises(CheckpointError):
        load_model(tmp_path / "evil.npz")
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "evil.npz"), str(tmp_path / "out")])
    assert exit_info.value.code == 2 and not marker.exists()


def _user_files(out):
    out.mkdir()
    (out / "config.json").write_text('{"mine": true}\n')
    (out / "model.safetensors").write_bytes(b"the user's own weights")


def _earlier_export(out):
    _, path = saved_model(out.parent)
    main([str(path), str(out)])


def _a_file(out):
    out.write_text("notes\n")


def _other_file(out):
    out.mkdir()
    (out / "README.md").write_text("my notes\n")


# (how OUT is before, --force, exit code, what stderr starts with)
OUT_CASES = [
    ("user's files", _user_files, False, 2, "sft-sweep-export: "),
    ("user's files, --force", _user_files, True, 0, ""),
    ("another file", _other_file, False, 2, "sft-sweep-export: "),
    ("an earlier export", _earlier_export, False, 0, ""),
    ("an empty directory", lambda out: out.mkdir(), False, 0, ""),
    ("a file", _a_file, False, 2, "sft-sweep-export: "),
    ("a file, --force", _a_file, True, 2, "sft-sweep-export: "),
]


@pytest.mark.parametrize("case,make,force,code,err", OUT_CASES, ids=[c[0] for c in OUT_CASES])
def test_export_never_overwrites_a_users_file(tmp_path, capsys, case, make, force, code, err):
    pytest.importorskip("safetensors.numpy", reason='needs pip install -e ".[export]"')
    _, path = saved_model(tmp_path)
    out = tmp_path / "out"
    make(out)
    before = {p.name: p.read_bytes() for p in out.iterdir()} if out.is_dir() else out.read_bytes()
    capsys.readouterr()
    argv = [str(path), str(out)] + (["--force"] if force else [])
    if code == 0:
        main(argv)
        assert (out / "model.safetensors").stat().st_size > 1000
        return
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    stderr = capsys.readouterr().err
    assert exit_info.value.code == code and stderr.startswith(err) and stderr.count("\n") == 1, stderr
    assert str(out) in stderr
    after = {p.name: p.read_bytes() for p in out.iterdir()} if out.is_dir() else out.read_bytes()
    assert after == before
