"""``sft-sweep-export``: write a job's model as a Hugging Face transformers GPT-2 checkpoint.

    sft-sweep-export JOB_DIR OUT_DIR
    sft-sweep-export SWEEP_DIR OUT_DIR --job "lr=3e-4"
    sft-sweep-export path/to/model.npz OUT_DIR --template chatml

For a LoRA job OUT_DIR also gets ``base/`` (its base model) and ``adapter/`` (the adapter in PEFT's
format, see ``export_peft.py``). OUT_DIR then holds what ``AutoModelForCausalLM.from_pretrained(OUT_DIR)`` and
``AutoTokenizer.from_pretrained(OUT_DIR)`` read: ``model.safetensors``, ``config.json``,
``generation_config.json``, ``tokenizer.json``, ``tokenizer_config.json`` (with the job's chat
template as a Jinja ``chat_template``) and ``special_tokens_map.json``.

The numpy GPT is GPT-2's network, so the weights map one to one:

- every linear layer stores its weight as (inputs, outputs) and computes ``x @ W + b``, the
  layout of GPT-2's ``Conv1D``: no transposition;
- ``attn.qkv`` holds the columns [q | k | v], each split into heads by consecutive
  ``head_dim`` columns, which is how GPT-2 splits ``c_attn``; scores are scaled by
  1/sqrt(head_dim) (``scale_attn_weights``);
- LayerNorm eps 1e-5, GELU's tanh approximation (``gelu_new``), learned positions, and the
  output head tied to the token embedding (``tie_word_embeddings``: the file carries no
  separate ``lm_head.weight``).

The tokenizer is the job's: for ``tokenizer=bytes`` a byte-level BPE with no merges (id b
(0..255) is byte b, written in GPT-2's printable byte alphabet), for ``tokenizer=bpe`` the job's
byte-level BPE with its merges; the special tokens keep their ids. One difference remains by
nature: transformers' tokenizer turns text that spells a special token (a user typing
``<|im_end|>``) into that token, where ``ByteTokenizer`` keeps it as plain bytes.

Needs only numpy and the ``safetensors`` package (the ``export`` extra); not torch.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from .data.conversation import Conversation, Turn
from .data.templates import TEMPLATE_NAMES, Template, get_template
from .errors import SftSweepError, user_errors_exit
from .atomicio import TMP_PREFIX, TMP_SUFFIX
from .bpe import byte_symbols
from .export_peft import export_adapter
from .jobfiles import ADAPTER, atomic_path, write_json
from .jobmodels import resolve, load_model
from .jobtokenizer import job_tokenizer
from .nn import GPT
from .nn.layers import LN_EPS
from .tokenizer import SPECIAL_TOKENS, ByteTokenizer

TOK = ByteTokenizer()

# Our block parameter -> GPT-2's, after ``transformer.h.<i>.``.
_BLOCK_NAMES = {
    "ln1.w": "ln_1.weight", "ln1.b": "ln_1.bias",
    "attn.qkv.w": "attn.c_attn.weight", "attn.qkv.b": "attn.c_attn.bias",
    "attn.proj.w": "attn.c_proj.weight", "attn.proj.b": "attn.c_proj.bias",
    "ln2.w": "ln_2.weight", "ln2.b": "ln_2.bias",
    "mlp.fc.w": "mlp.c_fc.weight", "mlp.fc.b": "mlp.c_fc.bias",
    "mlp.proj.w": "mlp.c_proj.weight", "mlp.proj.b": "mlp.c_proj.bias",
}
_TOP_NAMES = {"wte": "transformer.wte.weight", "wpe": "transformer.wpe.weight",
              "lnf.w": "transformer.ln_f.weight", "lnf.b": "transformer.ln_f.bias"}


class ExportError(SftSweepError):
    pass


def hf_name(name: str) -> str:
    """GPT-2's name of one of our parameters (``h.0.attn.qkv.w`` -> ``transformer.h.0.attn.c_attn.weight``)."""
    if name in _TOP_NAMES:
        return _TOP_NAMES[name]
    _, layer, rest = name.split(".", 2)
    return f"transformer.h.{layer}.{_BLOCK_NAMES[rest]}"


def gpt2_tensors(model: GPT) -> dict[str, np.ndarray]:
    """Every parameter under its GPT-2 name, float32 and contiguous (the tied head omitted)."""
    return {hf_name(n): np.ascontiguousarray(p, dtype=np.float32) for n, p in model.params.items()}


def gpt2_config(model: GPT, template: Template) -> dict:
    cfg = model.config
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": cfg.vocab_size,
        "n_positions": cfg.block_size,
        "n_ctx": cfg.block_size,
        "n_embd": cfg.n_embd,
        "n_layer": cfg.n_layer,
        "n_head": cfg.n_head,
        "n_inner": cfg.n_mlp,
        "activation_function": "gelu_new",
        "layer_norm_epsilon": LN_EPS,
        "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0,
        "initializer_range": cfg.init_std,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "tie_word_embeddings": True,
        "bos_token_id": template.tok.eot_id,
        "eos_token_id": template.end_id,
        "pad_token_id": template.tok.pad_id,
        "dtype": "float32",
    }


def byte_alphabet() -> list[str]:
    """The character that stands for each byte 0..255 in a byte-level BPE vocabulary (GPT-2's
    alphabet, which transformers' ``ByteLevel`` pre-tokenizer uses, so its ids line up with ours)."""
    return byte_symbols()


def tokenizer_json(tok=TOK) -> dict:
    """``tokenizer.json``: our byte ids through a byte-level BPE without merges, plus the specials;
    a BPE tokenizer (``tokenizer=bpe``) writes its own, with the same ids."""
    if hasattr(tok, "hf_tokenizer_json"):
        return tok.hf_tokenizer_json()
    vocab = {ch: b for b, ch in enumerate(byte_alphabet())}
    vocab.update(TOK.special_tokens)
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                  "use_regex": False}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [{"id": TOK.special_tokens[t], "content": t, "single_word": False,
                          "lstrip": False, "rstrip": False, "normalized": False, "special": True}
                         for t in SPECIAL_TOKENS],
        "normalizer": None,
        "pre_tokenizer": byte_level,
        "post_processor": None,
        "decoder": byte_level,
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": []},
    }


def _frames(template: Template, role: str) -> tuple[str, str]:
    """The text a template puts before and after a ``role`` turn's content."""
    probes = {"system": [Turn("system", "x"), Turn("user", "y")], "user": [Turn("user", "x")],
              "tool": [Turn("user", "y"), Turn("assistant", "y"), Turn("tool", "x")]}
    probe = Conversation(probes[role])
    index = next(i for i, t in enumerate(probe.turns) if t.role == role)
    before, after, seen_content = [], [], False
    for ids, kind, _turn in template.turn_prefix(probe, index):
        if kind == "content":
            seen_content = True
        else:
            (after if seen_content else before).extend(ids)
    return template.tok.decode(before), template.tok.decode(after)


def chat_template_jinja(template: Template) -> str:
    """``template`` as transformers' Jinja chat template: the same text turn by turn, so
    ``apply_chat_template`` yields the ids ``render`` / ``render_prompt`` do."""
    q = json.dumps  # Jinja string literals take the same escapes as JSON strings here
    tok = template.tok
    header, end, sep = (tok.decode(template.assistant_header()), tok.decode([template.end_id]),
                        tok.decode(template.separator()))
    parts = ["{%- for message in messages -%}",
             "{%- if message['role'] == 'assistant' -%}",
             f"{{{{ {q(header)} }}}}{{{{ message['content'] }}}}{{{{ {q(end)} }}}}",
             f"{{%- if not loop.last -%}}{{{{ {q(sep)} }}}}{{%- endif -%}}"]
    for role in ("system", "user", "tool"):
        before, after = _frames(template, role)
        parts += [f"{{%- elif message['role'] == {q(role)} -%}}",
                  f"{{{{ {q(before)} }}}}{{{{ message['content'] }}}}{{{{ {q(after)} }}}}"]
    parts += ["{%- else -%}{{ raise_exception('unknown role: ' + message['role']) }}",
              "{%- endif -%}", "{%- endfor -%}",
              "{%- if add_generation_prompt -%}",
              f"{{%- if messages and messages[-1]['role'] == 'assistant' -%}}{{{{ {q(sep)} }}}}{{%- endif -%}}",
              f"{{{{ {q(header)} }}}}", "{%- endif -%}"]
    return "".join(parts)


def tokenizer_config(model: GPT, template: Template) -> dict:
    TOK = template.tok
    names = {i: n for n, i in TOK.special_tokens.items()}
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": model.config.block_size,
        "bos_token": names[TOK.eot_id],
        "eos_token": names[template.end_id],
        "pad_token": names[TOK.pad_id],
        "unk_token": None,
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "chat_template": chat_template_jinja(template),
    }


def export_model(model: GPT, out_dir: Path, template: Template, source: str = "") -> list[Path]:
    """Writes the transformers checkpoint of ``model`` into ``out_dir``; returns the files."""
    try:
        from safetensors.numpy import save_file
    except ImportError:
        raise ExportError("writing safetensors needs the safetensors package: "
                          "pip install 'sft-sweep[export]'") from None
    TOK = template.tok
    if model.config.vocab_size != TOK.vocab_size:
        raise ExportError(f"the model has {model.config.vocab_size} token ids, but the {TOK.name} tokenizer has "
                          f"{TOK.vocab_size}: it is not this model's tokenizer")
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / "model.safetensors"
    with atomic_path(weights) as tmp:
        # transformers refuses a safetensors file whose metadata names no framework
        save_file(gpt2_tensors(model), str(tmp), metadata={"format": "pt", "source": source})
    names = {i: n for n, i in TOK.special_tokens.items()}
    files = {
        "config.json": gpt2_config(model, template),
        "generation_config.json": {
            "bos_token_id": TOK.eot_id, "pad_token_id": TOK.pad_id, "do_sample": False,
            # generation ends with the turn, as in sft-sweep-chat
            "eos_token_id": [template.end_id] + [i for i in sorted(names) if i != template.end_id],
        },
        "tokenizer.json": tokenizer_json(TOK),
        "tokenizer_config.json": tokenizer_config(model, template),
        "special_tokens_map.json": {"bos_token": names[TOK.eot_id], "eos_token": names[template.end_id],
                                    "pad_token": names[TOK.pad_id]},
    }
    for name, content in files.items():
        write_json(out_dir / name, content)
    return [weights] + [out_dir / n for n in files]


def export_lora(adapter: Path, base: Path | None, out_dir: Path, template: Template) -> None:
    """A LoRA job's adapter in PEFT's format (``OUT/adapter``) beside its exported base (``OUT/base``)."""
    if base is None:
        print("note: the adapter is not exported in PEFT's format: the job's base model was not found",
              file=sys.stderr)
        return
    export_model(load_model(base), out_dir / "base", template, source=str(base))
    files = export_adapter(adapter, out_dir / "adapter", out_dir / "base")
    print(f"wrote the LoRA adapter in PEFT's format to {out_dir / 'adapter'} ({len(files)} files) "
          f"and its base model to {out_dir / 'base'}")


EXPORT_FILES = ("model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
                "tokenizer_config.json", "special_tokens_map.json")
# what a LoRA job's export adds beside them (export_lora)
LORA_EXPORT_DIRS = ("base", "adapter")


def _safetensors_metadata(path: Path) -> dict:
    """The ``__metadata__`` of a safetensors file's header, or {} when it has none or is no
    safetensors file (the header: 8 bytes little-endian length, then that much JSON)."""
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if not 2 <= n <= 100 << 20:
                return {}
            header = json.loads(f.read(n))
    except (OSError, ValueError):
        return {}
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return meta if isinstance(meta, dict) else {}


def is_earlier_export(out_dir: Path) -> bool:
    """Whether ``out_dir`` holds only what ``export_model`` writes, its weights carrying our
    ``source`` metadata: a directory an export may overwrite without asking."""
    names = {p.name for p in out_dir.iterdir()
             if not (p.name.startswith(TMP_PREFIX) and p.name.endswith(TMP_SUFFIX))}
    return (names <= set(EXPORT_FILES) | set(LORA_EXPORT_DIRS) and "model.safetensors" in names
            and "source" in _safetensors_metadata(out_dir / "model.safetensors"))


def check_out_dir(out_dir: Path, force: bool) -> None:
    """Refuses an OUT_DIR that is a file, or a non-empty directory that is not an earlier export
    (unless ``force``): an export never replaces a user's own files unasked."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"{out_dir} is a file, not a directory: give a directory to write the "
                          f"checkpoint into")
    if not out_dir.is_dir() or force:
        return
    if any(out_dir.iterdir()) and not is_earlier_export(out_dir):
        raise ExportError(f"{out_dir} already holds files that an export did not write; choose an "
                          f"empty or new directory, or pass --force to replace "
                          f"{', '.join(EXPORT_FILES)} in it")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="sft-sweep-export", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="examples:\n" + "\n".join(__doc__.split("\n\n")[1].splitlines()))
    p.add_argument("target", help="a job directory, a sweep directory (with --job), or a model .npz")
    p.add_argument("out_dir", help="the directory to write the transformers checkpoint into")
    p.add_argument("--job", help="in a sweep directory: the job's name, or some of its key=value parts")
    p.add_argument("--template", choices=TEMPLATE_NAMES,
                   help="chat template for tokenizer_config.json (default: the job's own, else chatml)")
    p.add_argument("--force", action="store_true",
                   help="write into OUT_DIR even when it holds files an export did not write "
                        "(the export's own file names are replaced, other files kept)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with user_errors_exit("sft-sweep-export"):
        check_out_dir(Path(args.out_dir), args.force)
        found = resolve(args.target, args.job)
        if found.tuned is None:
            raise ExportError(f"{args.target} holds no model to export ({'; '.join(found.notes)})")
        for note in found.notes:
            if "base" not in note:  # the base model is not exported; its absence does not matter
                print(f"note: {note}", file=sys.stderr)
        model = load_model(found.tuned)
        template = get_template(args.template or found.template, job_tokenizer(found.config, found.job_dir))
        files = export_model(model, Path(args.out_dir), template, source=str(found.tuned))
        print(f"wrote {len(files)} files to {args.out_dir} ({found.tuned}, {template.name} template)")
        adapter = found.job_dir / ADAPTER if found.job_dir is not None else None
        if adapter is not None and adapter.is_file() and found.tuned.name == "model.npz":
            export_lora(adapter, found.base, Path(args.out_dir), template)


if __name__ == "__main__":
    main()
