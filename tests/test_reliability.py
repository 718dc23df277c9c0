"""Reliability under faults (issue 7): bad model files at the CLI, disks and paths, killed training.

Fast tests run always; the subprocess ones (SIGKILL / SIGINT of ``ntp-probe train``) are marked slow and
use a tiny model (G(2,3) N=10, one layer, d_model 32) so the whole file stays well under a minute.
"""

import errno
import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from conftest import FIXTURES, tiny_config
from ntp_probe import atomic
from ntp_probe import checkpoint as ckpt
from ntp_probe import train as train_mod
from ntp_probe.checkpoint import TaskSpec
from ntp_probe.cli import app
from ntp_probe.model import GPT, GPTConfig
from ntp_probe.objectives import make_objective
from ntp_probe.train import train

ROOT = Path(__file__).resolve().parent.parent
GRAPH = "0→1, 1→2, 0→3, 3→4 || find(0 → 4)"
runner = CliRunner()


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(r, fragment=None):
    assert r.exit_code == 2, (r.exit_code, r.output, r.exception)
    lines = [ln for ln in r.stderr.strip().splitlines() if not ln.startswith(("training on ", "step "))]  # train's progress
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in r.output
    if fragment:
        assert fragment in lines[0], lines[0]


# ------------------------------------------------------------------------------------------------
# Bad model files at the command line


def _tiny_gpt():
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=14, block_size=17, n_layer=1, n_head=2, n_embd=32))


def _bad_files(d: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, fragment of the expected message)."""
    m = _tiny_gpt()
    good = d / "good.safetensors"
    ckpt.save(good, m, ckpt.make_meta(m, TaskSpec(2, 3, 10), make_objective("next-token")))
    raw = good.read_bytes()
    files: dict[str, tuple[Path, str]] = {}

    def raw_file(name, data, fragment):
        (d / name).write_bytes(data)
        files[name] = (d / name, fragment)

    def meta_file(name, change, fragment):
        meta = ckpt.make_meta(m, TaskSpec(2, 3, 10), make_objective("next-token"))
        change(meta)
        ckpt.save(d / name, m, meta)
        files[name] = (d / name, fragment)

    raw_file("zero-length", b"", "empty file")
    raw_file("truncated-half", raw[: len(raw) // 2], "not a readable safetensors")
    raw_file("truncated-header", raw[:100], "not a readable safetensors")
    raw_file("truncated-3-bytes", raw[:3], "not a readable safetensors")
    raw_file("random-bytes", bytes((i * 7919 + 13) % 256 for i in range(5000)), "not a readable safetensors")
    raw_file("header-length-2^40", struct.pack("<Q", 2**40) + b"{}", "not a readable safetensors")
    hdr = json.dumps({"w": {"dtype": "F32", "shape": [1000, 1000], "data_offsets": [0, 4_000_000]}}).encode()
    raw_file("offsets-past-the-end", struct.pack("<Q", len(hdr)) + hdr + bytes(16), "not a readable safetensors")
    torch.save({"w": torch.zeros(3)}, d / "pickle")  # a torch pickle: must never be unpickled
    files["torch-pickle"] = (d / "pickle", "not a readable safetensors")
    save_file({"w": torch.zeros(3)}, d / "other-project", metadata={"format": "pt"})
    files["other-project-safetensors"] = (d / "other-project", "not an ntp-probe model")
    save_file({"w": torch.zeros(3)}, d / "not-json", metadata={"ntp_probe": "{oops"})
    files["metadata-not-json"] = (d / "not-json", "not valid JSON")
    meta_file("missing-config", lambda mt: mt.pop("config"), "no 'config' section")
    meta_file("missing-task", lambda mt: mt.pop("task"), "no 'task' section")
    meta_file("config-not-an-object", lambda mt: mt.update(config="gpt"), "no 'config' section")
    meta_file("wrong-format-version", lambda mt: mt.update(format="ntp-probe/99"), "unsupported model format")
    meta_file("heads-do-not-divide", lambda mt: mt["config"].update(n_head=3), "cannot build the model")
    meta_file("n_layer-a-string", lambda mt: mt["config"].update(n_layer="two"), "n_layer 'two'")
    meta_file("n_layer-a-million", lambda mt: mt["config"].update(n_layer=10**6), "n_layer 1000000")
    meta_file("n_embd-a-million", lambda mt: mt["config"].update(n_embd=2**20, n_head=1), "[17, 32] in the file")
    meta_file("n_embd-64-tensors-32", lambda mt: mt["config"].update(n_embd=64), "[17, 64] by the config")
    meta_file("unknown-arch", lambda mt: mt["config"].update(arch="rnn"), "unknown architecture 'rnn'")
    meta_file("mamba-config-gpt-tensors", lambda mt: mt["config"].update(arch="mamba"), "tensors do not match")
    meta_file("vocab-disagrees-with-N", lambda mt: mt["task"].update(nodes=20), "does not match N=20")
    meta_file("negative-N", lambda mt: mt["task"].update(nodes=-4), "task is impossible")
    meta_file("path-length-1", lambda mt: mt["task"].update(path_len=1), "task is impossible")
    meta_file("unknown-objective", lambda mt: mt.update(objective={"name": "sideways"}), "unknown objective")
    meta_file("context-too-short", lambda mt: mt["config"].update(block_size=5), "shorter than the task")
    (d / "empty-dir").mkdir()
    files["directory-without-model"] = (d / "empty-dir", "has no model.safetensors")
    return files


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    return _bad_files(tmp_path_factory.mktemp("bad-models"))


BAD_NAMES = ["zero-length", "truncated-half", "truncated-header", "truncated-3-bytes", "random-bytes", "header-length-2^40",
             "offsets-past-the-end", "torch-pickle", "other-project-safetensors", "metadata-not-json", "missing-config",
             "missing-task", "config-not-an-object", "wrong-format-version", "heads-do-not-divide", "n_layer-a-string",
             "n_layer-a-million", "n_embd-a-million", "n_embd-64-tensors-32", "unknown-arch", "mamba-config-gpt-tensors",
             "vocab-disagrees-with-N", "negative-N", "path-length-1", "unknown-objective", "context-too-short",
             "directory-without-model"]
COMMANDS = {"eval": ["--count", "5"], "probe": ["--graph", GRAPH], "clever-hans": ["--count", "5"]}


def test_bad_file_list_is_complete(bad_files):
    assert sorted(bad_files) == sorted(BAD_NAMES)


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_model_files_at_the_cli(bad_files, name, command):
    path, fragment = bad_files[name]
    t0 = time.perf_counter()
    r = cli(command, path, *COMMANDS[command])
    assert_one_line_error(r, fragment)
    assert str(path) in r.stderr or name == "unknown-arch"
    assert time.perf_counter() - t0 < 5  # no giant allocation on the way to the error


def test_graph_ids_beyond_the_models_N(trained, tmp_path):
    lm = trained("next-token")  # N = 10
    big = FIXTURES / "deg_2_path_5_nodes_50_test_head200.txt"
    assert_one_line_error(cli("eval", lm.path, "--data", big), "out of range")
    assert_one_line_error(cli("clever-hans", lm.path, "--data", big), "out of range")
    assert_one_line_error(cli("probe", lm.path, "--graphs", big), "out of range")
    assert_one_line_error(cli("probe", lm.path, "--graph", "0→1, 1→12 || find(0 → 12)"), "out of range")
    assert_one_line_error(cli("probe", lm.path, "--graph", "0,1|1,2/0,2=0,1,2", "--force", "0,11"), "out of range")
    for force, fragment in (("٣", "ASCII digits"), ("-1", "negative"), ("9" * 5000, "too large"), ("0,1,2,0", "positions"),
                            (",", "empty"), ("x", "not a node id")):
        assert_one_line_error(cli("probe", lm.path, "--graph", "0,1|1,2/0,2", "--force", force), fragment)
    for graph, fragment in (("٣→1 || find(٣ → 1)", "ASCII digits"), ("9" * 5000 + ",1|1,2/0,2", "too large"),
                            ("0,1|1,2/0,2=5,6,7", "begins at 5"), ("x" * 200_000, "characters long")):
        assert_one_line_error(cli("probe", lm.path, "--graph", graph), fragment)
    (tmp_path / "bin.txt").write_bytes(bytes(range(256)))
    assert_one_line_error(cli("eval", lm.path, "--data", tmp_path / "bin.txt"), "not a text file")


def test_no_pickle_loading_anywhere():
    """Pickles are never unpickled; the one torch.load (a checkpoint of the paper's own code, issue 31) is
    weights_only=True, in its one place."""
    for f in (ROOT / "ntp_probe").rglob("*.py"):
        text = f.read_text()
        assert "pickle.load" not in text and ("import pickle" not in text or f.name == "ntf.py"), f  # its error class
        calls = [ln for ln in text.splitlines() if "torch.load(" in ln and "``" not in ln]  # code, not a docstring
        if f.name == "ntf.py":
            assert len(calls) == 1 and "weights_only=True" in calls[0], calls
        else:
            assert not calls, f


# ------------------------------------------------------------------------------------------------
# Disks and paths

TINY = ["--degree", 2, "--path-len", 3, "--nodes", 10, "--layers", 1, "--d-model", 32, "--heads", 2, "--batch-size", 32,
        "--lr", 3e-3, "--warmup", 5, "--eval-every", 10, "--eval-count", 64, "--seed", 0, "--device", "cpu", "-q"]


def test_unwritable_out(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert_one_line_error(cli("train", "--out", blocker / "run", "--steps", 1, *TINY), "cannot write there")
    assert_one_line_error(cli("train", "--out", blocker, "--steps", 1, *TINY), "not a directory")
    assert_one_line_error(cli("generate", "--out", blocker / "g.txt"), "cannot write")
    # an existing --out that cannot be listed (as root nothing is unreadable, so the error is injected)
    (tmp_path / "locked").mkdir()
    real_iterdir = Path.iterdir

    def iterdir(self):
        if self.name == "locked":
            raise PermissionError(13, "Permission denied", str(self))
        return real_iterdir(self)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Path, "iterdir", iterdir)
        assert_one_line_error(cli("train", "--out", tmp_path / "locked", "--steps", 1, *TINY), "Permission denied")
    if os.geteuid() != 0:  # root writes anywhere; elsewhere a read-only directory must be a clean error too
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        assert_one_line_error(cli("train", "--out", ro / "run", "--steps", 1, *TINY), "cannot write there")


def test_existing_run_directory_at_the_cli(tmp_path):
    out = tmp_path / "run"
    assert cli("train", "--out", out, "--steps", 10, *TINY).exit_code == 0
    before = (out / "model.safetensors").read_bytes()
    assert_one_line_error(cli("train", "--out", out, "--steps", 10, *TINY), "--resume")
    assert (out / "model.safetensors").read_bytes() == before
    assert_one_line_error(cli("train", "--out", tmp_path / "fresh", "--resume", "--steps", 10, *TINY), "--force")
    r = cli("train", "--out", out, "--resume", "--steps", 20, *TINY)
    assert r.exit_code == 0, r.output
    assert [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()] == [10, 20]
    assert cli("train", "--out", out, "--force", "--steps", 10, *TINY).exit_code == 0
    assert [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()] == [10]
    # a corrupt training state: one line, pointing at --force
    (out / "train_state.safetensors").write_bytes(b"garbage")
    assert_one_line_error(cli("train", "--out", out, "--resume", "--steps", 20, *TINY), "start over with --force")
    # a model file where the state should be (valid safetensors, wrong content)
    (out / "train_state.safetensors").write_bytes((out / "model.safetensors").read_bytes())
    assert_one_line_error(cli("train", "--out", out, "--resume", "--steps", 20, *TINY), "start over with --force")


def _enospc_after(monkeypatch, module, name, ok_calls):
    """Let ``ok_calls`` calls of module.name through, then write half a file and raise ENOSPC (a full disk mid-save)."""
    real = getattr(module, name)
    calls = {"n": 0}

    def writer(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] <= ok_calls:
            return real(*args, **kwargs)
        path = next(a for a in args if isinstance(a, (str, Path)))
        Path(path).write_bytes(b"\0" * 1000)  # the partial file the disk had room for
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(module, name, writer)


@pytest.mark.parametrize("target", ["save_file", "save_model"])  # train_state.safetensors, model.safetensors
def test_full_disk_on_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch, target):
    out = tmp_path / "run"
    assert cli("train", "--out", out, "--steps", 10, *TINY).exit_code == 0
    snapshot = {p.name: p.read_bytes() for p in out.iterdir()}
    _enospc_after(monkeypatch, ckpt, target, 0)
    r = cli("train", "--out", out, "--resume", "--steps", 20, *TINY)
    assert_one_line_error(r, "No space left on device")
    assert "previous checkpoint is intact" in r.stderr
    names = {p.name for p in out.iterdir()}
    assert names == set(snapshot), names  # no temp file left behind
    assert (out / "train_state.safetensors").read_bytes() == snapshot["train_state.safetensors"] or target == "save_model"
    assert (out / "model.safetensors").read_bytes() == snapshot["model.safetensors"]
    ckpt.load(out)  # still a valid model
    monkeypatch.undo()
    r = cli("train", "--out", out, "--resume", "--steps", 20, *TINY)  # space freed: carry on
    assert r.exit_code == 0, r.output
    assert [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()] == [10, 20]


def test_full_disk_on_metrics_append(tmp_path, monkeypatch):
    out = tmp_path / "run"
    assert cli("train", "--out", out, "--steps", 10, *TINY).exit_code == 0
    from hostile import WrappedFile

    real_open = open

    class FullFile(WrappedFile):
        def write(self, text):
            self.f.write(text[: len(text) // 2])  # a torn line, then the disk is full
            self.f.flush()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(train_mod, "open", lambda p, mode="r", *a, **k: FullFile(real_open(p, mode, *a, **k)), raising=False)
    assert_one_line_error(cli("train", "--out", out, "--resume", "--steps", 20, *TINY), "cannot append step 20")
    monkeypatch.undo()
    assert cli("train", "--out", out, "--resume", "--steps", 20, *TINY).exit_code == 0
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [10, 20]  # the torn line is gone


def test_atomic_write_leaves_the_old_file_on_any_failure(tmp_path):
    target = tmp_path / "f.txt"
    atomic.atomic_write_text(target, "old")

    def boom(tmp):
        Path(tmp).write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic.atomic_write(target, boom)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_resume_trims_a_torn_and_repeated_metrics_log(tmp_path):
    """What a SIGKILL can leave: lines past the checkpoint, a torn last line (plus odd lines a person may add)."""
    full, part = tmp_path / "full", tmp_path / "part"
    train(tiny_config(full, steps=30), full)

    def interrupt_at_20(e):
        if e["event"] == "step" and e["step"] == 20:
            os.kill(os.getpid(), signal.SIGINT)  # saves after step 20

    assert train(tiny_config(part, steps=30), part, callback=interrupt_at_20)["step"] == 20
    good = (part / "metrics.jsonl").read_text()
    with open(part / "metrics.jsonl", "a") as f:  # step 30 was logged, but its checkpoint never written; then a torn line
        f.write(good.splitlines()[0] + "\n" + json.dumps({"step": 30, "loss": 1.0}) + "\n[1, 2]\n\"x\"\n" + '{"step": 40, "lo')
    train(tiny_config(part, steps=30), part, resume=True)
    steps = [json.loads(x)["step"] for x in (part / "metrics.jsonl").read_text().splitlines()]
    assert steps == [10, 20, 30]
    a, b = load_file(full / "model.safetensors"), load_file(part / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------------------------------------
# Killed training (subprocesses)

STEPS = 60
# bf16 autocast (the CPU default where bf16 is native): resume must be exact in it too
CLI_ARGS = [str(a) for a in TINY] + ["--steps", str(STEPS), "--dropout", "0.1", "--threads", "1", "--amp", "bf16"]


def _train_and_die(out: str, kill_at: str, resume: bool) -> None:
    """In a forked child: the CLI's train with a fault injected; SIGKILL at ``<point>:<step>``."""
    from ntp_probe.cli import app as cli_app

    point, at = kill_at.split(":")
    at = int(at)

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    if point == "mid-checkpoint":  # half of the temp file written, then killed: the rename never happens
        real = ckpt.save_file

        def save_file(tensors, path, metadata=None):
            if metadata and f'"step": {at},' in metadata.get("ntp_probe", ""):
                Path(path).write_bytes(bytes(100))
                die()
            return real(tensors, path, metadata=metadata)

        ckpt.save_file = save_file
    else:
        real_append = train_mod._append_metric

        def append(path, rec):
            if rec["step"] == at and point == "mid-metric-line":
                with open(path, "a") as f:
                    f.write('{"step": %d, "loss": 0.' % at)
                die()
            real_append(path, rec)
            if rec["step"] == at and point == "after-metric-line":
                die()

        train_mod._append_metric = append
    cli_app(["train", "--out", out, *CLI_ARGS, *(["--resume"] if resume else [])])


def run_killed(out, kill_at, resume):
    """Fork (torch is already imported, so no start-up cost), train, get SIGKILLed at the injected point."""
    import multiprocessing

    proc = multiprocessing.get_context("fork").Process(target=_train_and_die, args=(str(out), kill_at, resume))
    proc.start()
    proc.join(120)
    return proc.exitcode


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run, in-process (same seed, one thread)."""
    out = tmp_path_factory.mktemp("reference")
    train(tiny_config(out, steps=STEPS, dropout=0.1, amp="bf16"), out)
    return out


def assert_matches_reference(out, reference):
    a, b = load_file(reference / "model.safetensors"), load_file(out / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), "final weights differ from the uninterrupted run"
    ra = [json.loads(x) for x in (reference / "metrics.jsonl").read_text().splitlines()]
    rb = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rb] == list(range(10, STEPS + 1, 10))  # exactly one line per evaluation
    for x, y in zip(ra, rb):
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-6) and x["accuracy"] == y["accuracy"]
    assert ckpt.load(out).meta["training"]["steps"] == STEPS


@pytest.mark.slow
def test_sigkill_at_the_worst_moments_then_resume(tmp_path, reference):
    out = tmp_path / "run"
    # killed while writing the checkpoint of step 20, while appending the metric line of step 40, and right
    # after appending the line of step 50 (before its checkpoint); each time --resume picks up the pieces
    for i, kill_at in enumerate(["mid-checkpoint:20", "mid-metric-line:40", "after-metric-line:50"]):
        assert run_killed(out, kill_at, resume=bool(i)) == -signal.SIGKILL, kill_at
        ckpt.load(out)  # whatever survived is a whole, valid model
        for line in (out / "metrics.jsonl").read_text().splitlines()[:-1]:
            json.loads(line)
    r = cli("train", "--out", out, *CLI_ARGS, "--resume")
    assert r.exit_code == 0, r.output
    assert_matches_reference(out, reference)


def _start(out, *extra):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "ntp_probe", "train", "--out", str(out), *CLI_ARGS, *extra], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_lines(out, n, proc, timeout=60):
    metrics = out / "metrics.jsonl"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if metrics.exists() and metrics.read_text().count("\n") >= n:
            return
        time.sleep(0.005)
    raise AssertionError(f"training did not reach {n} evaluations in time (exit {proc.poll()})")


@pytest.mark.slow
def test_sigint_saves_then_sigkill_mid_run_then_resume(tmp_path, reference):
    out = tmp_path / "run"
    # Ctrl-C after the first evaluation: saves where it is and exits 0
    proc = _start(out)
    _wait_for_lines(out, 1, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "interrupted, saved" in err and "Traceback" not in err
    state = ckpt.read_state_meta(out / "train_state.safetensors")
    assert 10 <= state["step"] < STEPS
    assert ckpt.load(out).meta["training"]["steps"] == state["step"]
    # resumed, then SIGKILLed at whatever it was doing once the second evaluation is logged
    proc = _start(out, "--resume")
    _wait_for_lines(out, 2, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    done = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines() if x.endswith("}")]
    assert done[-1] < STEPS, "the kill came after the run had finished"
    ckpt.load(out)
    # resumed again: finishes with the uninterrupted run's weights and exactly one metric line per evaluation
    r = cli("train", "--out", out, *CLI_ARGS, "--resume")  # in-process: no third start-up
    assert r.exit_code == 0, r.output
    assert_matches_reference(out, reference)
