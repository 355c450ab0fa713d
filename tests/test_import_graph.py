"""The project's import graph, read from the source (nothing is imported): the trainer never
depends on the analysis, and no module depends on itself through others (an import circle,
which only an import tucked into a function body or under ``TYPE_CHECKING`` can hold off; both
count here)."""

from __future__ import annotations

import ast
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("sft_sweep", "analysis")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}


def _imports(tree: ast.AST):
    """Import statements anywhere in the file: module level, function bodies, and those under
    ``if TYPE_CHECKING:`` (they never run, but a module that needs another's types to be read
    depends on it all the same)."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (a package's ``__init__`` stands for the package)."""
    modules = project_modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                # ``from pkg import mod`` imports the submodule; ``from mod import name`` the module
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in targets:
                while target and target not in modules:  # ``import a.b.c`` of a name inside a module
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle per strongly connected group of modules (Tarjan), each as a path."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_the_imports_it_should():
    graph = import_graph()
    assert "sft_sweep.jobfiles" in graph["sft_sweep.train.job"]
    assert "sft_sweep.data.prepare" in graph["sft_sweep.data"]  # from .prepare import ...
    assert "sft_sweep.jobfiles" in graph["analysis.jobdir"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_sft_sweep_never_imports_analysis():
    graph = import_graph()
    wrong = {m: sorted(t for t in targets if t.split(".")[0] == "analysis")
             for m, targets in graph.items() if m.split(".")[0] == "sft_sweep"}
    assert not {m: t for m, t in wrong.items() if t}


def test_analysis_imports_only_the_contract_the_schema_and_the_data_layer():
    allowed = ("sft_sweep.jobfiles", "sft_sweep.config", "sft_sweep.setting", "sft_sweep.data", "sft_sweep.errors")
    graph = import_graph()
    wrong = {m: sorted(t for t in targets if t.startswith("sft_sweep") and not t.startswith(allowed))
             for m, targets in graph.items() if m.startswith("analysis")}
    assert not {m: t for m, t in wrong.items() if t}


def test_no_import_circle_in_sft_sweep():
    graph = import_graph()
    sub = {m: {t for t in ts if t.startswith("sft_sweep")} for m, ts in graph.items() if m.startswith("sft_sweep")}
    assert cycles(sub) == []


def test_no_import_circle_among_project_modules():
    assert cycles(import_graph()) == []


# Modules that import a tracker only when a job asks for it: each tracker needs an optional extra.
LAZY_FOR_EXTRAS = {"sft_sweep.tracking", "sft_sweep.tracking.sweep_callback"}


def test_sft_sweep_imports_its_own_modules_at_the_top():
    inside = []
    for name, path in project_modules().items():
        if not name.startswith("sft_sweep") or name in LAZY_FOR_EXTRAS:
            continue
        for fn in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                inside += [f"{name}:{n.lineno}" for n in ast.walk(fn) if isinstance(n, ast.ImportFrom)
                           and (n.level or (n.module or "").startswith(PACKAGES))]
    assert inside == []
