"""Watching a model learn (issue 22): train --keep-checkpoints, RUN@STEP, and the app following a live run
(--follow) and replaying its kept checkpoints (, .). Tiny real runs: G(2,3) N=10, 1 layer, d-model 32."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import sync, tiny_config
from ntp_probe.cli import app as cli_app
from ntp_probe.runfiles import kept_files, kept_name
from ntp_probe.train import train
from ntp_probe.tui.app import ProbeApp
from ntp_probe.tui.widgets.training import RunShown, columns, training_text

ROOT = Path(__file__).parent.parent
GRAPH = "1→2, 0→1, 0→3, 3→4 || find(0 → 2)"  # G(2,3), N=10
SIZE = (120, 40)
EVAL = ["--count", "64", "--seed", "7"]




def cli(*args):
    return CliRunner().invoke(cli_app, [str(a) for a in args])


def one_line_error(r, *words):
    assert r.exit_code == 2, r.output
    text = r.output.strip()
    assert text.startswith("error:") and "\n" not in text and "Traceback" not in text, text
    for w in words:
        assert w in text, text


def same_file(a: Path, b: Path) -> bool:
    """The same header and tensors (safetensors writes its header's keys in no fixed order)."""
    from safetensors import safe_open

    with safe_open(str(a), "pt") as fa, safe_open(str(b), "pt") as fb:
        return fa.metadata() == fb.metadata() and sorted(fa.keys()) == sorted(fb.keys()) and all(
            fa.get_tensor(k).equal(fb.get_tensor(k)) for k in fa.keys())


def eval_json(spec) -> dict:
    r = cli("eval", spec, *EVAL, "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    res.pop("model")
    res.pop("seconds")  # wall time
    return res


@pytest.fixture(scope="module")
def kept_run(tmp_path_factory):
    """A run of 20 steps with --keep-checkpoints, and eval --json of its live model.safetensors at each evaluation
    (taken while the run was at that step)."""
    out = tmp_path_factory.mktemp("kept") / "run"
    live = {}

    def at_save(event):
        if event["event"] == "save":
            live[event["step"]] = eval_json(out)

    train(tiny_config(out, steps=20, keep_checkpoints=True), out, callback=at_save)
    return out, live


def test_kept_steps_eval_as_the_live_run_did(kept_run):
    out, live = kept_run
    assert list(kept_files(out)) == [10, 20] and set(live) == {10, 20}
    for step in (10, 20):
        assert (out / "kept" / kept_name(step)).is_file()
        assert eval_json(f"{out}@{step}") == live[step]
    assert live[10] != live[20]  # the two steps are different models
    r = cli("eval", f"{out}@10", *EVAL, "--json")
    assert json.loads(r.output)["model"] == "run@10"
    r = cli("probe", f"{out}@10", "--graph", GRAPH, "--json")
    assert r.exit_code == 0 and json.loads(r.output)["model"] == "run@10"
    r = cli("watch", f"{out}@10", "--json")
    row = json.loads(r.output)[0]
    assert r.exit_code == 0 and row["step"] == 10 and row["last"]["step"] == 10 and [c["step"] for c in row["curve"]] == [10]
    assert row["checkpoint"].endswith("kept/step-000010.safetensors") and row["state"] == "finished"


def test_resume_keeps_the_kept_ones_and_force_clears_them(kept_run, tmp_path):
    src, _ = kept_run
    out = tmp_path / "run"
    shutil.copytree(src, out)
    before = {s: (p.read_bytes(), p.stat().st_mtime_ns) for s, p in kept_files(out).items()}
    shutil.copy(out / "kept" / kept_name(20), out / "kept" / kept_name(40))  # left by a kill past the state's step
    r = cli("train", "--out", out, "-d", 2, "-l", 3, "-n", 10, "--layers", 1, "--d-model", 32, "--heads", 2,
            "--steps", 30, "-b", 32, "--lr", 3e-3, "--warmup", 5, "--eval-every", 10, "--eval-count", 64, "--device", "cpu",
            "--amp", "fp32", "--keep-checkpoints", "--resume", "-q")
    assert r.exit_code == 0, r.output
    kept = kept_files(out)
    assert list(kept) == [10, 20, 30]
    for s in (10, 20):
        assert (kept[s].read_bytes(), kept[s].stat().st_mtime_ns) == before[s]
    assert same_file(kept[30], out / "model.safetensors")  # the checkpoint of step 30 itself
    r = cli("train", "--out", out, "-d", 2, "-l", 3, "-n", 10, "--layers", 1, "--d-model", 32, "--heads", 2, "--steps", 10,
            "-b", 32, "--eval-every", 10, "--eval-count", 64, "--device", "cpu", "--amp", "fp32", "--force", "-q")
    assert r.exit_code == 0, r.output
    assert kept_files(out) == {}  # another run: the old one's kept steps are gone, none kept without the flag


def test_bad_run_at_step_and_follow_are_one_line(kept_run, tmp_path, trained):
    out, _ = kept_run
    for cmd in (["eval", f"{out}@15", *EVAL], ["probe", f"{out}@15", "--graph", GRAPH], ["watch", f"{out}@15"]):
        one_line_error(cli(*cmd), "step 15 was not kept", "10, 20")
    plain = trained("next-token").path.parent  # a run without --keep-checkpoints
    one_line_error(cli("eval", f"{plain}@10"), "kept no checkpoints", "--keep-checkpoints")
    one_line_error(cli("eval", f"{tmp_path / 'nope'}@10"), "is not a run directory")
    one_line_error(cli("tui", out / "model.safetensors", "--follow"), "a model file, not a run directory")
    one_line_error(cli("tui", f"{out}@10", "--follow"), "give RUN, not RUN@STEP")
    one_line_error(cli("tui", tmp_path / "nope", "--follow"), "no such run directory")
    one_line_error(cli("tui", ROOT / "models" / "g2-3-next-token", "--follow"), "not a training run")
    one_line_error(cli("tui", "--follow"), "give the run directory")


def test_training_panel_text():
    recs = [{"step": 10 * (i + 1), "loss": 3.0 - i * 0.1, "accuracy": 0.0, "per_position": [i / 9, 0.5, 1.0]}
            for i in range(10)]
    text = training_text(RunShown(recs, 40, 100, "running", (10, 20, 30, 40), 100, 1), width=80).plain
    lines = text.splitlines()
    assert lines[0] == "step 40/100 · running · newest 100 · 4 kept (, .)"
    row2 = next(ln for ln in lines if ln.startswith("   2 "))
    assert row2.endswith("0.50 decision")
    row1 = next(ln for ln in lines if ln.startswith("   1 "))
    assert row1.endswith(f"{3 / 9:.2f}") and "▁" in row1 and "█" in row1  # the value at the marked step 40
    marker = lines[-1]
    assert marker.strip().startswith("▲ step 40")
    wide = (len(row1) - 5 - 5) // 10
    assert marker.index("▲") == 5 + 3 * wide + (wide - 1) // 2  # under the 4th evaluation's column
    assert columns(100, 10, 37) == sorted(set(columns(100, 10, 37))) and 37 in columns(100, 10, 37)
    assert len(columns(100, 10, None)) <= 10 and columns(5, 10, 2) == [0, 1, 2, 3, 4]
    assert "no evaluation" in training_text(RunShown([], None, None, None)).plain


def panel(app) -> str:
    return app.query_one("#training").render().plain


def notices(app) -> list[str]:
    return [n.message for n in app._notifications]


def dists(app) -> list:
    return [st.top(3) for st in app.session.steps]


@sync
async def test_replay_kept_checkpoints_with_the_keys(kept_run):
    out, _ = kept_run
    app = ProbeApp([str(out)], graph=GRAPH)
    async with app.run_test(size=SIZE) as pilot:
        await app.wait_idle()
        assert app.shown_step == 20 and "step 20/20" in app.sub_title and "finished" in app.sub_title
        assert app.query_one("#training").display and "2 kept" in panel(app) and "▲ step 20" in panel(app)
        await pilot.press("w")  # force the wrong arm: replay keeps it, and the graph and the cursor
        await app.wait_idle()
        state = (app.session.graph, dict(app.session.forced), app.session.cursor)
        at20 = dists(app)
        await pilot.press("comma")
        await app.wait_idle()
        assert app.shown_step == 10 and app.lm.display_name == "run@10" and "▲ step 10" in panel(app)
        assert (app.session.graph, dict(app.session.forced), app.session.cursor) == state and dists(app) != at20
        assert app.models == [app.lm]  # the step before is not left behind as a comparison model
        await pilot.press("comma")
        await app.wait_idle()
        assert app.shown_step == 10 and any("first checkpoint" in m for m in notices(app))
        await pilot.press("full_stop", "full_stop")
        await app.wait_idle()
        assert app.shown_step == 20 and dists(app) == at20
    app = ProbeApp([f"{out}@10"], graph=GRAPH)  # opened on a kept step
    async with app.run_test(size=SIZE) as pilot:
        await app.wait_idle()
        assert app.shown_step == 10 and "step 10/20" in app.sub_title
        await pilot.press("full_stop")
        await app.wait_idle()
        assert app.shown_step == 20


@sync
async def test_follow_waits_for_the_first_checkpoint_and_keeps_the_comparison_model(kept_run, tmp_path, trained):
    src, _ = kept_run
    run = tmp_path / "run"
    run.mkdir()
    (run / "train.lock").write_text("")  # a training that has not saved its first checkpoint yet
    other = trained("next-token")
    app = ProbeApp([str(run), other], graph=GRAPH, follow=True, follow_interval=0.05)
    async with app.run_test(size=SIZE) as pilot:
        await app.wait_idle()
        assert any("waiting for its first checkpoint" in m for m in notices(app)) and app.is_running
        shutil.copy(src / "kept" / kept_name(10), run / ".tmp")
        os.replace(run / ".tmp", run / "model.safetensors")  # as train writes it
        await until(pilot, lambda: app.shown_step == 10, "the first checkpoint")
        assert app.lm.path == run / "model.safetensors" and app.compare_lm is other
        await until(pilot, lambda: app.session is not None and app.session.lm is app.lm, "the first decode")
        shutil.copy(src / "kept" / kept_name(20), run / ".tmp")
        os.replace(run / ".tmp", run / "model.safetensors")
        await until(pilot, lambda: app.shown_step == 20, "the next checkpoint")
        assert app.models == [app.lm, other] and app.compare_lm is other  # the comparison model stays beside it
        assert "step 20/20" in app.sub_title and app.session.lm is app.lm


@sync
async def test_replay_keys_without_a_run_say_so(trained):
    app = ProbeApp([trained("next-token")], graph=GRAPH)
    async with app.run_test(size=SIZE) as pilot:
        await app.wait_idle()
        await pilot.press("comma", "full_stop")
        await app.wait_idle()
        assert any("no run to replay" in m for m in notices(app)) and not app.query_one("#training").display


TRAIN = ["-d", "2", "-l", "3", "-n", "10", "--layers", "1", "--d-model", "32", "--heads", "2", "--steps", "100000",
         "-b", "32", "--lr", "3e-3", "--warmup", "5", "--eval-every", "20", "--eval-count", "64", "--device", "cpu",
         "--amp", "fp32", "-q"]


async def until(pilot, cond, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)
    await pilot.app.wait_idle()


def checkpoint_changes(path: Path, before) -> bool:
    try:
        return path.stat().st_mtime_ns != before
    except FileNotFoundError:
        return False


@pytest.mark.slow
@sync
async def test_follow_a_live_run(tmp_path):
    """A real training in a subprocess, paused (SIGSTOP) between checkpoints so that the test knows which is
    the next: the app shows the new step and new numbers for the same graph; a corrupt file in place of the
    next checkpoint is skipped with a notice; the run directory deleted is a notice, not a crash."""
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    log = tmp_path / "train.log"
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "ntp_probe", "train", "--out", str(out), *TRAIN], env=env,
                                stdout=subprocess.DEVNULL, stderr=f)
    model = out / "model.safetensors"

    def wait_for_checkpoint(stamp=None):
        deadline = time.monotonic() + 60
        while not checkpoint_changes(model, stamp):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.005)

    try:
        wait_for_checkpoint()
        proc.send_signal(signal.SIGSTOP)
        app = ProbeApp([str(out)], graph=GRAPH, follow=True, follow_interval=0.05)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.run_state == "running" and app.shown_step is not None, "the first look")
            first = app.shown_step
            assert f"step {first}/100000 · running" in app.sub_title and f"▲ step {first}" in panel(app)
            state, before = (app.session.graph, dict(app.session.forced), app.session.cursor), dists(app)

            # the next checkpoint: the app moves to it by itself
            stamp = model.stat().st_mtime_ns
            proc.send_signal(signal.SIGCONT)
            wait_for_checkpoint(stamp)
            proc.send_signal(signal.SIGSTOP)
            await until(pilot, lambda: app.shown_step != first, "the next checkpoint")
            second = app.shown_step
            assert second > first and f"step {second}/100000" in app.sub_title and f"▲ step {second}" in panel(app)
            assert (app.session.graph, dict(app.session.forced), app.session.cursor) == state and dists(app) != before

            # a corrupt file put in place of the next checkpoint: skipped, the app stays on the last good one
            tmp = out / ".corrupt"
            tmp.write_bytes(b"\x00garbage, not a safetensors file" * 10)
            os.replace(tmp, model)
            await until(pilot, lambda: any("skipped a checkpoint" in m for m in notices(app)), "the notice")
            assert app.shown_step == second and app.is_running
            assert any(f"staying on step {second}" in m and "model.safetensors" in m for m in notices(app))

            # the run goes on: its next checkpoint is shown again
            proc.send_signal(signal.SIGCONT)
            await until(pilot, lambda: (app.shown_step or 0) > second, "a good checkpoint after the corrupt one")
            proc.send_signal(signal.SIGSTOP)

            # the run directory deleted while followed
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            shown = app.shown_step
            shutil.rmtree(out)
            await until(pilot, lambda: any("the run directory is gone" in m for m in notices(app)), "the gone notice")
            assert app.is_running and app.shown_step == shown and "stopped following" in panel(app)
            await pilot.press("n", "comma")
            await app.wait_idle()
            assert app.is_running
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
            proc.wait(timeout=30)


@sync
async def test_follow_before_the_first_checkpoint_shows_the_run_progress(tmp_path, trained):
    """A run that has written only its progress (train's lock, pid and progress.json, step 29 of 3000, evaluating
    every 250): the header and the training panel say where it is and when the first checkpoint comes, no error;
    the model is loaded when it appears."""
    from ntp_probe.runs import RunLock

    run = tmp_path / "tl"
    run.mkdir()
    about = {"objective": "next-token", "degree": 2, "path_len": 3, "nodes": 10, "arch": "gpt", "steps": 3000,
             "eval_every": 250}
    lock = RunLock(run, True, about).acquire()  # this process plays the training
    try:
        lock.beat(29, 12.5, 2.31)
        assert json.loads((run / "progress.json").read_text())["step"] == 29
        app = ProbeApp([str(run)], follow=True, follow_interval=0.05)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.run_state == "running", "the first look")
            want = "step 29/3000 · running · waiting for the first checkpoint at step 250"
            assert want in app.sub_title and want in panel(app)
            assert not any("no model.safetensors" in m for m in notices(app)) and app.lm is None
            assert "✗" not in str(app.query_one("#top").render()) and "No model loaded" not in str(
                app.query_one("#story").render())
            shutil.copy(trained("next-token").path, run / ".tmp")
            os.replace(run / ".tmp", run / "model.safetensors")  # as train writes it
            await until(pilot, lambda: app.shown_step is not None and app.session is not None, "the first checkpoint")
            assert app.lm.path == run / "model.safetensors" and "waiting" not in app.sub_title
            assert f"step {app.shown_step}/" in app.sub_title and "waiting" not in panel(app)
    finally:
        lock.release()
