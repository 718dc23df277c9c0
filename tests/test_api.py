"""The Python API (``import ntp_probe``): every public name importable from the package, imported lazily (no torch
at ``import ntp_probe``), none shadowed by a submodule; the helpers on a tiny real model; docs/notebook.ipynb and
the README's "From Python" example run as written."""

from __future__ import annotations

import json
import pkgutil
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import ntp_probe

ROOT = Path(__file__).resolve().parents[1]


def test_import_ntp_probe_loads_no_torch():
    code = "import sys, ntp_probe; print('torch' in sys.modules, sorted(m for m in sys.modules if m.startswith('ntp_probe')))"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "False ['ntp_probe']"


def test_every_public_name_resolves_and_none_is_a_submodule():
    submodules = {m.name for m in pkgutil.iter_modules(ntp_probe.__path__)}
    assert "evaluate" in submodules and "train" in submodules  # why the held-out figures are 'score'
    for name in ntp_probe.__all__:
        assert name not in submodules, f"ntp_probe.{name} would be replaced by the submodule once it is imported"
        assert getattr(ntp_probe, name) is not None
        assert name in dir(ntp_probe)
    from ntp_probe.checkpoint import load
    from ntp_probe.evaluate import evaluate
    from ntp_probe.probing import ProbeSession

    assert ntp_probe.load is load and ntp_probe.score is evaluate and ntp_probe.ProbeSession is ProbeSession
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        ntp_probe.nothing_here  # noqa: B018
    from ntp_probe import patch, sample_graphs  # noqa: F401 - the from-import form works too


def test_the_helpers_on_a_tiny_model(trained, tmp_path):
    lm = trained("next-token")
    a, b = ntp_probe.sample_graphs(lm, 5, seed=7), ntp_probe.sample_graphs(lm, 5, seed=7)
    assert a == b and len(a) == 5 and all(len(g.path) == 3 for g in a)
    assert ntp_probe.sample_graphs(lm, 5, seed=8) != a
    g = ntp_probe.parse_graph(ntp_probe.format_graph(a[0]), lm)
    assert g.edges == a[0].edges and (g.start, g.goal) == (a[0].start, a[0].goal)
    assert ntp_probe.parse_graph("0,1|1,2|0,3|3,4/0,4").goal == 4  # no model: any ids
    with pytest.raises(ntp_probe.NtpProbeError, match="out of range"):
        ntp_probe.parse_graph("0,1|1,2|0,3|3,40/0,40", lm)  # the tiny model knows ids 0..9
    with pytest.raises(ntp_probe.NtpProbeError, match="count"):
        ntp_probe.sample_graphs(lm, 0)
    s = ntp_probe.ProbeSession(lm, a[0])
    figures = ntp_probe.score(lm, a)
    assert figures["count"] == 5 and 0 <= figures["accuracy"] <= 1
    res = ntp_probe.patch(lm, a, pair="goal")
    assert res["count"] == 5 and len(res["grid"]) == len(res["layers"]) and s.length == 3
    assert len(ntp_probe.heatmap(res).axes) == 2  # the map and its colour bar
    assert ntp_probe.heatmap_png(res, tmp_path / "map.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def run_cells(sources: list[str], where: Path) -> dict:
    """Run code cells in order in one namespace, in ``where``, with matplotlib's Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns: dict = {"__name__": "__main__"}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*non-interactive.*")  # plt.show() under Agg
        for i, src in enumerate(sources):
            exec(compile(src, f"cell {i + 1}", "exec"), ns)
    ns["_figures"] = [plt.figure(n) for n in plt.get_fignums()]
    return ns


def test_the_notebook_runs(tmp_path, monkeypatch):
    nb = json.loads((ROOT / "docs" / "notebook.ipynb").read_text())
    assert nb["nbformat"] == 4
    cells = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c["outputs"] for c in cells)  # kept without outputs: its diff is its code
    monkeypatch.chdir(tmp_path)
    try:
        ns = run_cells(["".join(c["source"]) for c in cells], tmp_path)
        clean, forced, res, hans = ns["clean"], ns["forced"], ns["res"], ns["hans"]
        assert ns["lm"].display_name == "g2-5-next-token"
        assert clean.correct
        # the wrong arm forced: start and the wrong arm's first node, the rest decoded from there
        assert forced.forced == {0: clean.graph.start, 1: ns["wrong_arm"][0]} and forced.path[1] != clean.path[1]
        assert forced.path[:2] == [clean.graph.start, ns["wrong_arm"][0]]
        assert not clean.forced  # 'then' left the clean session as it was
        assert 0 <= hans["goal_copy_rate"] <= 1 and hans["count"] == 100
        assert res["pair"] == "goal" and res["count"] == 8 and len(res["normalized"]) == len(res["layers"]) == 3
        assert len(ns["_figures"]) == 1 and len(ns["_figures"][0].axes) == 2 * 5  # greedy + forced, 5 answer tokens
        assert list(tmp_path.iterdir()) == []  # it writes nothing
    finally:
        import matplotlib.pyplot as plt

        plt.close("all")


def test_the_readme_from_python_example_runs(tmp_path, monkeypatch):
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## From Python"):]
    section = section[: section.index("\n## ", 1)]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert blocks, "the From Python section has a python example"
    used = {n for b in blocks for n in re.findall(r"ntp_probe\.([A-Za-z_]+)", b)}
    assert used <= set(ntp_probe.__all__), used - set(ntp_probe.__all__)
    listed = {n for row in re.findall(r"^\| (`.*?) \|", section, re.M) for n in re.findall(r"`([A-Za-z_]+)`", row)}
    assert listed == set(ntp_probe.__all__) - {"__version__"}  # the table names every public name, and only those
    monkeypatch.chdir(tmp_path)
    try:
        run_cells(blocks, tmp_path)
    finally:
        import matplotlib.pyplot as plt

        plt.close("all")
