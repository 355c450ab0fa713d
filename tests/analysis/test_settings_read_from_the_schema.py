"""analysis/ knows settings only through their descriptions in the config schema: no module
names a schema setting's dotted key, and no module but the one that recognises foreign columns
(``analysis.roles._foreign_role``) matches a column by a piece of its name."""

from __future__ import annotations

import ast
from pathlib import Path

from sft_sweep.config import SETTINGS

ANALYSIS = Path(__file__).resolve().parents[2] / "analysis"
#: The one place that may recognise a column by its name: columns no schema describes.
FOREIGN = ("roles.py", "_foreign_role")


def _schema_words() -> tuple[set[str], set[str]]:
    keys = set(SETTINGS.settings) | set(SETTINGS.groups)
    words = {part for k in keys for part in k.split(".") if part != SETTINGS.WILDCARD}
    words |= {s.role for s in SETTINGS.settings.values() if s.role}
    return keys, words


def _docstrings(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def _names_a_key(text: str, keys: set[str]) -> bool:
    for piece in text.replace("=", " ").replace(",", " ").split():
        piece = piece.strip("`'\"()[]{}:;~+")
        if "." not in piece:
            continue
        if SETTINGS.pattern(piece) in keys or (piece.endswith(".") and "." in piece[:-1]
                                                       and any(k.startswith(piece) for k in keys)):
            return True
    return False


#: Names that hold a table or a record in analysis/ (``"steps" in done`` asks for a column).
_TABLES = {"done", "jobs", "df", "part", "row", "rec", "record", "summary", "runs", "final", "base", "sub"}


def _is_table(node: ast.AST) -> bool:
    return isinstance(node, ast.Name) and node.id in _TABLES or isinstance(node, ast.Attribute) and node.attr in _TABLES


def _functions(tree: ast.AST):
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                yield fn.name, node


def test_no_analysis_module_names_a_setting_by_its_dotted_key():
    keys, _ = _schema_words()
    found = []
    for path in sorted(ANALYSIS.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docs = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
                if _names_a_key(node.value, keys):
                    found.append(f"{path.relative_to(ANALYSIS)}:{node.lineno}: {node.value!r}")
    assert found == []


def test_only_foreign_columns_are_matched_by_a_piece_of_their_name():
    _, words = _schema_words()
    found = []
    for path in sorted(ANALYSIS.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for fn, node in _functions(tree):
            if (path.name, fn) == FOREIGN:
                continue
            piece = None
            if isinstance(node, ast.Compare) and any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops) \
                    and isinstance(node.left, ast.Constant) and isinstance(node.left.value, str) \
                    and not _is_table(node.comparators[0]):
                piece = node.left.value
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr in ("startswith", "endswith", "find", "count") and node.args \
                    and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                piece = node.args[0].value
            if piece is not None and piece.strip("._") in words:
                found.append(f"{path.relative_to(ANALYSIS)}:{node.lineno}: {ast.unparse(node)}")
    assert found == []


def test_the_check_catches_what_it_should():
    keys, words = _schema_words()
    assert _names_a_key("optim.lr", keys) and _names_a_key("data.datasets.main.format", keys)
    assert _names_a_key("data.world.", keys) and not _names_a_key("final_answer_acc", keys)
    assert {"replay_ratio", "seed", "lr", "method"} <= words
