"""Issue 15 (hardening): special files and links, lost runs, races, unbounded sizes, seeds, one-line usage errors.

Every case is the bad file or command itself; each gives the project's one-line error with exit code 2,
or works where that is what a user expects (``--out /dev/null``). Subprocess tests run the real CLI
(two trainings racing for one run; the worst sizes under ``ulimit -v``).
"""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from conftest import tiny_config
from ntp_probe import atomic
from ntp_probe.cli import app
from ntp_probe.train import train

ROOT = Path(__file__).resolve().parent.parent
G = "32,3|16,12|3,19|32,34|34,6|6,16|19,47|47,28/32,12"
MODEL = "g2-5-next-token"
TINY = ["--degree", "2", "--path-len", "3", "--nodes", "10", "--layers", "1", "--d-model", "32", "--heads", "2",
        "--batch-size", "32", "--eval-every", "10", "--eval-count", "32", "--device", "cpu", "-q"]
runner = CliRunner()


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_line_error(r, fragment=None):
    assert r.exit_code == 2, (r.exit_code, r.output, r.exception)
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in r.output, r.stderr
    if fragment:
        assert fragment in lines[0], lines[0]
    return lines[0]


def env():
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "COLUMNS": "80"}


def sh(args, timeout=120, **kw):
    return subprocess.run([sys.executable, "-m", "ntp_probe", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env(), **kw)


def fake_null(path: Path) -> Path:
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # a second /dev/null (needs root)
    except PermissionError:
        pytest.skip("mknod needs root")
    return path


# ------------------------------------------------------------------------------------------------
# 1. Atomic writes vs special files and links


def test_atomic_write_rules(tmp_path):
    # a regular file: replaced whole; a link: its target replaced, the link kept; a directory: refused
    target = tmp_path / "target.txt"
    target.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    atomic.atomic_write_text(link, "new")
    assert link.is_symlink() and target.read_text() == "new"
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "made.txt")
    atomic.atomic_write_text(dangling, "x")
    assert dangling.is_symlink() and (tmp_path / "made.txt").read_text() == "x"
    with pytest.raises(IsADirectoryError):
        atomic.atomic_write_text(tmp_path, "x")
    # a device is written through, and stays a device
    dev = fake_null(tmp_path / "fakenull")
    atomic.atomic_write_text(dev, "into the void")
    assert stat.S_ISCHR(dev.stat().st_mode)
    # a FIFO is written through to its reader
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    atomic.atomic_write_text(fifo, "through the pipe")
    reader.join(10)
    assert got == ["through the pipe"] and stat.S_ISFIFO(fifo.stat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dangling", "fakenull", "fifo", "link.txt", "made.txt",
                                                          "target.txt"]  # no temp file left


def test_cli_writes_through_devices_and_links(tmp_path):
    dev = fake_null(tmp_path / "fakenull")
    assert cli("generate", "--count", 3, "--out", dev).exit_code == 0
    assert stat.S_ISCHR(dev.stat().st_mode)  # was: replaced by a regular file
    target = tmp_path / "graphs.txt"
    target.write_text("old\n")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    assert cli("generate", "--count", 3, "--out", link).exit_code == 0
    assert link.is_symlink() and len(target.read_text().splitlines()) == 3
    one_line_error(cli("generate", "--count", 3, "--out", tmp_path), "is a directory")
    # probe --save through a link and into a FIFO with a reader
    slink = tmp_path / "session-link.json"
    slink.symlink_to(tmp_path / "session.json")
    assert cli("probe", MODEL, "--graph", G, "--save", slink).exit_code == 0
    assert slink.is_symlink() and json.loads((tmp_path / "session.json").read_text())["format"]
    fifo = tmp_path / "session.fifo"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    assert cli("probe", MODEL, "--graph", G, "--save", fifo).exit_code == 0
    reader.join(10)
    assert json.loads(got[0])["format"] and stat.S_ISFIFO(fifo.stat().st_mode)
    one_line_error(cli("probe", MODEL, "--graph", G, "--save", tmp_path), "is a directory")


def test_out_dev_stdout_and_dev_null_in_a_subprocess():
    r = sh(["generate", "--count", 2, "--out", "/dev/stdout"])
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 2, r.stderr
    r = sh(["generate", "--count", 2, "--out", "/dev/null"])
    assert r.returncode == 0 and stat.S_ISCHR(os.stat("/dev/null").st_mode)


# ------------------------------------------------------------------------------------------------
# 4. Options are checked before the disk is touched (a bad --force run keeps the old run)


@pytest.mark.parametrize("bad", [["--lr", "nan"], ["--lr", "-1"], ["--weight-decay", "-1"], ["--dropout", "2"],
                                 ["--dropout", "-1"], ["--dropout", "nan"], ["--min-lr", "inf"], ["--warmup", "-5"],
                                 ["--target-accuracy", "1.5"], ["--layers", "1000000"], ["--arch", "mamba", "--expand",
                                 "1000000"], ["--eval-count", "1000000000"], ["--seed", "100000000000000000000"],
                                 ["--init-from", "no-such-model"], ["--train-file", "/dev/zero"]])
def test_bad_options_keep_the_old_run(tmp_path, bad):
    out = tmp_path / "run"
    train(tiny_config(out, steps=10), out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    one_line_error(cli("train", "--out", out, "--force", "--steps", 10, *TINY, *bad))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


# ------------------------------------------------------------------------------------------------
# 5. Two trainings of one run started together: one runs, the other is refused


@pytest.mark.slow
def test_two_resumes_started_together(tmp_path):
    out = tmp_path / "run"
    train(tiny_config(out, steps=10), out)
    args = ["train", "--out", out, "--resume", *TINY, "--steps", 1_000_000, "--eval-every", 50, "--threads", 1]
    procs = [subprocess.Popen([sys.executable, "-m", "ntp_probe", *map(str, args)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env()) for _ in range(2)]
    try:
        deadline = time.time() + 120
        while all(p.poll() is None for p in procs) and time.time() < deadline:
            time.sleep(0.1)
        loser = next(p for p in procs if p.poll() is not None)
        winner = next(p for p in procs if p is not loser)
        assert loser.returncode == 2, loser.stderr.read()
        err = loser.stderr.read().strip()
        assert len(err.splitlines()) == 1 and f"process {winner.pid} is training this run" in err, err
        while not (out / "metrics.jsonl").read_text().count("\n") >= 2 and time.time() < deadline:
            time.sleep(0.2)  # the winner trains and logs
        winner.send_signal(signal.SIGINT)  # = Ctrl-C: saves and exits 0
        assert winner.wait(60) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)), steps  # every step once, in order
    assert not (out / "train.pid").exists() and not (out / "train.lock").exists()


def test_a_reused_pid_does_not_block_resume(tmp_path):
    """A stale train.pid whose number now belongs to another live program (here: a sleep) blocks nothing."""
    out = tmp_path / "run"
    train(tiny_config(out, steps=10), out)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / "train.pid").write_text(f"{other.pid}\n")
        (out / "train.lock").write_text("")  # left by a killed training: unlocked
        r = cli("train", "--out", out, "--resume", "--steps", 20, *TINY)
        assert r.exit_code == 0, r.output
    finally:
        other.kill()
        other.wait()


# ------------------------------------------------------------------------------------------------
# 12. Temp files left by kill -9 mid-checkpoint are swept by the next run


def test_stale_temp_files_are_removed(tmp_path):
    out = tmp_path / "run"
    train(tiny_config(out, steps=10), out)
    junk = [out / ".model.safetensors.abc123.tmp", out / ".train_state.safetensors.x_y.tmp", out / ".train.pid.q.tmp"]
    for p in junk:
        p.write_bytes(b"\0" * 100)
    keep = out / ".notes.txt.tmp"  # not ours: left alone
    keep.write_text("mine")
    assert cli("train", "--out", out, "--resume", "--steps", 20, *TINY).exit_code == 0
    assert not any(p.exists() for p in junk) and keep.exists()
    for p in junk[:2]:
        p.write_bytes(b"\0")
    assert cli("train", "--out", out, "--force", "--steps", 10, *TINY).exit_code == 0
    assert not any(p.exists() for p in junk)


# ------------------------------------------------------------------------------------------------
# 14. Click's own usage errors are one line, exit 2 (CliRunner and a real process)

USAGE_ERRORS = [
    (["generate", "--count", "0"], "--count"),
    (["generate", "--nodes", "many"], "--nodes"),
    (["generate", "--bogus"], "No such option: --bogus"),
    (["eval"], "Missing argument"),
    (["train"], "Missing option '--out'"),
    (["nope"], "No such command"),
    (["probe", MODEL, "--graph", G, "--top-k", "0"], "--top-k"),
]


@pytest.mark.parametrize("args,fragment", USAGE_ERRORS)
def test_usage_errors_are_one_line(args, fragment):
    one_line_error(cli(*args), fragment)


def test_usage_errors_are_one_line_in_a_subprocess():
    r = sh(["generate", "--count", "0"])
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and r.stderr.startswith("error: ") and "╭" not in r.stderr
    r = sh(["eval", "--bogus"])
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "No such option" in r.stderr
    assert sh(["--version"]).returncode == 0 and sh(["generate", "--help"]).returncode == 0


# ------------------------------------------------------------------------------------------------
# 8. Unbounded reads and sizes, 9. seeds and threads, 10. temperatures, 13. silently accepted options

BAD_COMMANDS = [
    # 8: reads
    (["eval", MODEL, "--data", "/dev/zero"], "is a device"),
    (["probe", "--load", "/dev/zero"], "is a device"),
    (["clever-hans", MODEL, "--data", "/dev/zero"], "is a device"),
    (["probe", MODEL, "--graphs", "/dev/zero"], "is a device"),
    # 8: sizes
    (["generate", "--nodes", 10**9], "--nodes"),
    (["generate", "--degree", 10**6, "--path-len", 10**6, "--nodes", 10**6], "needs"),
    (["eval", MODEL, "--count", 10**9], "--count"),
    (["clever-hans", MODEL, "--count", 10**9], "--count"),
    (["probe", MODEL, "--graph", G, "--decode", "beam", "--beam", 10**30], "--beam"),
    (["probe", MODEL, "--graph", G, "--decode", "verify", "--tries", 10**30], "--tries"),
    (["eval", MODEL, "--count", 10, "--decode", "beam", "--beam", 10**6], "--beam"),
    (["inference-fixes", MODEL, "--count", 10, "--beam", 10**30], "--beam"),
    # 9: seeds and threads
    (["generate", "--seed", 10**20], "--seed"),
    (["generate", "--seed", -1], "--seed"),
    (["eval", MODEL, "--count", 10, "--seed", 10**20], "--seed"),
    (["clever-hans", MODEL, "--count", 10, "--seed", 10**20], "--seed"),
    (["probe", MODEL, "--graph", G, "--seed", 10**20], "--seed"),
    (["inference-fixes", MODEL, "--count", 10, "--seed", 10**20], "--seed"),
    (["eval", MODEL, "--count", 10, "--threads", 10**21], "--threads"),
    (["eval", MODEL, "--count", 10, "--threads", 100000], "--threads"),
    # 10: temperatures
    (["probe", MODEL, "--graph", G, "--decode", "sample", "--temperature", "nan"], "--temperature"),
    (["probe", MODEL, "--graph", G, "--decode", "sample", "--temperature", "1e-45"], "--temperature"),
    (["eval", MODEL, "--count", 10, "--decode", "sample", "--temperature", "nan"], "--temperature"),
    (["eval", MODEL, "--count", 10, "--decode", "sample", "--temperature", "inf"], "--temperature"),
    (["inference-fixes", MODEL, "--count", 10, "--temperature", "1e-45"], "--temperature"),
    (["inference-fixes", MODEL, "--count", 10, "--temperature", "nan"], "--temperature"),
    # 13: accepted silently before
    (["probe", MODEL, "--graph", G, "--force", ""], "--force: empty list"),
    (["inference-fixes", MODEL, "--count", 10, "--tries", 0], "--tries 0"),
]


@pytest.mark.parametrize("args,fragment", BAD_COMMANDS, ids=lambda a: " ".join(map(str, a))[:60] if isinstance(a, list) else "")
def test_bad_commands_are_one_line(args, fragment):
    one_line_error(cli(*args), fragment)


def test_train_seed_threads_and_sizes(tmp_path):
    for bad, fragment in ((["--seed", 10**20], "--seed"), (["--threads", 10**21], "--threads"),
                          (["--threads", 100000], "--threads"), (["--layers", 10**6], "--layers"),
                          (["--batch-size", 10**9], "--batch-size"), (["--d-model", 4096, "--layers", 200], "parameters")):
        one_line_error(cli("train", "--out", tmp_path / "run", *TINY, *bad), fragment)
        assert not (tmp_path / "run").exists()  # nothing created


def test_data_files_must_be_regular_and_bounded(tmp_path):
    fifo = tmp_path / "graphs.fifo"
    os.mkfifo(fifo)  # was: blocked forever waiting for a writer
    t = time.time()
    one_line_error(cli("eval", MODEL, "--data", fifo), "is a FIFO")
    one_line_error(cli("probe", "--load", fifo), "is a FIFO")
    assert time.time() - t < 30
    long_line = tmp_path / "long.txt"
    long_line.write_text("1," * 600_000 + "\n")
    one_line_error(cli("eval", MODEL, "--data", long_line), "line longer than")
    big_session = tmp_path / "s.json"
    big_session.write_text(" " * (2**20 + 10) + "{}")
    one_line_error(cli("probe", "--load", big_session), "bytes")


# ------------------------------------------------------------------------------------------------
# 15. generate: a seed names one endless stream (count 3 is a prefix of count 100000); eval keeps its graphs


def test_generate_is_a_prefix_stream(tmp_path):
    few = cli("generate", "--count", 3, "--seed", 7).stdout.splitlines()
    many = tmp_path / "many.txt"
    assert cli("generate", "--count", 100_000, "--seed", 7, "--out", many).exit_code == 0
    lines = many.read_text().splitlines()
    assert len(lines) == 100_000 and lines[:3] == few and len(set(lines)) == len(lines)
    across = cli("generate", "--count", 5000, "--seed", 7).stdout.splitlines()  # across the first chunk (4,096)
    assert across == lines[:5000]
    assert cli("generate", "--count", 3, "--seed", 8).stdout.splitlines() != few


def test_one_batch_is_the_old_output():
    """--one-batch keeps the pre-stream output: the G(5,5) model cards' test file, byte for byte (md5 of the old file)."""
    import hashlib

    r = cli("generate", "--degree", 5, "--path-len", 5, "--nodes", 50, "--count", 20000, "--seed", 5550, "--one-batch")
    assert r.exit_code == 0 and hashlib.md5(r.stdout.encode()).hexdigest() == "494158effc2abab6946315ed49b1fb45"
    one_line_error(cli("generate", "--count", 10**9, "--one-batch"), "--count")


def test_eval_graphs_are_unchanged():
    """eval --count N --seed S scores the graphs it always did (task.generate: one batch, one generator)."""
    from ntp_probe.task import format_lines, generate

    assert format_lines(generate(2, 5, 50, 2, seed=12345)) == [
        "37,30|49,24|30,27|4,22|5,45|24,5|37,49|27,4/37,22=37,30,27,4,22",
        "9,33|35,38|1,40|35,26|32,9|37,1|38,32|26,37/35,33=35,38,32,9,33"]


# ------------------------------------------------------------------------------------------------
# "No command allocates more than ~2 GB for any input": the worst offenders under ulimit -v

# Measured on the dev machine: a normal probe and eval --count 2000 need 1.5 GB of address space (torch
# maps ~1 GB at import); 3 GB passes them with room and stops any multi-GB allocation.
ULIMIT_KB = 3_000_000
WORST = [
    ["eval", MODEL, "--data", "/dev/zero"],
    ["probe", "--load", "/dev/zero"],
    ["generate", "--nodes", 10**9],
    ["eval", MODEL, "--count", 10**9],
    ["train", "--out", "{tmp}/run", "--layers", 10**6],
    ["train", "--out", "{tmp}/run", "--arch", "mamba", "--expand", 10**6],
    ["train", "--out", "{tmp}/run", "--eval-count", 10**9],
    ["probe", MODEL, "--graph", G, "--decode", "beam", "--beam", 10**30],
    ["probe", MODEL, "--graph", G, "--decode", "verify", "--tries", 10**30],
    ["eval", MODEL, "--count", 10, "--threads", 100000],
]


def _limited(args, tmp_path, timeout=120):
    cmd = " ".join("'" + str(a).replace("{tmp}", str(tmp_path)).replace("'", "'\\''") + "'" for a in args)
    return subprocess.run(["bash", "-c", f"ulimit -v {ULIMIT_KB} && exec {sys.executable} -m ntp_probe {cmd}"],
                          capture_output=True, text=True, timeout=timeout, env=env())


@pytest.mark.slow
def test_worst_inputs_under_ulimit(tmp_path):
    ok = _limited(["probe", MODEL, "--graph", G, "--json"], tmp_path)
    assert ok.returncode == 0, ok.stderr  # the limit leaves room for normal work
    for args in WORST:
        r = _limited(args, tmp_path)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), (args, r.stderr[-2000:])
    # streamed: 10**8 graphs would be 20 GB at once; in chunks the first 200,000 lines come out under the limit
    r = subprocess.run(["bash", "-c", f"ulimit -v {ULIMIT_KB} && {sys.executable} -m ntp_probe generate --count 100000000 "
                        "| head -n 200000 | wc -l"], capture_output=True, text=True, timeout=300, env=env())
    assert r.stdout.strip() == "200000" and "Error" not in r.stderr, r.stderr[-2000:]


# ------------------------------------------------------------------------------------------------
# 7. Round 3 (issue 23): a new adversarial pass. Each test names its item.


def _lines(path: Path, *shapes, nodes=10, count=3, seed=1) -> Path:
    from ntp_probe.task import format_lines, generate

    path.write_text("".join(ln + "\n" for d, l in shapes for ln in format_lines(generate(d, l, nodes, count, seed=seed))))
    return path


@pytest.mark.parametrize("shapes,arch", [(((2, 5),), "gpt"), (((2, 3), (2, 4)), "mamba"), (((1, 3),), "gpt"),
                                         (((2, 3), (1, 3)), "gpt")], ids=["bigger", "mixed-mamba", "smaller", "one-smaller"])
def test_train_file_of_other_shapes_keeps_the_run(tmp_path, shapes, arch):
    # items 1 and 30: a file of bigger graphs deleted the --force'd run, then died (ValueError; IndexError with
    # mamba); a file of smaller graphs was trained on silently. Its shapes are checked before the run is touched.
    out = tmp_path / "run"
    cli("train", "--out", out, "--steps", 10, *TINY, "--arch", arch)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert "model.safetensors" in before
    data = _lines(tmp_path / "f.txt", *shapes)
    line = one_line_error(cli("train", "--out", out, "--force", "--steps", 10, *TINY, "--arch", arch, "--train-file", data),
                          "but the run trains on G(2,3)")
    assert f"{data}:" in line
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_set_model_refuses_graphs_it_would_cut(tmp_path):
    # item 2: star-reverse scored 1,2|…|8,9/1,4 (8 edges, a 4-node path: not d(l−1)) with two edges dropped
    # (accuracy 0.0 where probe says correct); eval, reproduce and ship batch by shape, so it is refused, named
    data = tmp_path / "odd.txt"
    data.write_text("1,2|2,3|3,4|4,5|1,6|6,7|7,8|8,9/1,4=1,2,3,4\n")
    r = cli("clever-hans", "star-next-token", "--data", data)  # clever-hans skips what is not a path-star
    one_line_error(r, "none of the 1 graphs is a path-star")
    for args in (["eval", "star-reverse", "--data", data], ["reproduce", "--models", "star-reverse", "--data", data, "--out", tmp_path / "rep"],
                 ["ship", "star-reverse", "--name", "x", "--data", data, "--models-dir", tmp_path / "models"]):
        one_line_error(cli(*args), f"{data}:1: 8 edges and a 4-node path are not a path-star")
    assert not (tmp_path / "models" / "x").exists()


@pytest.mark.parametrize("cmd", ["eval", "clever-hans"])
def test_fresh_shapes_past_the_context(cmd):
    # item 9: --degree 5 --path-len 10 on star-reverse (context 83): ValueError from the model; --data said it well
    one_line_error(cli(cmd, "star-next-token", "--degree", 5, "--path-len", 10, "--count", 10),
                   "--degree 5 --path-len 10: 45 edges and a 10-node path make a 147-token sequence, longer than the "
                   "model's context of 83")


def test_wrong_shape_named_by_file_and_line(tmp_path):
    # item 28: a wrong-shape graph on line 10 (after 3 blank lines) was "graph 7: …", without the file
    good = _lines(tmp_path / "g.txt", (2, 5), nodes=50, count=6).read_text()
    bad = _lines(tmp_path / "b.txt", (2, 4), nodes=50, count=1).read_text()
    data = tmp_path / "data.txt"
    data.write_text("\n\n\n" + good + bad)
    one_line_error(cli("eval", MODEL, "--data", data), f"{data}:10: 6 edges and a 4-node path, but the model")


def test_a_read_error_in_a_model_file_is_one_line(tmp_path, monkeypatch):
    # item 4: a model file with an unreadable block (EIO) killed probe with SIGBUS (exit 135): the file was mmap'd,
    # so the bad block was a signal. Now it is read with read() into memory: EIO is an OSError, one line.
    from hostile import WrappedFile, good_meta, write_model
    from ntp_probe import checkpoint as ckpt

    path = write_model(tmp_path / "m.safetensors", good_meta())
    real_open = open

    class BadBlock(WrappedFile):
        def read(self, *a):
            raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(ckpt, "open", lambda p, mode="r", *a, **k: BadBlock(real_open(p, mode, *a, **k))
                        if str(p) == str(path) else real_open(p, mode, *a, **k), raising=False)
    one_line_error(cli("probe", path, "--graph", "0,1|1,2|0,3|3,4/0,4"), "cannot read the file (Input/output error)")


def test_loading_while_a_checkpoint_is_written(tmp_path):
    # item 12: a run loaded while it writes a checkpoint failed ~0.3 % of the time: the reader opened the file by
    # path three times (metadata, shapes, tensors), and a rename between opens gave it two files. One read now:
    # every load sees one whole checkpoint (its header's step is the value its weights were filled with).
    from hostile import good_meta, tiny_gpt
    from ntp_probe import checkpoint as ckpt

    path = tmp_path / "model.safetensors"
    model = tiny_gpt()
    stop = threading.Event()

    def write(step):
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(step)
        ckpt.save(path, model, {**good_meta(model), "metrics": {"steps": step}, "pad": "x" * step})

    write(0)

    def writer():
        step = 0
        while not stop.is_set():
            step += 1
            write(step)

    t = threading.Thread(target=writer)
    t.start()
    try:
        for _ in range(150):
            lm = ckpt.load_file(path)
            assert float(lm.model.wte.weight[0, 0].detach()) == lm.meta["metrics"]["steps"]
    finally:
        stop.set()
        t.join()


def _tensors_with(change):
    from hostile import tiny_gpt

    tensors = {k: v.clone() for k, v in tiny_gpt().state_dict().items() if k != "lm_head.weight"}
    change(tensors)
    return tensors


@pytest.mark.parametrize("name,change,fragment", [
    ("nan", lambda t: t["wte.weight"].__setitem__((0, 0), float("nan")), "holds NaN or infinite values"),
    ("inf", lambda t: t["wpe.weight"].__setitem__(0, float("inf")), "NaN or infinite"),
    ("bool", lambda t: t.__setitem__("wte.weight", t["wte.weight"] > 0), "is BOOL; a model's weights are floating-point"),
    ("int8", lambda t: t.__setitem__("wte.weight", t["wte.weight"].to(torch.int8)), "is I8"),
    ("complex", lambda t: t.__setitem__("wte.weight", t["wte.weight"].to(torch.complex64)), "is C64"),
])
def test_weights_that_are_not_finite_floats(tmp_path, name, change, fragment):
    # items 20, 21: NaN weights loaded (probe --json printed bare NaN, invalid JSON, and ranked the right token
    # #1); bool, int8 and complex tensors were cast to float silently
    from hostile import good_meta
    from safetensors.torch import save_file

    path = tmp_path / f"{name}.safetensors"
    save_file(_tensors_with(change), str(path), metadata={"ntp_probe": json.dumps(good_meta())})
    r = cli("probe", path, "--graph", "0,1|1,2|0,3|3,4/0,4", "--json")
    one_line_error(r, fragment)
    assert r.stdout == ""


def test_null_and_half_sections_of_a_header(tmp_path, monkeypatch):
    # item 22: "training": null made reproduce --models fail (AttributeError); item 23: degrees without path_lens
    # made `ntp-probe models` fail (KeyError); item 6: a training.config that is not an object crashed the app's i
    from hostile import meta_with, write_model

    null = write_model(tmp_path / "null.safetensors", {**meta_with(), "training": None, "card": None})
    r = cli("reproduce", "--models", null, "--count", 8, "--out", tmp_path / "rep")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "rep" / "report.md").is_file()
    models = tmp_path / "models"
    (models / "half").mkdir(parents=True)
    (models / "cfg").mkdir()
    write_model(models / "half" / "model.safetensors", meta_with(task={"degrees": [2]}))
    write_model(models / "cfg" / "model.safetensors", {**meta_with(), "training": {"config": 5}})
    monkeypatch.setenv("NTP_PROBE_MODELS", str(models))
    r = cli("models", "--json")
    assert r.exit_code == 0, r.output
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert "task has 'degrees' but no 'path_lens'" in rows["half"]["error"]
    assert "training is wrong (config 5: not an object)" in rows["cfg"]["error"]
    one_line_error(cli("probe", "cfg", "--graph", "0,1|1,2|0,3|3,4/0,4"), "config 5: not an object")


@pytest.mark.slow
def test_a_full_disk_at_checkpoint_time_is_one_line(tmp_path):
    # item 3: a full disk (or ulimit -f) at checkpoint time: `SafetensorError … No space left on device` traceback,
    # exit 1. Now the one-line write error, exit 2. Real: `ulimit -f 40` (40 KiB: the tiny model's files are bigger).
    out = tmp_path / "run"
    cmd = " ".join(["ulimit -f 40 && exec", sys.executable, "-m ntp_probe train --out", str(out), "--steps 10", *TINY])
    r = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=120, env=env())
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip() and not ln.startswith(("training on ", "step "))]
    assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "cannot save the checkpoint of step 10 (File too large)" in lines[0], lines[0]
    assert not list(out.glob(".*.tmp"))  # the half-written temp file is gone


SHIP_DATA = Path(__file__).parent / "fixtures" / "deg_2_path_3_nodes_10_test_head100.txt"


@pytest.mark.parametrize("name", ["..", "../x", "ABS", "", ".", "a/b"])
def test_ship_name_is_one_folder(trained, tmp_path, name):
    # item 10: ship --name .. (../x, an absolute name, an empty one) wrote the model, README.md and metrics.jsonl
    # outside --models-dir; run from the repository root it overwrote the project's README.md
    run = trained("next-token").path.parent
    work = tmp_path / "work"
    (work / "models").mkdir(parents=True)
    name = str(tmp_path / "abs") if name == "ABS" else name
    r = cli("ship", run, "--name", name, "--data", SHIP_DATA, "--models-dir", work / "models")
    one_line_error(r, "--name")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_two_ships_to_one_name(trained, tmp_path):
    # item 11: two ships to one name at once left one run's model with the other's card and metrics. The folder is
    # locked while its three files are written (a second ship waits), and a run without metrics leaves none behind.
    import shutil

    from ntp_probe import cards

    a = trained("next-token").path.parent
    b = tmp_path / "b"
    b.mkdir()
    shutil.copy(a / "model.safetensors", b / "model.safetensors")  # the same model, no metrics.jsonl
    models = tmp_path / "models"
    cards.ship_model(a, "m", SHIP_DATA, models, note="from run a")
    assert (models / "m" / "metrics.jsonl").is_file()
    with cards.ship_lock(models / "m"):  # another ship writing: this one waits for it
        t = threading.Thread(target=cards.ship_model, args=(b, "m", SHIP_DATA, models), kwargs={"note": "from run b"})
        t.start()
        time.sleep(1.0)
        assert "from run a" in (models / "m" / "README.md").read_text()  # nothing written under the other's lock
    t.join()
    assert "from run b" in (models / "m" / "README.md").read_text()
    assert not (models / "m" / "metrics.jsonl").exists()  # not run a's curve beside run b's model


@pytest.mark.parametrize("report", ["../x.md", "ABS", "", "a/b.md", ".."])
def test_reproduce_report_stays_inside_out(tmp_path, report):
    # item 24: reproduce --report ../x.md wrote outside --out
    report = str(tmp_path / "x.md") if report == "ABS" else report
    one_line_error(cli("reproduce", "--models", MODEL, "--count", 8, "--out", tmp_path / "out", "--report", report),
                   "--report")
    assert not (tmp_path / "x.md").exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("models", ["", " , ,"])
def test_reproduce_empty_models_list(tmp_path, models):
    # item 25: reproduce --models '' trained the default objectives instead of refusing
    one_line_error(cli("reproduce", "--models", models, "--out", tmp_path / "out", "--steps", 1), "--models: empty list")
    assert not (tmp_path / "out").exists()


def _child_train(out: Path, at_step: int, sig: int, steps: int = 30):
    """A real training in a child process that sends itself ``sig`` after step ``at_step``."""
    code = (f"import os, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); from conftest import tiny_config; "
            "from ntp_probe.train import train; "
            f"cb = lambda e: e['event'] == 'step' and e['step'] == {at_step} and os.kill(os.getpid(), {int(sig)}); "
            f"s = train(tiny_config({str(out)!r}, steps={steps}), {str(out)!r}, callback=cb); print(s['step'], s['interrupted'])")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env())


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_term_and_hup_save_like_ctrl_c(tmp_path, sig):
    # item 13: SIGTERM and SIGHUP killed train without a checkpoint and left train.pid, train.lock, progress.json
    out = tmp_path / "run"
    r = _child_train(out, 15, sig)
    assert r.returncode == 0 and r.stdout.split() == ["15", "True"], (r.returncode, r.stderr[-1500:])
    assert sorted(p.name for p in out.iterdir()) == ["metrics.jsonl", "model.safetensors", "train_state.safetensors"]
    train(tiny_config(out, steps=30), out, resume=True)  # and it resumes


@pytest.mark.slow
def test_killed_before_the_first_checkpoint(tmp_path):
    # item 14: after a kill -9 before the first checkpoint, the rerun said "use --resume" and --resume said there is
    # no training state; only --force worked. Nothing was saved: the same command starts it afresh.
    out = tmp_path / "run"
    r = _child_train(out, 5, signal.SIGKILL)
    assert r.returncode == -signal.SIGKILL
    assert not (out / "model.safetensors").exists() and (out / "train.pid").exists()
    one_line_error(cli("train", "--out", out, "--resume", "--steps", 10, *TINY),
                   "stopped before its first checkpoint; there is nothing to resume: run the same command without --resume")
    r = cli("train", "--out", out, "--steps", 10, *TINY)
    assert r.exit_code == 0, r.output
    assert [json.loads(ln)["step"] for ln in (out / "metrics.jsonl").read_text().splitlines()] == [10]


def _bash(line: str, **extra) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", line.replace("NTP", f"{sys.executable} -m ntp_probe")], capture_output=True,
                          text=True, timeout=120, env={**env(), **extra})


def _one_stderr_line(r, fragment=None, code=2):
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert r.returncode == code and len(lines) == 1 and lines[0].startswith("error: "), (r.returncode, r.stderr[-2000:])
    assert fragment is None or fragment in lines[0], lines[0]


@pytest.mark.slow
def test_closed_pipes_odd_locales_and_widths():
    # items 16-18, 19: one place, the CLI's output set-up (cli.set_up_output) and the app's check for a terminal
    _one_stderr_line(_bash("NTP generate >&-"), "standard output is closed")  # 16: AttributeError before
    _one_stderr_line(_bash("NTP eval no-such-model >&-"), "not found")  # the error itself still gets out
    for extra in ({"PYTHONIOENCODING": "ascii"}, {"LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0"}):  # 17
        r = _bash("NTP models", **extra)
        assert r.returncode == 0 and "g2-5-next-token" in r.stdout and "Error" not in r.stderr, r.stderr[-2000:]
        _one_stderr_line(_bash("NTP probe g2-5-next-token --graph '0→1'", **extra))
    r = _bash("NTP models", COLUMNS="0")  # 18: tables and error messages printed nothing
    assert r.returncode == 0 and "g2-5-next-token" in r.stdout
    _one_stderr_line(_bash("NTP eval no-such-model", COLUMNS="0"), "not found")
    _one_stderr_line(_bash("NTP eval no-such-model", COLUMNS="-5", LINES="x"), "not found")
    _one_stderr_line(_bash("NTP tui <&-"), "standard input is closed")  # 19: a traceback, exit 0
    _one_stderr_line(_bash("timeout 60 NTP tui </dev/null"), "not one (a file or a pipe)")  # 19: ran for ever


def test_watch_follow_must_be_finite(tmp_path):
    # item 15: watch RUN --follow inf: OverflowError
    train(tiny_config(tmp_path / "run", steps=10), tmp_path / "run")
    for value in ("inf", "nan", "1e300"):
        one_line_error(cli("watch", tmp_path / "run", "--follow", value), "--follow")


def test_a_newline_in_a_path_stays_one_line(tmp_path):
    # item 27: a data path with a newline in it made the error two lines
    bad = tmp_path / "a\nb.txt"
    one_line_error(cli("eval", MODEL, "--data", bad), "a\\nb.txt: no such file")
    bad.write_text("not a graph\n")
    one_line_error(cli("eval", MODEL, "--data", bad), "a\\nb.txt:1:")


def test_init_from_a_deeper_model(tmp_path):
    # item 26: --init-from a deeper model silently dropped its extra layers (a shallower one was refused)
    deep = tmp_path / "deep"
    train(tiny_config(deep, steps=10, layers=2), deep)
    one_line_error(cli("train", "--out", tmp_path / "run", "--steps", 10, *TINY, "--init-from", deep),
                   "weights this model lacks (e.g. blocks.1.")
    assert not (tmp_path / "run").exists()


def test_readme_names_the_model_the_app_opens():
    # item 29: the README said its first command opens the app "on the shipped teacher-forced G(2,5) model"; it
    # opens star-next-token (default_models), with star-reverse beside it
    from ntp_probe.tui.app import default_models

    first, others = default_models()
    text = " ".join((ROOT / "README.md").read_text().split())
    sentence = text[text.index("and opens the app on the"):][:200]
    sentence = sentence[: sentence.index(". ") + 1]
    assert f"`{first}`" in sentence and all(f"`{m}`" in sentence for m in others), sentence


PEAK = ("import resource, subprocess, sys; r = subprocess.run([sys.executable, '-m', 'ntp_probe', *sys.argv[1:]], "
        "stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True); "
        "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024); sys.stderr.write(r.stderr)")
STAR = "1,2|2,3|3,4|4,5|5,6|1,7|7,8|8,9|9,10|10,11|1,12|12,13|13,14|14,15|15,16/1,16"  # G(3,6)


def peak_rss(*args, timeout=300) -> tuple[int, int, str]:
    """(exit code, peak resident set in bytes, stderr) of one ntp-probe command, measured in a process of its own."""
    r = subprocess.run([sys.executable, "-c", PEAK, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                       env=env())
    code, peak = map(int, r.stdout.split())
    return code, peak, r.stderr


@pytest.mark.slow
def test_decoding_memory_is_bounded():
    # item 8: probe --decode verify --tries 100000 reached 4.7 GB on one graph (the verifier is a beam search of width
    # --tries); inference-fixes --count 2000 2.5 GB (2,000 graphs × 8 tries decoded at once). Now one graph's rows
    # must fit limits.DECODE_BYTES (decoding.check_width), and graphs are decoded in passes of that size
    # (evaluate.graphs_per_pass). The worst inside the limits:
    code, _, stderr = peak_rss("probe", MODEL, "--graph", G, "--decode", "verify", "--tries", 100_000)
    assert code == 2 and "--tries 100,000: too wide for g2-5-next-token" in stderr, stderr
    from ntp_probe.checkpoint import load
    from ntp_probe.decoding import row_bytes
    from ntp_probe.limits import DECODE_BYTES

    widest = DECODE_BYTES // row_bytes(load("star-reverse"))
    for args in (["probe", "star-reverse", "--graph", STAR, "--decode", "verify", "--tries", widest, "--json"],
                 ["eval", MODEL, "--decode", "verify", "--tries", 1024, "--count", 32, "--json"]):  # 32,768 rows at once
        code, peak, stderr = peak_rss(*args)
        assert code == 0, stderr[-2000:]
        assert peak < 2 * 10**9, (args, peak)


@pytest.mark.slow
def test_one_batch_generate_memory_is_bounded(tmp_path):
    # item 8: generate --one-batch --count 1000000 -d 2-5 -l 3-6 peaked at 3.3 GB (a million lines formatted at once);
    # now formatted a chunk at a time (the same bytes), and count × edges is bounded (limits.MAX_COUNT_EDGES)
    code, peak, stderr = peak_rss("generate", "--one-batch", "--count", 1_000_000, "-d", "2-5", "-l", "3-6", "--out",
                                  tmp_path / "g.txt")
    assert code == 0 and peak < 2 * 10**9, (peak, stderr[-2000:])
    code, _, stderr = peak_rss("generate", "--one-batch", "--count", 499, "-d", 1000, "-l", 101, "-n", 100_001)
    assert code == 2 and "count × edges at most 25,000,000" in stderr, stderr
