"""Issue 30 #15: an output path that cannot be written is one line naming the path asked for — never the temp file
the atomic write used — and the reason: ``--png nodir/x.png: cannot write (No such file or directory)``, as
``generate --out`` says it; /dev/full, a FIFO and /proc/self/status name the path too. Fixed once, in
``atomic.atomic_write`` (``CannotWrite``), for every caller; the CLI adds the option's name (``_common.writing``)."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ntp_probe.atomic import CannotWrite, atomic_write, atomic_write_text
from ntp_probe.cli import app

ROOT = Path(__file__).resolve().parents[1]
G25 = "32,3|16,12|3,19|32,34|34,6|6,16|19,47|47,28/32,12=32,34,6,16,12"
MAP = ROOT / "docs" / "teacherless" / "map"  # archived sweep records: sweep plot reads them
runner = CliRunner()


def one_line(r, expected: str) -> None:
    assert r.exit_code == 2, (r.exit_code, r.output)
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert lines == [f"error: {expected}"], r.stderr
    assert ".tmp" not in r.stderr


def test_atomic_write_names_the_path_not_the_temp_file(tmp_path):
    for path, kind, reason in ((tmp_path / "nodir" / "x.png", FileNotFoundError, "No such file or directory"),
                               (tmp_path, IsADirectoryError, "is a directory, not a file")):
        with pytest.raises(CannotWrite) as e:
            atomic_write_text(path, "x", what="--png")
        assert isinstance(e.value, kind) and isinstance(e.value, OSError)  # still the OSError it was
        assert str(e.value) == f"--png {path}: cannot write ({reason})" and e.value.filename == str(path)
    with pytest.raises(CannotWrite, match=r"^/dev/full: cannot write \(No space left on device\)$"):
        atomic_write_text("/dev/full", "x" * 100_000)
    with pytest.raises(CannotWrite, match=r"^/proc/self/status: cannot write"):
        atomic_write_text("/proc/self/status", "x")
    assert not list(tmp_path.rglob("*.tmp"))

    def fails(name: str) -> None:  # the writer itself fails on the temp file
        raise OSError(errno.ENOSPC, "No space left on device", name)

    with pytest.raises(CannotWrite, match=r"out\.json: cannot write \(No space left on device\)$"):
        atomic_write(tmp_path / "out.json", fails)
    assert not list(tmp_path.glob(".out.json.*"))
    other = tmp_path / "missing-source"

    def copies(name: str) -> None:  # an error about another file passes as it is
        open(other).close()

    with pytest.raises(FileNotFoundError) as e:
        atomic_write(tmp_path / "out.json", copies)
    assert not isinstance(e.value, CannotWrite) and e.value.filename == str(other)


def test_a_fifo_names_the_path(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got = bytearray()
    reader = threading.Thread(target=lambda: got.extend(open(fifo, "rb").read()))
    reader.start()
    try:
        def seeks(name: str) -> None:  # what a PNG writer does: it seeks back
            with open(name, "wb") as f:
                f.write(b"abc")
                f.seek(0)

        with pytest.raises(CannotWrite, match=rf"^--png {fifo}: cannot write \(.+\)$"):
            atomic_write(fifo, seeks, what="--png")
    finally:
        reader.join(timeout=10)


@pytest.mark.parametrize("path, reason", [("nodir/x.png", "No such file or directory"),
                                          ("/dev/full", "No space left on device")])
def test_patch_png_bad_path_is_one_line(tmp_path, monkeypatch, path, reason):
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["patch", "g2-5-next-token", "--graph", G25, "--png", path])
    one_line(r, f"--png {path}: cannot write ({reason})")
    assert list(tmp_path.iterdir()) == []


def test_probe_save_and_sweep_plot_bad_path_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["probe", "g2-5-next-token", "--graph", G25, "--save", "nodir/s.json"])
    one_line(r, "--save nodir/s.json: cannot write (No such file or directory)")
    r = runner.invoke(app, ["sweep", "plot", str(MAP), "--out", "nodir/x.png"])
    one_line(r, "--out nodir/x.png: cannot write (No such file or directory)")
    r = runner.invoke(app, ["sweep", "plot", str(MAP), "--out", "/dev/full"])
    one_line(r, "--out /dev/full: cannot write (No space left on device)")
    r = runner.invoke(app, ["sweep", "table", str(MAP), "--markdown", "nodir/t.md"])
    one_line(r, "--markdown nodir/t.md: cannot write (No such file or directory)")
    assert list(tmp_path.iterdir()) == []


def test_patch_png_to_proc(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["patch", "g2-5-next-token", "--graph", G25, "--png", "/proc/self/status"])
    assert r.exit_code == 2 and r.stderr.startswith("error: --png /proc/self/status: cannot write ("), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and ".tmp" not in r.stderr
