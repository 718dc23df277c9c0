"""One numbering of answer positions (issue 29, item 7): wherever a position is shown or named — tables, JSON fields
``position`` and ``step``, the app, plots, messages — answer token k counts from 1; JSON lists are in answer order
(item 0 is answer token 1)."""

from __future__ import annotations

import json

import pytest
from rich.console import Console
from typer.testing import CliRunner

from ntp_probe.cli import app
from ntp_probe.errors import GraphError
from ntp_probe.probing import ProbeSession, parse_for_model

GRAPH = "1→2, 0→1, 0→3, 3→4 || find(0 → 2)"  # G(2,3), N=10: answer tokens 1, 2, 3
runner = CliRunner()


def _rows(text: str, first: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines() if line.split()[:1] == [first]]


def test_probe_table_and_json_count_answer_tokens_from_1(trained, wide_console):
    lm = trained("next-token")
    r = runner.invoke(app, ["probe", str(lm.path), "--graph", GRAPH, "--layers"], env={"COLUMNS": "160"})
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    head = next(i for i, line in enumerate(lines) if line.split()[:2] == ["pos", "token"])
    assert [lines[head + k].split()[0] for k in (1, 2, 3)] == ["1", "2", "3"]
    lens = next(i for i, line in enumerate(lines) if line.split()[:2] == ["pos", "layer"])
    assert {line.split()[0] for line in lines[lens + 1 :] if line.strip()} == {"1", "2", "3"}
    r = runner.invoke(app, ["probe", str(lm.path), "--graph", GRAPH, "--json"])
    steps = json.loads(r.stdout)["steps"]
    assert [s["position"] for s in steps] == [1, 2, 3]  # the field names answer token k
    assert len(json.loads(r.stdout)["forced"]) == 3  # a list: in answer order


def test_force_outside_the_answer_names_tokens_from_1(trained):
    lm = trained("next-token")
    s = ProbeSession(lm, parse_for_model(GRAPH, lm))
    with pytest.raises(GraphError, match=r"answer token 4 is outside the answer \(tokens 1\.\.3\)"):
        s.force(3, 0)


def test_watch_and_reproduce_curves_count_from_1(trained, tmp_path):
    from ntp_probe.render import watch_view
    from ntp_probe.report import write_report
    from ntp_probe.runs import status

    lm = trained("next-token")
    console = Console(width=120, record=True)
    console.print(watch_view([status(lm.path.parent)]))
    text = console.export_text()
    assert "pos 1 " in text and "pos 3 " in text and "pos 0 " not in text
    from ntp_probe.report import metrics_for, score
    from ntp_probe.task import generate

    row = score(lm, generate(2, 3, 10, 40, seed=1))
    path = write_report([row], {"tiny": metrics_for(lm)}, tmp_path, "G(2,3)", "40 graphs", "test")
    md = path.read_text()
    assert "| pos 1 | pos 2 | pos 3 |" in md and "pos 0" not in md
    assert "\npos 1 " in md and "\npos 3 " in md
