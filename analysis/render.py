"""The report's document model and its two renderers, Markdown and self-contained HTML.

A document is a list of :class:`Block`; each renderer is a table from block kind to the function
that writes that kind, so a new kind is one entry per table. Every string in a block is plain
text and each renderer escapes all of it: HTML-escaped in ``report.html`` (which also forbids
scripts through its Content-Security-Policy); in ``report.md`` generations sit in code fences
longer than any backtick run they contain and other text is escaped, so no generation can
inject markup or break the layout. The page's style sheet is the package resource
``report.css``.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from analysis.verdicts import INCONCLUSIVE, NOT_MEASURABLE, NOT_SUPPORTED, SUPPORTED


@dataclass
class Block:
    kind: str  # a key of MARKDOWN and HTML below
    text: str = ""
    items: list[Any] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# ======================================================================================
# Markdown
# ======================================================================================

_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")
# What would start a heading, list item or quote at the beginning of a line.
_MD_LINE_START = re.compile(r"^(\s*)(\d*)(#{1,6}|[-+=]+|[.)])(?=\s|$)")


def md_escape(text: Any) -> str:
    """Plain text -> Markdown that renders as that text, on one line.

    HTML-significant characters become entities (no raw HTML can get through), the characters
    that start emphasis, code, links, tables or strike-through are backslash-escaped, a
    leading ``#``/``-``/``+``/``1.`` cannot start a heading or list, line breaks become spaces.
    """
    t = str(text).replace("\r", "").replace("\n", " ")
    t = t.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    t = _MD_SPECIAL.sub(r"\\\1", t)
    return _MD_LINE_START.sub(lambda m: f"{m.group(1)}{m.group(2)}\\{m.group(3)}", t, count=1)


def md_code(text: Any, info: str = "text") -> str:
    """A fenced code block whose fence is longer than any backtick run inside ``text``
    (an empty text gives a visible placeholder instead of an empty block)."""
    t = str(text).replace("\r", "")
    if not t.strip():
        return "*(empty)*"
    longest = max((len(m) for m in re.findall(r"`+", t)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{t}\n{fence}"


def _md_items(b: Block) -> str:
    return "\n".join(f"- {md_escape(i)}" for i in b.items) + "\n"


def _md_finding(b: Block) -> str:
    verdict = b.extra["verdict"].upper()
    return f"- **{md_escape(verdict)}**: {md_escape(b.text)} — {md_escape(b.extra['evidence'])}"


def _md_findings(b: Block) -> str:
    """The findings as one table (verdict, claim, what decided it), then each one's evidence."""
    rows = [[f["verdict"].upper(), f["claim"], *f["cells"]] for f in b.items]
    table = _md_table(Block("table", header=b.header, rows=rows))
    evidence = "\n".join(_md_finding(Block("finding", f["claim"], extra=f)) for f in b.items)
    return f"{table}\nThe evidence of each finding:\n\n{evidence}\n"


def _md_table(b: Block) -> str:
    head = "| " + " | ".join(md_escape(h) for h in b.header) + " |"
    sep = "|" + "|".join("---" for _ in b.header) + "|"
    body = ["| " + " | ".join(md_escape(c) for c in r) + " |" for r in b.rows]
    return "\n".join([head, sep, *body]) + "\n"


def _md_url(rel: str) -> str:
    return "".join(c if c.isalnum() or c in "/._-" else f"%{ord(c):02X}" for c in rel)


def _md_img(b: Block) -> str:
    return f"![{md_escape(b.text)}]({_md_url(b.extra['rel'])})\n\n*{md_escape(b.text)}*\n"


def _md_commands(b: Block) -> str:
    return "\n".join(f"- {md_escape((where + ': ' if where else '') + cmd + ' (' + notes + ')')}"
                     for where, cmd, notes in b.items) + "\n"


def _md_masked(b: Block) -> str:
    return md_code("".join(f"[[{t}]]" if on else t for t, on in b.extra["spans"])) + "\n"


def _md_sample(b: Block) -> str:
    s = b.extra
    parts = [f"### {md_escape(s['task'])}\n", "Prompt:\n", md_code(s["prompt"]) + "\n",
             f"Reference: {md_escape(s['reference']) or '—'}\n", "Base model:\n", md_code(s["base"]) + "\n"]
    for label, text in s["tuned"]:
        parts += [f"Tuned, {md_escape(label)}:\n", md_code(text) + "\n"]
    return "\n".join(parts)


MARKDOWN: dict[str, Callable[[Block], str]] = {
    "h1": lambda b: f"# {md_escape(b.text)}\n",
    "h2": lambda b: f"## {md_escape(b.text)}\n",
    "meta": _md_items,
    "p": lambda b: md_escape(b.text) + "\n",
    "list": _md_items,
    "finding": _md_finding,
    "findings": _md_findings,
    "table": _md_table,
    "img": _md_img,
    "commands": _md_commands,
    "masked": _md_masked,
    "sample": _md_sample,
}


def render_markdown(doc: list[Block]) -> str:
    out = [MARKDOWN[b.kind](b) for b in doc]
    # Findings are list items: keep them together, separate every other block by a blank line.
    text = ""
    for i, chunk in enumerate(out):
        is_item = chunk.startswith("- **")
        prev_item = i > 0 and out[i - 1].startswith("- **")
        text += ("\n" if is_item and prev_item else "\n\n" if text else "") + chunk.rstrip("\n")
    return text + "\n"


# ======================================================================================
# HTML
# ======================================================================================

_VERDICT_CLASS = {SUPPORTED: "v-supported", NOT_SUPPORTED: "v-not-supported", INCONCLUSIVE: "v-inconclusive",
                  NOT_MEASURABLE: "v-not-measurable"}
_NUMERIC = re.compile(r"^[+\-−]?[\d.]+(e[+\-]?\d+)?( ± [\d.]+)?%?$|^—$")


def style_sheet() -> str:
    """The report's CSS, shipped beside this module."""
    return resources.files("analysis").joinpath("report.css").read_text(encoding="utf-8")


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _pre(text: Any) -> str:
    return f"<pre>{_e(text)}</pre>" if str(text).strip() else '<pre class="empty">(empty)</pre>'


def _html_list(b: Block, css_class: str = "") -> str:
    opening = f'<ul class="{css_class}">' if css_class else "<ul>"
    return opening + "".join(f"<li>{_e(i)}</li>" for i in b.items) + "</ul>"


def _html_finding(b: Block) -> str:
    v = b.extra["verdict"]
    return (f'<div class="finding {_VERDICT_CLASS.get(v, "v-inconclusive")}">'
            f'<span class="verdict">{_e(v)}</span><span class="claim">{_e(b.text)}</span>'
            f'<div class="evidence">{_e(b.extra["evidence"])}</div></div>')


def _html_findings(b: Block) -> str:
    """The findings as one table; each one's evidence folded (``<details>``) in a row below its own."""
    head = "".join(f"<th>{_e(h)}</th>" for h in b.header)
    rows = []
    for f in b.items:
        cls = _VERDICT_CLASS.get(f["verdict"], "v-inconclusive")
        cells = "".join(f"<td>{_e(c)}</td>" for c in f["cells"])
        rows.append(f'<tr class="{cls}"><td><span class="verdict">{_e(f["verdict"])}</span></td>'
                    f'<td class="claim">{_e(f["claim"])}</td>{cells}</tr>'
                    f'<tr class="evidence-row {cls}"><td colspan="{len(b.header)}"><details><summary>evidence</summary>'
                    f'<div class="evidence">{_e(f["evidence"])}</div></details></td></tr>')
    return f'<table class="findings"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _html_table(b: Block) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in b.header)
    rows = "".join(
        "<tr>" + "".join(f'<td class="num">{_e(c)}</td>' if _NUMERIC.match(str(c)) else f"<td>{_e(c)}</td>"
                         for c in r) + "</tr>" for r in b.rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _html_img(b: Block) -> str:
    data = base64.b64encode(Path(b.path).read_bytes()).decode("ascii")
    return (f'<figure><img alt="{_e(b.text)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_e(b.text)}</figcaption></figure>")


def _html_commands(b: Block) -> str:
    return "<ul>" + "".join(f"<li>{_e(where + ': ') if where else ''}<code>{_e(cmd)}</code> ({_e(notes)})</li>"
                            for where, cmd, notes in b.items) + "</ul>"


def _html_masked(b: Block) -> str:
    return '<pre class="masked">' + "".join(f"<mark>{_e(t)}</mark>" if on else _e(t)
                                            for t, on in b.extra["spans"]) + "</pre>"


def _html_sample(b: Block) -> str:
    s = b.extra
    parts = [f'<div class="sample"><h3>{_e(s["task"])}</h3>',
             '<div class="label">prompt</div>', f"<pre>{_e(s['prompt'])}</pre>",
             f'<div class="label">reference: {_e(s["reference"] or "—")}</div>',
             '<div class="label">base model</div>', _pre(s["base"])]
    for label, text in s["tuned"]:
        parts += [f'<div class="label">tuned, {_e(label)}</div>', _pre(text)]
    parts.append("</div>")
    return "".join(parts)


HTML: dict[str, Callable[[Block], str]] = {
    "h1": lambda b: f"<h1>{_e(b.text)}</h1>",
    "h2": lambda b: f"<h2>{_e(b.text)}</h2>",
    "meta": lambda b: _html_list(b, "meta"),
    "p": lambda b: f"<p>{_e(b.text)}</p>",
    "list": _html_list,
    "finding": _html_finding,
    "findings": _html_findings,
    "table": _html_table,
    "img": _html_img,
    "commands": _html_commands,
    "masked": _html_masked,
    "sample": _html_sample,
}


def render_html(doc: list[Block]) -> str:
    title = next((b.text for b in doc if b.kind == "h1"), "Sweep report")
    body = [HTML[b.kind](b) for b in doc]
    csp = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(title)}</title><style>\n{style_sheet()}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")
