"""``train --tracker wandb|tensorboard``: the evaluations of metrics.jsonl mirrored to the tracker, the same tracked
run continued by --resume, one tracked run per sweep run grouped by the sweep, and a tracker that is not installed
refused in one line before anything starts. Tiny real runs; wandb offline (its run files read back), TensorBoard's
event files read back with its own EventAccumulator. A test whose package is not installed is skipped."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import tiny_config
from ntp_probe.cli import app

TINY = ["--degree", "2", "--path-len", "3", "--nodes", "10", "--layers", "1", "--d-model", "32", "--heads", "2",
        "--batch-size", "16", "--eval-count", "32", "--amp", "fp32", "--device", "cpu", "-q"]


def cli(*args: str):
    return CliRunner().invoke(app, list(args))


def metrics(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------------------------------------
# not installed, unknown, misused: one line, exit 2, nothing written


@pytest.mark.parametrize("tracker", ["wandb", "tensorboard"])
def test_a_tracker_that_is_not_installed_is_one_line_before_anything_starts(tmp_path, monkeypatch, tracker):
    monkeypatch.setitem(sys.modules, tracker, None)  # as if not installed: find_spec and import both fail
    out = tmp_path / "run"
    r = cli("train", "--out", str(out), "--steps", "2", *TINY, "--tracker", tracker)
    assert r.exit_code == 2
    assert r.stderr.strip() == f"error: --tracker {tracker} needs the {tracker} extra: pip install 'ntp-probe[{tracker}]'"
    assert not out.exists()

    # a sweep checks every run before it starts one
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'[train]\nsteps = 2\ntracker = "{tracker}"\n[grid]\nseed = [1, 2]\n')
    r = cli("sweep", "run", str(recipe), "--out", str(tmp_path / "sweep"))
    assert r.exit_code == 2
    assert r.stderr.strip() == (f"error: {recipe}: run 'seed-1': --tracker {tracker} needs the {tracker} extra: "
                                f"pip install 'ntp-probe[{tracker}]'")
    assert not (tmp_path / "sweep").exists()


@pytest.mark.parametrize("args, says", [
    (["--tracker", "mlflow"], "error: --tracker mlflow: choose wandb or tensorboard"),
    (["--tracker-group", "g"], "error: --tracker-group names a tracked run's group: give --tracker wandb or tensorboard too"),
])
def test_a_bad_tracker_option_is_one_line(tmp_path, args, says):
    out = tmp_path / "run"
    r = cli("train", "--out", str(out), "--steps", "2", *TINY, *args)
    assert r.exit_code == 2 and r.stderr.strip() == says
    assert not out.exists()


def test_scalars_flatten_a_metrics_record():
    from ntp_probe.tracking import scalars

    rec = {"step": 10, "loss": 2.5, "lr": 1e-3, "accuracy": 0.5, "per_position": [1.0, 0.5, None],
           "by_topology": {"2,3": {"accuracy": 0.25}}, "eval_count": 32, "wall_time_s": 1.5, "s_per_step": 0.1,
           "flag": True}
    assert scalars(rec) == {"train/loss": 2.5, "train/lr": 1e-3, "held_out/accuracy": 0.5,
                            "held_out/per_position/0": 1.0, "held_out/per_position/1": 0.5,
                            "held_out/by_topology/2,3/accuracy": 0.25, "train/wall_time_s": 1.5, "train/s_per_step": 0.1}


# ------------------------------------------------------------------------------------------------
# TensorBoard


def read_tensorboard(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def assert_mirrors(curves: dict, recs: list[dict]) -> None:
    """Every evaluation of metrics.jsonl, once, at its step: loss, lr, accuracy, each answer position."""
    steps = [m["step"] for m in recs]
    assert [s for s, _ in curves["train/loss"]] == steps
    for key, tag in (("loss", "train/loss"), ("lr", "train/lr"), ("accuracy", "held_out/accuracy"),
                     ("decision_accuracy", "held_out/decision_accuracy")):
        assert [v for _, v in curves[tag]] == pytest.approx([m[key] for m in recs], rel=1e-6)
    for i in range(len(recs[0]["per_position"])):
        assert [v for _, v in curves[f"held_out/per_position/{i}"]] == pytest.approx([m["per_position"][i] for m in recs])
    assert [s for s, _ in curves["train/s_per_step"]] == steps
    assert all(v > 0 for _, v in curves["train/s_per_step"])


def test_tensorboard_mirrors_metrics_and_resume_continues_the_same_log(tmp_path):
    pytest.importorskip("tensorboard")
    from ntp_probe.train import train

    out = tmp_path / "run"
    r = cli("train", "--out", str(out), "--steps", "20", "--eval-every", "10", *TINY, "--tracker", "tensorboard")
    assert r.exit_code == 0, r.stderr
    assert f"tracked: tensorboard --logdir {out / 'tensorboard'}" in r.stderr
    assert_mirrors(read_tensorboard(out / "tensorboard"), metrics(out))

    # killed after step 30 was logged but before its checkpoint: the resumed run purges it and logs it again
    class Killed(Exception):
        pass

    def kill_at_30(e):
        if e.get("event") == "eval" and e["step"] == 30:
            raise Killed

    cfg = dict(degree=2, path_len=3, nodes=10, layers=1, d_model=32, heads=2, batch_size=16, eval_every=10,
               eval_count=32, warmup=100, lr=1e-3, min_lr=1e-4, tracker="tensorboard")
    with pytest.raises(Killed):
        train(tiny_config(out, steps=40, **cfg), out, resume=True, callback=kill_at_30)
    assert [m["step"] for m in metrics(out)] == [10, 20, 30]
    train(tiny_config(out, steps=40, **cfg), out, resume=True)
    recs = metrics(out)
    assert [m["step"] for m in recs] == [10, 20, 30, 40]
    curves = read_tensorboard(out / "tensorboard")
    assert_mirrors(curves, recs)
    assert len(list((out / "tensorboard").glob("events.out.tfevents.*"))) == 3  # one log dir, three sessions

    # --force starts a new run: a new log
    r = cli("train", "--out", str(out), "--steps", "10", "--eval-every", "10", *TINY, "--tracker", "tensorboard", "--force")
    assert r.exit_code == 0, r.stderr
    assert [s for s, _ in read_tensorboard(out / "tensorboard")["train/loss"]] == [10]


def test_a_run_killed_before_its_first_checkpoint_starts_a_new_tracked_run(tmp_path):
    pytest.importorskip("tensorboard")
    from ntp_probe.train import train

    out = tmp_path / "run"
    (out / "tensorboard").mkdir(parents=True)
    old = out / "tensorboard" / "events.out.tfevents.1.old"
    old.write_bytes(b"")
    (out / "tracker.json").write_text('{"wandb": {"id": "oldrun01"}}')
    (out / "metrics.jsonl").write_text('{"step": 10}\n')
    train(tiny_config(out, steps=10, tracker="tensorboard"), out)  # no --force needed: nothing to lose
    assert not old.exists() and not (out / "tracker.json").exists()
    assert [s for s, _ in read_tensorboard(out / "tensorboard")["train/loss"]] == [10]


# ------------------------------------------------------------------------------------------------
# wandb, offline


def wandb_records(path: Path):
    """The records of an offline run file (``run-ID.wandb``): a LevelDB-style log of protobuf records — the
    header ``:W&B`` + magic + version (7 bytes), then 32 KiB blocks of chunks (crc32 u32, length u16, type u8)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, buf = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # a block's tail too short for a chunk header is padding
            pos += left
            continue
        _crc, n, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if n == 0 and kind == 0:
            break
        buf += data[pos + 7 : pos + 7 + n]
        pos += 7 + n
        if kind in (1, 4):  # a full record, or the last chunk of one
            rec = pb.Record()
            rec.ParseFromString(buf)
            buf = b""
            yield rec


def read_wandb(run_file: Path) -> dict:
    """An offline run: its id, group, name, config and history rows."""
    out = {"history": [], "config": {}}
    for r in wandb_records(run_file):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            out.update(id=r.run.run_id, group=r.run.run_group, name=r.run.display_name)
        elif kind == "config":
            out["config"].update({c.key: json.loads(c.value_json) for c in r.config.update})
        elif kind == "history":
            out["history"].append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item})
    return out


@pytest.fixture
def wandb_offline(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):  # nothing of wandb's outside tmp
        monkeypatch.setenv(var, str(tmp_path / "wandb-home"))
    for var in ("WANDB_DIR", "WANDB_PROJECT", "WANDB_RUN_GROUP", "WANDB_RUN_ID", "WANDB_RESUME"):
        monkeypatch.delenv(var, raising=False)


def test_wandb_offline_mirrors_metrics_and_resume_continues_the_same_run(tmp_path, wandb_offline):
    out = tmp_path / "run"
    r = cli("train", "--out", str(out), "--steps", "20", "--eval-every", "10", *TINY, "--tracker", "wandb",
            "--tracker-group", "my-sweep")
    assert r.exit_code == 0, r.stderr
    run_id = json.loads((out / "tracker.json").read_text())["wandb"]["id"]
    assert f"tracked: wandb run {run_id} (offline: {out / 'wandb'}/offline-run-" in r.stderr
    r = cli("train", "--out", str(out), "--steps", "30", "--eval-every", "10", *TINY, "--tracker", "wandb",
            "--tracker-group", "my-sweep", "--resume")
    assert r.exit_code == 0, r.stderr
    assert json.loads((out / "tracker.json").read_text())["wandb"]["id"] == run_id

    files = sorted((out / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 2 and all(f.name == f"run-{run_id}.wandb" for f in files)  # one run, resumed: `wandb sync` merges
    first, second = (read_wandb(f) for f in files)
    assert first["id"] == second["id"] == run_id
    assert first["group"] == "my-sweep" and first["name"] == "run"
    assert first["config"]["degree"] == 2 and first["config"]["tracker"] == "wandb" and "command" in first["config"]
    assert second["config"]["steps"] == 30
    history = first["history"] + second["history"]
    recs = metrics(out)
    assert [h["_step"] for h in history] == [m["step"] for m in recs] == [10, 20, 30]
    for h, m in zip(history, recs):
        assert h["train/loss"] == pytest.approx(m["loss"]) and h["train/lr"] == pytest.approx(m["lr"])
        assert h["held_out/accuracy"] == pytest.approx(m["accuracy"])
        assert [h[f"held_out/per_position/{i}"] for i in range(len(m["per_position"]))] == pytest.approx(m["per_position"])
        assert h["train/s_per_step"] > 0


# ------------------------------------------------------------------------------------------------
# sweeps: one tracked run per run, grouped by the sweep


def test_a_sweep_groups_its_tracked_runs_by_its_directory(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('[train]\nsteps = 2\ntracker = "tensorboard"\n[grid]\nseed = [1, 2]\n'
                      '[[run]]\nname = "own"\ntracker-group = "mine"\n')
    out = tmp_path / "my-sweep"
    pytest.importorskip("tensorboard")
    r = cli("sweep", "list", str(recipe), "--out", str(out))
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 3
    assert all("--tracker tensorboard" in line and line.count("--tracker-group") == 1 for line in lines)
    assert all(line.endswith("--tracker-group my-sweep -q") for line in lines[:2])  # the sweep directory's name
    assert "--tracker-group mine" in lines[2]  # unless the recipe names the group


@pytest.mark.slow
def test_sweep_run_tracks_its_run_in_the_run_directory(tmp_path):
    pytest.importorskip("tensorboard")
    recipe = tmp_path / "r.toml"
    recipe.write_text('[train]\ndegree = 2\npath-len = 3\nnodes = 10\nlayers = 1\nd-model = 16\nheads = 2\n'
                      'batch-size = 8\neval-every = 5\neval-count = 16\nsteps = 10\namp = "fp32"\ndevice = "cpu"\n'
                      'threads = 1\ntracker = "tensorboard"\n[[run]]\nname = "one"\n')
    out = tmp_path / "sweep"
    r = cli("sweep", "run", str(recipe), "--out", str(out))  # the run itself: a 'train' subprocess
    assert r.exit_code == 0, r.stderr
    assert_mirrors(read_tensorboard(out / "one" / "tensorboard"), metrics(out / "one"))
