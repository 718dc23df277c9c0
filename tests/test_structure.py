"""The house in order: no import circle between the project's modules, the CLI as small modules per command group.

Every ``ntp_probe`` module is parsed with ``ast`` (nothing is imported): each ``import`` and ``from … import``,
at the top of a module or inside a function or method (lazy imports count), relative or absolute, is an edge
from the importing module to the project module it names. ``from pkg import name`` is an edge to the submodule
``pkg.name`` when there is one, else to ``pkg``. Imports under ``if TYPE_CHECKING:`` never run and are left out.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "ntp_probe"
CLI_MAX_LINES = 400
CLI = "ntp_probe.cli"
ENTRY_POINTS = {"ntp_probe.__main__", "ntp_probe.cli.__main__"}  # may import the module that assembles the app


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _type_checking_only(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or \
        (isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """Every Import/ImportFrom node anywhere in the tree (functions, methods, try blocks …), except under
    ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        children = list(ast.iter_child_nodes(node))
        if isinstance(node, ast.If) and _type_checking_only(node):
            children = node.orelse  # the else branch runs
        stack.extend(children)


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    # 'import a.b.c' runs a, a.b and a.b.c: its deepest project module is the edge
                    parts = alias.name.split(".")
                    found = next((".".join(parts[:i]) for i in range(len(parts), 0, -1) if ".".join(parts[:i]) in mods), None)
                    if found:
                        targets.add(found)
                continue
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source not in mods:
                continue
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                targets.add(sub if sub in mods else source)
        graph[name] = targets - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle (as a path that comes back to its start), or None. Iterative depth-first search."""
    colour = dict.fromkeys(graph, 0)  # 0 new, 1 on the current path, 2 done
    for start in sorted(graph):
        if colour[start]:
            continue
        path, its = [start], [iter(sorted(graph[start]))]
        colour[start] = 1
        while path:
            nxt = next(its[-1], None)
            if nxt is None:
                colour[path.pop()] = 2
                its.pop()
            elif colour.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif colour.get(nxt) == 0:
                colour[nxt] = 1
                path.append(nxt)
                its.append(iter(sorted(graph[nxt])))
    return None


def test_the_graph_sees_lazy_relative_and_absolute_imports():
    graph = import_graph()
    assert "ntp_probe.checkpoint" in graph["ntp_probe.runs"]  # top level, relative ('from . import checkpoint')
    assert "ntp_probe.checkpoint" in graph["ntp_probe.follow"]  # inside a function
    assert "ntp_probe.cli" in graph["ntp_probe.__main__"]  # 'from .cli import main'
    assert "ntp_probe.cli.sweep" in graph["ntp_probe.cli"]  # 'from . import sweep'
    assert "ntp_probe.runfiles" in graph["ntp_probe.train"]
    # and it finds a circle when there is one, of any length
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_circle_between_project_modules():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_cli_modules_are_small():
    big = {p.name: n for p in (PACKAGE / "cli").glob("*.py") if (n := len(p.read_text(encoding="utf-8").splitlines())) > CLI_MAX_LINES}
    assert not big, f"ntp_probe/cli/ modules over {CLI_MAX_LINES} lines (split the command group): {big}"


def test_nothing_imports_the_module_that_assembles_the_cli():
    graph = import_graph()
    back = sorted(name for name, targets in graph.items() if CLI in targets and name not in ENTRY_POINTS)
    assert not back, f"{back} import {CLI} (where the app is assembled); import from ntp_probe.cli._common or the command's module"
    assert not (PACKAGE / "cli.py").exists() and not (PACKAGE / "cli_sweep.py").exists()


def test_run_files_are_named_in_one_place():
    """What the run files are called is defined in runfiles.py only (every other module imports it)."""
    names = {"MODEL_FILE", "STATE_FILE", "METRICS_FILE", "PID_FILE", "PROGRESS_FILE", "KEPT_DIR"}
    defined = {}
    for name, path in modules().items():
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    for t in ast.walk(target):
                        if isinstance(t, ast.Name) and t.id in names:
                            defined.setdefault(t.id, []).append(name)
    assert defined == {n: ["ntp_probe.runfiles"] for n in names}, defined
