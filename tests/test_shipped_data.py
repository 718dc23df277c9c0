"""The original repository's test files ship inside the package (``ntp_probe/data/``), and a bare file name such as
``deg_2_path_5_nodes_50_test_20000.txt`` (what the README and the model cards write) finds the shipped copy from
any directory, wherever a data file is read (``task.read_lines``: ``--data``, ``probe --graphs``, ``--train-file``,
``ship --data``, the app's ``o``)."""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from conftest import FIXTURES
from ntp_probe.errors import GraphError
from ntp_probe.task import DATA_DIR, data_path, format_line, read_lines, shipped_data

NAMES = ["deg_2_path_3_nodes_10_test_20000.txt", "deg_2_path_5_nodes_50_test_20000.txt",
         "deg_5_path_3_nodes_50_test_20000.txt"]
ROOT = Path(__file__).resolve().parent.parent


def test_the_three_files_ship_unchanged_with_their_source_cited():
    assert shipped_data() == NAMES
    for name in NAMES:  # the fixtures' excerpts are the first lines of the same files, byte for byte
        head = next(FIXTURES.glob(name.replace("20000.txt", "head*.txt"))).read_bytes()
        data = (DATA_DIR / name).read_bytes()
        assert data.startswith(head) and data.count(b"\n") == 20000
    assert "gregorbachmann/Next-Token-Failures" in (DATA_DIR / "README.md").read_text()
    # package data: the wheel holds them (pyproject's patterns match every file of data/)
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["ntp_probe"]
    for f in [*NAMES, "README.md"]:
        assert any(fnmatch.fnmatch(f"data/{f}", p) for p in patterns), f


def test_a_bare_name_finds_the_shipped_copy_and_a_file_here_wins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    name = "deg_2_path_3_nodes_10_test_20000.txt"
    assert data_path(name) == DATA_DIR / name
    graphs = read_lines(name, 10)
    assert len(graphs) == 20000 and graphs.where(0) == f"{DATA_DIR / name}:1"
    # a file of that name in the current directory wins; a path with a directory is only that path
    (tmp_path / name).write_text(format_line(graphs[5]) + "\n")
    assert data_path(name) == Path(name) and len(read_lines(name, 10)) == 1
    (tmp_path / name).unlink()
    for given in (f"./{name}", f"sub/{name}", str(tmp_path / name)):
        assert data_path(given) == Path(given)
        with pytest.raises(GraphError, match="no such file$"):
            read_lines(given, 10)
    # a dangling symlink here is "here" too (not silently replaced by the shipped copy)
    (tmp_path / name).symlink_to(tmp_path / "gone.txt")
    assert data_path(name) == Path(name)


def test_an_unknown_bare_name_lists_the_shipped_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(GraphError) as e:
        read_lines("deg_2_path_5_nodes_50_test_200.txt", 50)
    msg = str(e.value)
    assert msg.startswith("deg_2_path_5_nodes_50_test_200.txt: no such file, here or among the shipped test files (")
    assert all(n in msg for n in NAMES) and "\n" not in msg


@pytest.mark.slow
def test_eval_from_an_empty_directory_on_a_shipped_file(trained, tmp_path):
    """``ntp-probe eval MODEL --data deg_…_test_20000.txt --json`` from an empty directory, on the whole G(2,3) N=10
    file: a tiny model of that shape (the G(2,5) file takes a minute to score on one core; the README's test reads
    it by its bare name in ``patch --data … --count``)."""
    model = trained("next-token").path
    cwd = tmp_path / "empty"
    cwd.mkdir()
    exe = str(Path(sys.executable).parent / "ntp-probe")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def cli(*args):
        r = subprocess.run([exe, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300, env=env)
        assert r.returncode == 0, r.stderr[-2000:]
        return r

    res = json.loads(cli("eval", model, "--data", "deg_2_path_3_nodes_10_test_20000.txt", "--json").stdout)
    assert res["count"] == 20000 and res["data"] == "deg_2_path_3_nodes_10_test_20000.txt"
    assert list(cwd.iterdir()) == []  # nothing was copied or written here


def test_every_data_file_option_says_a_bare_name_finds_the_shipped_copy():
    import typer

    from ntp_probe.cli import app

    def commands(cmd, path=()):
        if hasattr(cmd, "commands"):  # a group (typer's own click: not click.Group)
            for name, sub in cmd.commands.items():
                yield from commands(sub, (*path, name))
        else:
            yield " ".join(path), cmd

    seen = []
    for name, cmd in commands(typer.main.get_command(app)):
        for p in cmd.params:
            if {"--data", "--graphs", "--train-file"} & set(p.opts):
                seen.append(f"{name} {p.opts[0]}")
                assert "reads the shipped copy when there is no such file here" in (p.help or ""), f"{name} {p.opts[0]}"
    for expected in ("eval --data", "clever-hans --data", "patch --data", "reproduce --data", "inference-fixes --data",
                     "ship --data", "probe --graphs", "train --train-file"):
        assert expected in seen, (expected, seen)
