"""``sft-sweep-inspect``: what a data file (or the built-in world) trains on, token by token.

    sft-sweep-inspect                                         # the built-in world, chatml, assistant mask
    sft-sweep-inspect data.json --template alpaca --mask last -n 5
    sft-sweep-inspect glaive.json --role-map function_call=assistant --role-map observation=tool
    sft-sweep-inspect data.jsonl --html mask.html             # a page with the trained tokens marked
    sft-sweep-inspect data.json model=tiny train.truncation=drop   # any job override after the file

Each example is shown with its trained tokens highlighted (colour on a terminal, ``[[...]]`` when
piped), its trained / total token count and what the length policy did to it. The file's counts
(loaded, skipped, filtered by quality rule, deduplicated, truncated, dropped) come from the same
preparation a job runs, so they are the numbers the job records in ``summary.json`` (``data``).
"""

from __future__ import annotations

import argparse
import html
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from .appconf import conf_dir
from .atomicio import write_atomic
from .config import Config, register_configs, to_object, validate
from .config_check import check_keys
from .data import filter_quality, fit_example, prepare
from .data.fit import fit_lines
from .data.safe_read import check_regular_file
from .errors import SftSweepError, check_writable, user_errors_exit
from .tokenizer import ByteTokenizer

TOK = ByteTokenizer()
ANSI_TRAINED, ANSI_SPECIAL, ANSI_RESET = "\x1b[1;30;42m", "\x1b[2m", "\x1b[0m"


@dataclass
class RenderedExample:
    index: int  # position in the data file (or the world's training set)
    ids: list[int]  # after the length policy (empty when dropped)
    mask: list[int]
    rendered_len: int  # ids before the length policy
    status: str  # kept | truncated | dropped: too long | dropped: no trained tokens | filtered / duplicate
    source: str = ""
    tok: Any = field(default=TOK, repr=False)  # the job's tokenizer: how the ids read as text

    @property
    def n_trained(self) -> int:
        return int(sum(self.mask[1:]))

    @property
    def n_total(self) -> int:
        return len(self.ids)


@dataclass
class DataInspection:
    template: str
    mask: str
    max_tokens: int
    examples: list[RenderedExample]
    counts: dict[str, Any]  # the job's own data report (summary.json "data"), unchanged
    notes: list[str] = field(default_factory=list)


def compose_config(overrides: list[str]):
    """The typed Config a job with these overrides would get (Hydra's compose API, our conf/)."""
    register_configs()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base=None):
        composed = compose("config", overrides=list(overrides))
    check_keys(composed)
    cfg = to_object(composed)
    validate(cfg)
    return cfg


def inspect_config(cfg, base_dir: str | None = None, n_examples: int = 3, start: int = 0) -> DataInspection:
    """Render ``n_examples`` examples from ``start`` and the job's data counts for a Config."""
    prepared = prepare(cfg, base_dir)  # the job's own pipeline: its report is what the job records
    max_tokens = cfg.model.block_size + 1
    tok = prepared.template.tok
    examples: list[RenderedExample] = []
    for name, convs in prepared.conversations.items():
        kept, _ = filter_quality(convs, cfg.data.quality)
        kept_ids = {id(c) for c in kept}
        for i in range(start, min(len(convs), start + n_examples - len(examples))):
            shown = fit_example(cfg, convs[i], name, tok)
            ids, mask = shown.rendered.ids.tolist(), shown.rendered.mask.tolist()
            if id(convs[i]) not in kept_ids:
                examples.append(RenderedExample(i, ids, mask, len(ids), "removed by the quality filter or as a duplicate",
                                                name, tok))
            elif shown.fitted is not None:
                ex = shown.fitted
                examples.append(RenderedExample(i, ex.ids.tolist(), ex.mask.tolist(), len(ids), shown.status, name,
                                                tok))
            else:
                examples.append(RenderedExample(i, ids, mask, len(ids), shown.status, name, tok))
        if len(examples) >= n_examples:
            break
    counts = {**prepared.report, "n_train_examples": len(prepared.train_examples),
              "n_val_examples": len(prepared.val_examples)}
    return DataInspection(cfg.template.name, cfg.template.mask, max_tokens, examples, counts)


def inspect_job(job_dir: str | Path, n_examples: int = 1) -> DataInspection:
    """The data of a finished job, rendered as it trained on it (for reports)."""
    job_dir = Path(job_dir)
    raw = yaml.safe_load((job_dir / ".hydra" / "config.yaml").read_text())
    hydra_cfg = yaml.safe_load((job_dir / ".hydra" / "hydra.yaml").read_text()) or {}
    base_dir = ((hydra_cfg.get("hydra") or {}).get("runtime") or {}).get("cwd")
    cfg = to_object(OmegaConf.merge(OmegaConf.structured(Config), raw))
    return inspect_config(cfg, base_dir, n_examples=n_examples)


# --- rendering ---------------------------------------------------------------------------------

def spans(ids: list[int], mask: list[int], tok: Any = TOK) -> list[tuple[str, bool]]:
    """(text, trained) runs: consecutive ids with the same mask decoded together (with ``tok``)."""
    out: list[tuple[str, bool]] = []
    run: list[int] = []
    on = None
    for t, m in zip(ids, mask):
        if on is not None and bool(m) != on:
            out.append((tok.decode(run), on))
            run = []
        run.append(t)
        on = bool(m)
    if run:
        out.append((tok.decode(run), bool(on)))
    return out


def as_text(ex: RenderedExample, style: str) -> str:
    """``style``: ``ansi`` (highlight on a terminal) or ``brackets`` (``[[trained]]``)."""
    parts = []
    for text, trained in spans(ex.ids, ex.mask, ex.tok):
        if style == "ansi":
            parts.append(f"{ANSI_TRAINED}{text}{ANSI_RESET}" if trained else text)
        else:
            parts.append(f"[[{text}]]" if trained else text)
    return "".join(parts)


def as_tokens(ex: RenderedExample) -> str:
    """The example token by token, ``|`` between tokens, trained ones ``[[...]]``; a newline
    shows as ``\\n`` and a byte that is part of a character as ``\\xNN``."""
    parts = []
    for i, m in zip(ex.ids, ex.mask):
        text = ex.tok.token_text(i).replace("\n", "\\n")
        parts.append(f"[[{text}]]" if m else text)
    return "|".join(parts)


def as_html(ex: RenderedExample) -> str:
    return "".join(f"<mark>{html.escape(t)}</mark>" if on else html.escape(t) for t, on in spans(ex.ids, ex.mask, ex.tok))


def example_header(ex: RenderedExample) -> str:
    if ex.status.startswith(("dropped", "removed")):  # shown as rendered: none of it is trained
        return (f"example {ex.index} ({ex.source}): {ex.status}; as rendered {ex.n_trained} trained / "
                f"{ex.n_total} tokens")
    share = 100.0 * ex.n_trained / max(ex.n_total - 1, 1)
    extra = f", rendered {ex.rendered_len}" if ex.rendered_len != ex.n_total else ""
    return (f"example {ex.index} ({ex.source}): {ex.n_trained} trained / {ex.n_total} tokens "
            f"({share:.0f}% of targets){extra}; {ex.status}")


def counts_lines(counts: dict[str, Any]) -> list[str]:
    lines = []
    for key, rep in counts.items():
        if key.startswith("load.") and isinstance(rep, dict):
            lines.append(f"{key[5:]}: loaded {rep.get('loaded')} ({rep.get('format')}), skipped {rep.get('skipped', 0)}"
                         + (f" {rep.get('skipped_reasons')}" if rep.get("skipped") else ""))
            if rep.get("ignored_fields"):
                fields = ", ".join(f"{k} ({v} records)" for k, v in sorted(rep["ignored_fields"].items()))
                lines.append(f"{key[5:]}: fields not trained on, ignored: {fields}")
            lines += [f"{key[5:]}: warning: {w}" for w in rep.get("warnings", [])
                      if "fields not trained on" not in w]
        elif key.startswith("quality.") and isinstance(rep, dict):
            removed = rep.get("removed", {})
            dup = removed.get("duplicate", 0)
            filt = {k: v for k, v in removed.items() if k != "duplicate" and v}
            lines.append(f"{key[8:]}: {rep.get('n_in')} training conversations, filtered {sum(filt.values())}"
                         + (f" {filt}" if filt else "") + f", deduplicated {dup}, kept {rep.get('n_kept')}")
        elif key.startswith("length.") and isinstance(rep, dict):
            lines.append(f"{key[7:]}: {rep.get('n_in')} examples, truncated {rep.get('truncated')}, dropped "
                         f"{rep.get('dropped_too_long', 0)} too long + {rep.get('dropped_no_trained_tokens', 0)} "
                         f"with no trained token, kept {rep.get('n_kept')}")
    tok = counts.get("tokenizer")
    if isinstance(tok, dict):
        per = tok.get("pretrain_chars_per_token")
        lines.append(f"tokenizer: {tok.get('name')}, {tok.get('vocab_size')} ids"
                     + (f", {per:.2f} characters per token on the pre-training text" if per else ""))
    lines.append(f"training examples {counts.get('n_train_examples')}, held-out examples {counts.get('n_val_examples')}")
    lines += fit_lines(counts.get("fit"))
    return lines


def html_page(found: DataInspection, title: str) -> str:
    rows = "\n".join(f"<h3>{html.escape(example_header(ex))}</h3>\n<pre>{as_html(ex)}</pre>" for ex in found.examples)
    counts = "\n".join(f"<li>{html.escape(line)}</li>" for line in counts_lines(found.counts))
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
            "pre{white-space:pre-wrap;background:#f6f6f6;padding:.6em}mark{background:#9be39b}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><p>template <b>{found.template}</b>, mask <b>{found.mask}</b>, "
            f"at most {found.max_tokens} tokens per example; <mark>marked</mark> tokens are trained.</p>"
            f"<ul>{counts}</ul>\n{rows}\n</body></html>\n")


# --- command line ------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    doc = __doc__ or ""
    p = argparse.ArgumentParser(prog="sft-sweep-inspect", description=doc.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="examples:\n" + doc.split("\n\n")[1])
    p.add_argument("items", nargs="*", help="a data file (none: the built-in world), then job overrides key=value")
    p.add_argument("--template", help="chatml, alpaca or plain (default: the config's, chatml)")
    p.add_argument("--mask", help="assistant, last or all (default: assistant)")
    p.add_argument("--format", default="auto", help="alpaca, sharegpt, messages, chatml or auto")
    p.add_argument("--role-map", action="append", default=[], metavar="FROM=ROLE",
                   help="map a role name of the file to system/user/assistant/tool (repeatable)")
    p.add_argument("--skip-bad-records", action="store_true", help="skip and count bad records instead of stopping")
    p.add_argument("-n", "--examples", type=int, default=3, help="examples to show (default 3)")
    p.add_argument("--start", type=int, default=0, help="index of the first example shown")
    p.add_argument("--html", metavar="FILE", help="write an HTML page instead of printing the examples")
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    p.add_argument("--tokens", action="store_true", help="show each example token by token")
    p.add_argument("--json", action="store_true", help="print the counts and per-example numbers as JSON")
    return p.parse_intermixed_args(argv)


DATA_SUFFIXES = (".json", ".jsonl", ".txt")


def is_path_item(item: str) -> bool:
    """Whether a positional item names a file rather than a ``key=value`` override: anything
    without ``=``, anything that exists on disk, and names of data files (``runs/a=b.jsonl``)."""
    return "=" not in item or os.path.lexists(item) or item.lower().endswith(DATA_SUFFIXES)


def hydra_quoted(value: str) -> str:
    """``value`` as a quoted Hydra override value, so that ``=``, spaces, quotes and ``${`` in a
    path stay plain characters."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'").replace("${", "\\${") + "'"


def overrides_from(args: argparse.Namespace) -> tuple[list[str], str | None]:
    files = [a for a in args.items if is_path_item(a)]
    overrides = [a for a in args.items if not is_path_item(a)]
    if len(files) > 1:
        raise SftSweepError(f"one data file at a time, got {files}")
    path = files[0] if files else None
    out = []
    if path is not None:
        check_regular_file(path)  # says what the path is when it is no file: a directory, a FIFO ...
        out += ["data=files", f"data.datasets.main.path={hydra_quoted(str(Path(path).resolve()))}",
                f"data.datasets.main.format={args.format}"]
        if args.role_map:
            pairs = []
            for item in args.role_map:
                src, sep, role = item.partition("=")
                if not sep:
                    raise SftSweepError(f"--role-map takes FROM=ROLE, got {item!r}")
                pairs.append(f"{src}: {role}")
            out.append("+data.datasets.main.role_map={" + ", ".join(pairs) + "}")
        if args.skip_bad_records:
            out.append("data.datasets.main.on_bad_record=skip")
    if args.template:
        out.append(f"template={args.template}")
    if args.mask:
        out.append(f"template.mask={args.mask}")
    return out + overrides, path


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with user_errors_exit("sft-sweep-inspect"):
        overrides, path = overrides_from(args)
        if args.html:
            check_writable(Path(args.html))
        cfg = compose_config(overrides)
        found = inspect_config(cfg, base_dir=".", n_examples=args.examples, start=args.start)
        title = f"{path or 'built-in world'}: {found.template} template, {found.mask} mask"
        if args.html:
            write_atomic(Path(args.html), html_page(found, title))
            print(f"wrote {args.html}")
    if args.json:
        print(json.dumps({"template": found.template, "mask": found.mask, "max_tokens": found.max_tokens,
                          "counts": found.counts,
                          "examples": [{"index": e.index, "trained": e.n_trained, "total": e.n_total,
                                        "rendered": e.rendered_len, "status": e.status} for e in found.examples]},
                         indent=2, default=str))
        return
    if args.html:
        return
    color = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())
    print(f"{title}; at most {found.max_tokens} tokens per example; "
          + ("highlighted" if color else "[[bracketed]]") + " tokens are trained")
    for line in counts_lines(found.counts):
        print(f"  {line}")
    for ex in found.examples:
        print()
        print(example_header(ex))
        print(as_tokens(ex) if args.tokens else as_text(ex, "ansi" if color else "brackets"))


if __name__ == "__main__":
    main()
