"""Everything that behaves differently on a terminal, run in a pseudo-terminal (tests/ptyrun.py): the Rich live views
(`sweep run`, `watch --follow`), `train`'s progress bar, the tables of `reproduce` and `inference-fixes`, `eval
--json`'s coloured JSON and the app. Redirected to a pipe these take other paths (plain lines, no Live), which is
how `sweep run`'s live view crashed in every terminal while the suite was green.

Each asserts exit 0, no traceback, and that the live output shows what the command is about. The commands run the
installed CLI (`ntp-probe` beside the test's python) on tiny models: seconds each."""

from __future__ import annotations

import json
import re

import pytest

from ptyrun import CTRL_C, CTRL_Q, NTP_PROBE, run_in_pty

pytestmark = pytest.mark.slow

TINY = ["--degree", "2", "--path-len", "3", "--nodes", "10", "--layers", "1", "--d-model", "16", "--heads", "2",
        "--batch-size", "16", "--threads", "1"]


def ok(r, *expected: str) -> str:
    """The run's text, after checking exit 0, no traceback and every expected piece of text on the screen."""
    text = r.text
    assert r.rc == 0, r.explain()
    assert "Traceback" not in text and "Error:" not in text, r.explain()
    for e in expected:
        assert e in text, f"{e!r} not on the screen; {r.explain()}"
    return text


def test_train_progress_bar(tmp_path):
    r = run_in_pty([NTP_PROBE, "train", "--out", str(tmp_path / "run"), *TINY, "--steps", "20", "--eval-every", "10",
                    "--eval-count", "32"], cwd=tmp_path)
    text = ok(r, "training on cpu", "20/20", "done: step 20/20")
    assert re.search(r"train\s.*20/20\s+loss \d\.\d{4}\s+acc \d\.\d{3}", text), r.explain()  # the bar's own line
    assert "\x1b[" in r.raw  # drawn as a terminal bar (the plain-lines mode prints "step     10  loss …" instead)
    assert not re.search(r"^step\s+10\s+loss", text, re.M)


SWEEP = """
[train]
degree = 2
path-len = 3
nodes = 10
layers = 1
d-model = 16
heads = 2
batch-size = 16
steps = 6
eval-every = 3
eval-count = 16
threads = 1
[grid]
seed = [1, 2]
"""


def test_sweep_run_live_view(tmp_path):
    """The README's `sweep run … --jobs 2` in a terminal: the live table of runs (this crashed with an ImportError
    of `fmt.duration` in every terminal, and only there)."""
    (tmp_path / "r.toml").write_text(SWEEP)
    r = run_in_pty([NTP_PROBE, "sweep", "run", "r.toml", "--out", "map", "--jobs", "2"], cwd=tmp_path, timeout=180)
    text = ok(r, "sweep: 2 runs, 2 at a time", "seed-1", "seed-2", "held-out greedy")
    assert re.search(r"seed-1\s.*finished\s.*6/6", text) and re.search(r"seed-2\s.*finished\s.*6/6", text), r.explain()
    assert (tmp_path / "map" / "seed-1" / "model.safetensors").is_file()


def test_watch_follow_until_ctrl_c(trained, tmp_path):
    run = trained("next-token").path.parent
    r = run_in_pty([NTP_PROBE, "watch", str(run), "--follow", "0.2"], cwd=tmp_path, timeout=60,
                   keys=[("finished", CTRL_C)])
    text = ok(r, "training runs", run.name, "finished", "30/30", "greedy accuracy per answer position")
    assert "\x1b[" in r.raw


def test_reproduce_trains_and_prints_its_tables(tmp_path):
    r = run_in_pty([NTP_PROBE, "reproduce", *TINY, "--steps", "4", "--eval-every", "2", "--count", "32",
                    "--objectives", "next-token,reverse", "--out", "cmp"], cwd=tmp_path, timeout=180)
    ok(r, "next-token", "reverse", "scoring", "report.md")
    assert (tmp_path / "cmp" / "report.md").is_file()


def test_inference_fixes_table(trained, tmp_path):
    a, b = (str(trained(o).path.parent) for o in ("next-token", "reverse"))
    r = run_in_pty([NTP_PROBE, "inference-fixes", a, b, "--count", "16", "--threads", "1"], cwd=tmp_path)
    ok(r, "greedy", "beam", "verifier")


def test_eval_json_is_coloured_on_a_terminal_and_still_json(trained, tmp_path):
    model = str(trained("next-token").path.parent)
    r = run_in_pty([NTP_PROBE, "eval", model, "--count", "16", "--json", "--threads", "1"], cwd=tmp_path, columns=400)
    text = ok(r, '"accuracy"')
    assert "\x1b[" in r.raw  # Rich's print_json on a terminal
    res = json.loads(text)
    assert res["count"] == 16 and res["decode"] == "greedy"


def test_the_app_opens_and_quits(trained, tmp_path):
    """`ntp-probe tui MODEL` in a terminal: the app draws the model's graph, and ctrl+q quits with exit 0."""
    model = trained("next-token").path.parent
    r = run_in_pty([NTP_PROBE, "tui", str(model)], cwd=tmp_path, timeout=90, keys=[("answer token", CTRL_Q)])
    ok(r, model.name, "answer token")
