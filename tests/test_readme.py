"""The README is tested: every command in README.md's fenced ```bash blocks runs here, as written, against the installed
CLI (``ntp-probe`` beside the test's python, first on PATH), in an empty temporary directory.

How the commands run
--------------------
* A block's commands run in order, in one directory: later commands use what earlier ones made (a run directory, a
  session file). A shell assignment (``G='…'``) is set before every later command (a user's shell keeps it).
* Commands that share a path (``runs/rev``, ``recipes.toml``, ``s.json``; ``runs/tl@1500`` is ``runs/tl``) are one
  chain, run in README order in one directory, across blocks (``export runs/rev`` after ``train --out runs/rev``);
  chains that share nothing run side by side, two at a time (the suite's budget is 2 cores).
* Each runs in a pseudo-terminal (tests/ptyrun.py), as typed into a terminal: the live views, progress bars and colours
  take their terminal paths (``sweep run``'s view crashed only there). A ``--json`` command runs with its output in
  a pipe instead, to be parsed (``eval --json`` on a terminal is tests/test_pty.py's).
* Each must exit 0 without a traceback; ``--json`` output must parse; every ``--out``, ``--png``, ``--save``,
  ``--markdown`` and ``--into`` must exist afterwards (a train's ``--out`` with its ``model.safetensors``, a
  reproduce's with its report); ``EXPECT`` adds a few checks of what a command prints.

Test-side shortenings (``SHORTEN``; the README keeps what a user types)
-----------------------------------------------------------------------
* Training: ``--steps N`` becomes ``--steps 2`` (``train``/``reproduce`` without ``--steps``, and the sweep's
  recipe file, get it too) and each evaluation scores 16 graphs (``--eval-count 16``); ``RUN@STEP`` names the step
  the shortened run kept (``@2``).
* Scoring: ``--count N`` above 64 becomes 64; ``eval``/``clever-hans``/``inference-fixes``/``patch``/``reproduce``
  with none of ``--count``, ``--data``, ``--graph``, ``--models`` get ``--count 64``; ``--data FILE`` without
  ``--count`` reads the first 64 lines of the shipped FILE (20,000 graphs take a minute a command on one core);
  with ``--count`` (``patch``) the shipped file is read by its bare name, as a user's would be.
* ``nohup CMD > LOG 2>&1 &`` and ``CMD &`` run ``CMD`` in the foreground (it ends in seconds now).
* ``watch … --follow S`` is ended with Ctrl-C once its view is drawn.
* The ```toml block before the first command that reads ``recipes.toml`` is written as ``recipes.toml``.
* The environment: one torch thread per command (``OMP_NUM_THREADS=1``, as tests/conftest.py); ``torchrun`` is the
  test python's ``-m torch.distributed.run`` (what the ``torchrun`` script runs) where the environment has no such
  script beside python (a venv that borrows another's packages).

``SKIP`` names, by the start of the command, what cannot run in a test, with the reason. A command that fails says
its README line and how to fix it or list it. ``README_LINES=217,219 python -m pytest tests/test_readme.py`` runs
only the chains of those README lines.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ntp_probe.task import DATA_DIR
from ptyrun import CTRL_C, run_in_pty

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BIN = Path(sys.executable).parent  # the test environment's scripts: ntp-probe, torchrun

# What cannot run in a test: the start of the command (as written in README.md) -> why.
SKIP = {
    "python3 -m venv": "the set-up: makes a virtual environment and installs ntp-probe (network, minutes); .ci/run runs "
                       "exactly this, and the app is opened in a terminal by tests/test_pty.py",
    ". .venv/bin/activate && pip install": "installs the test tools and runs this very suite",
    "pip install": "installs packages (network); the test environment has what the lines after it need (the [test] "
                   "extra holds TransformerLens and TensorBoard), so those lines run",
    "ntp-probe tui": "the app: a full-screen program that waits for keys; tests/test_pty.py opens it in a terminal and "
                     "quits, tests/test_tui.py and the other Pilot tests drive it",
    "ntp-probe tour": "the tour: the app, full-screen, waiting for keys; tests/test_tour.py opens it in a terminal and "
                      "quits, and walks every step under Pilot",
    "kill -INT $(cat runs/g5/train.pid)": "the training it stops ran in the foreground here (shortened to seconds) and "
                                          "has ended: there is no process to signal; Ctrl-C's checkpoint and --resume are "
                                          "tests/test_train.py's test_resume_after_interrupt_gives_identical_weights",
    "torchrun --standalone --nproc-per-node 8": "needs 8 GPUs (the CPU line below runs: 2 processes, gloo)",
    "torchrun --nnodes 2": "needs two machines",
    "ntp-probe import checkpoints/": "needs a checkpoint of the paper's own code (a user's file); tests/test_interop.py imports "
                                    "the one kept in tests/fixtures/next-token-failures-ckpt/ and checks its logits",
}

# A few checks of what a command prints: the start of the command -> (stdout as JSON) -> keys it must have.
EXPECT = {
    "ntp-probe eval runs/star-reverse --count 16000 --json": ["by_topology", "accuracy", "decision_accuracy"],
    "ntp-probe eval runs/rev --data deg_2_path_5_nodes_50_test_20000.txt --json": ["accuracy", "per_position", "count"],
    'ntp-probe probe g2-5-next-token --graph "$G" --force 32,3 --json': ["answer_order", "tokens", "forced", "steps", "path"],
    'ntp-probe patch g2-5-next-token --graph "$G" --pair shuffle --step 3 --json': ["clean", "corrupt", "grid", "normalized"],
    "ntp-probe eval g2-5-next-token --decode verify --tries 4 --json": ["tries_mean", "tokens_per_graph"],
}

STEPS, EVAL_COUNT, COUNT = 2, 16, 64
TRAINS = ("train", "reproduce")  # ntp-probe subcommands that train (reproduce: unless --models)
SCORES = ("eval", "clever-hans", "inference-fixes", "patch", "reproduce")
DATA_NAME = re.compile(r"^deg_\d+_path_\d+_nodes_\d+_test_\d+\.txt$")
PATH_TOKEN = re.compile(r"^[A-Za-z_.][\w.-]*(/[\w.@*-]*)*$")
FILE_EXT = re.compile(r"\.(txt|json|jsonl|png|svg|md|toml|safetensors|log)$")
HOW_TO_SKIP = ("Every command in README.md's ```bash blocks is run by tests/test_readme.py, as written, in an empty "
               "directory (trainings and scorings shortened: see its docstring). Fix the command (or what it runs), or, "
               "if it cannot run in a test, add its start to SKIP in tests/test_readme.py with the reason, e.g.\n"
               '    "{start}": "why it cannot run in a test",\n'
               "Rerun just this one (and the commands before it that share its paths): "
               "README_LINES={line} python -m pytest tests/test_readme.py")


@dataclass
class Command:
    line: int  # README.md line of the command's first line (from 1)
    text: str  # as written (continuation lines joined)
    block: int
    prelude: list[str] = field(default_factory=list)  # the block's shell assignments before it

    @property
    def where(self) -> str:
        return f"README.md:{self.line}"


def fenced_blocks(text: str, lang: str) -> list[tuple[int, list[str]]]:
    """(line of the block's first content line, its lines) of every ```lang block."""
    blocks, cur, start = [], None, 0
    for i, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if cur is None and s == f"```{lang}":
            cur, start = [], i + 1
        elif cur is not None and s.startswith("```"):
            blocks.append((start, cur))
            cur = None
        elif cur is not None:
            cur.append(line)
    return blocks


def readme_commands(text: str) -> list[Command]:
    cmds = []
    prelude: list[str] = []  # a user's shell keeps its variables from one block to the next
    for b, (start, lines) in enumerate(fenced_blocks(text, "bash")):
        i = 0
        while i < len(lines):
            first = start + i
            cmd = lines[i]
            while cmd.rstrip().endswith("\\") and i + 1 < len(lines):
                i += 1
                cmd = cmd.rstrip()[:-1].rstrip() + " " + lines[i].strip()
            i += 1
            cmd = cmd.strip()
            if not cmd or cmd.startswith("#"):
                continue
            if re.match(r"^[A-Za-z_]\w*=", cmd) and len(shlex.split(cmd, comments=True)) == 1:
                prelude.append(cmd)  # G='…': an assignment the later commands use
                continue
            cmds.append(Command(first, cmd, b, list(prelude)))
    return cmds


def skip_reason(cmd: Command) -> str | None:
    return next((why for start, why in SKIP.items() if cmd.text.startswith(start)), None)


def words(cmd: str) -> list[str]:
    try:
        return shlex.split(cmd, comments=True)
    except ValueError:
        return cmd.split()


def subcommand(ws: list[str]) -> str | None:
    """The ntp-probe subcommand of a command line ('train' for 'nohup ntp-probe train …', 'sweep run' …)."""
    for k, w in enumerate(ws):
        if w == "ntp-probe" or (w == "ntp_probe" and k and ws[k - 1] == "-m"):
            rest = [x for x in ws[k + 1:] if not x.startswith("-")]
            if rest[:1] == ["sweep"]:
                return " ".join(rest[:2])
            return rest[0] if rest else None
    return None


def option(ws: list[str], name: str) -> str | None:
    for k, w in enumerate(ws):
        if w == name and k + 1 < len(ws):
            return ws[k + 1]
        if w.startswith(name + "="):
            return w.split("=", 1)[1]
    return None


def paths(cmd: str) -> set[str]:
    """The relative paths a command names, as chain keys: 'runs/tl@1500' and 'runs/g5/train.pid' are 'runs/tl' and
    'runs/g5'; shipped data files by their bare name, absolute paths and shipped model names are not paths here."""
    out = set()
    for w in words(cmd):
        for piece in re.split(r"[,=:]", w.strip("$()'\"")):
            piece = piece.strip("()'\"")
            if not piece or not PATH_TOKEN.match(piece) or DATA_NAME.match(piece):
                continue
            if "/" not in piece and not FILE_EXT.search(piece):
                continue
            parts = [p for p in piece.split("/") if p and p != "*"][:2]
            if parts:
                out.add(re.sub(r"@\d+$", "", "/".join(parts)))
    return out


def shorten(cmd: Command) -> tuple[str, str | None]:
    """The command as the test runs it, and the text after which Ctrl-C is typed (a --follow view), if any."""
    s = cmd.text
    if re.search(r"(?<!&)&\s*(#.*)?$", s):  # CMD &, nohup CMD > LOG 2>&1 &: CMD > LOG 2>&1, in the foreground
        s = re.sub(r"\s*(?<!&)&\s*(#.*)?$", "", s)
        s = re.sub(r"(^|&&\s*)nohup\s+", r"\1", s)
    ws = words(s)
    sub = subcommand(ws)
    code, comment = (s.split("  #", 1) + [""])[:2] if "  #" in s else (s, "")
    code = code.rstrip()
    tail = ""
    m = re.search(r"\s*(>\s*\S+(\s+2>&1)?)\s*$", code)  # keep a redirection last
    if m:
        code, tail = code[:m.start()], " " + m.group(1)
    trains = sub in TRAINS and not (sub == "reproduce" and ("--models" in ws or "--leaderboard" in ws))
    if trains or sub == "sweep run":
        code = re.sub(r"--steps\s+\d+", f"--steps {STEPS}", code)
        if trains and "--steps" not in ws:
            code += f" --steps {STEPS}"
    if (sub == "train" or trains) and "--eval-count" not in ws:
        code += f" --eval-count {EVAL_COUNT}"
    code = re.sub(r"(\S)@\d+\b", rf"\1@{STEPS}", code) if re.search(r"runs/\S+@\d+", code) else code
    code = re.sub(r"--count\s+(\d+)", lambda m: f"--count {min(int(m.group(1)), COUNT)}", code)
    data = option(ws, "--data")
    if sub in SCORES and not any(o in ws for o in ("--count", "--data", "--graph", "--models", "--leaderboard")):
        code += f" --count {COUNT}"
    if data and DATA_NAME.match(data) and "--count" not in ws:
        code = code.replace(f"--data {data}", f"--data .readme-data/{data}")
    ctrl_c = "training runs" if sub == "watch" and "--follow" in ws else None
    return code + tail, ctrl_c


@dataclass
class Outcome:
    cmd: Command
    ran: str
    rc: int | None
    stdout: str
    stderr: str
    seconds: float
    cwd: Path
    problem: str | None = None
    cpu: float = 0.0

    def report(self) -> str:
        start = " ".join(self.cmd.text.split()[:4])
        lines = [f"{self.cmd.where}: `{self.cmd.text}`", f"  {self.problem}", f"  ran as: {self.ran}  (in {self.cwd})"]
        for name, out in (("stdout" if self.stderr else "terminal", self.stdout), ("stderr", self.stderr)):
            if out.strip():
                lines.append(f"  {name} (end):\n" + "\n".join("    " + x for x in out.strip().splitlines()[-15:]))
        return "\n".join(lines + [HOW_TO_SKIP.format(start=start, line=self.cmd.line)])


def check(cmd: Command, ran: str, rc: int | None, stdout: str, stderr: str, cwd: Path) -> str | None:
    """What is wrong with a command's run, or None."""
    if rc != 0:
        return f"exited {rc}" if rc is not None else "did not end in time"
    if "Traceback (most recent call last)" in stdout + stderr:
        return "exited 0 but printed a traceback"
    ws = words(ran)
    sub = subcommand(ws)
    if "--json" in ws:
        try:
            docs = [json.loads(stdout)]
        except ValueError:
            try:
                docs = [json.loads(x) for x in stdout.splitlines() if x.strip()]
            except ValueError as e:
                return f"--json printed something that is not JSON ({e})"
        if not docs:
            return "--json printed nothing"
        keys = next((k for start, k in EXPECT.items() if cmd.text.startswith(start)), [])
        first = docs[0][0] if isinstance(docs[0], list) and docs[0] else docs[0]
        missing = [k for k in keys if not isinstance(first, dict) or k not in first]
        if missing:
            return f"--json lacks {missing}"
    for opt in ("--out", "-o", "--png", "--save", "--markdown", "--into"):
        target = option(ws, opt)
        if target and not target.startswith("/") and not (cwd / target).exists():
            return f"exited 0 but {opt} {target} does not exist"
    out = option(ws, "--out")
    if out and sub == "train" and not (cwd / out / "model.safetensors").is_file():
        return f"exited 0 but {out}/model.safetensors does not exist"
    if out and sub == "reproduce" and not any((cwd / out).glob("*.md")):
        return f"exited 0 but {out} has no report"
    return None


def env(shims: Path) -> dict:
    e = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    e.update(PATH=os.pathsep.join([str(BIN), str(shims), e.get("PATH", "")]), OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    return e


def make_shims(where: Path) -> Path:
    """A folder for PATH after the environment's own scripts: ``torchrun`` as ``python -m torch.distributed.run``
    when the environment has no torchrun script."""
    where.mkdir(parents=True, exist_ok=True)
    if not (BIN / "torchrun").exists():
        shim = where / "torchrun"
        shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m torch.distributed.run "$@"\n')
        shim.chmod(0o755)
    return where


def prepare(cwd: Path, recipes: str | None) -> None:
    cwd.mkdir(parents=True)
    heads = cwd / ".readme-data"
    heads.mkdir()
    for f in DATA_DIR.glob("*.txt"):
        with open(f) as src:
            (heads / f.name).write_text("".join(src.readline() for _ in range(COUNT)))
    if recipes is not None:
        (cwd / "recipes.toml").write_text(recipes)


def run_bash(script: str, cwd: Path, environ: dict, timeout: float) -> tuple[int | None, str, str, float]:
    """Exit status (None: killed at the timeout), stdout, stderr and the CPU seconds (user + system) of the command
    and everything it waited for: the figure the suite's budget is about, whatever else loads the machine."""
    p = subprocess.Popen(["bash", "-c", script], cwd=cwd, env=environ, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, start_new_session=True)
    got = {}

    def drain(name, stream):
        got[name] = stream.read().decode("utf-8", "replace")

    readers = [threading.Thread(target=drain, args=(n, s), daemon=True) for n, s in (("out", p.stdout), ("err", p.stderr))]
    for r in readers:
        r.start()
    killed = []

    def kill():
        killed.append(True)
        os.killpg(p.pid, signal.SIGKILL)  # its own session: the command and what it started, nothing else

    timer = threading.Timer(timeout, kill)
    timer.start()
    try:
        _, status, usage = os.wait4(p.pid, 0)
    finally:
        timer.cancel()
    p.returncode = os.waitstatus_to_exitcode(status)
    for r in readers:
        r.join()
    return (None if killed else p.returncode), got.get("out", ""), got.get("err", ""), usage.ru_utime + usage.ru_stime


def run_one(cmd: Command, cwd: Path, shims: Path) -> Outcome:
    ran, ctrl_c = shorten(cmd)
    script = "\n".join([*cmd.prelude, ran])
    t = time.monotonic()
    if "--json" not in words(ran):  # in a terminal, as typed: live views, progress bars and colours as a user sees them
        r = run_in_pty(["bash", "-c", script], cwd=cwd, env=env(shims), timeout=600, keys=[(ctrl_c, CTRL_C)] if ctrl_c else [])
        rc, stdout, stderr, cpu = r.rc, r.text, "", r.cpu
    else:
        rc, stdout, stderr, cpu = run_bash(script, cwd, env(shims), 600)
    return Outcome(cmd, ran, rc, stdout, stderr, time.monotonic() - t, cwd, check(cmd, ran, rc, stdout, stderr, cwd), cpu)


def chains(cmds: list[Command]) -> list[list[Command]]:
    """Commands that share a path (or a block's directory state) grouped, each group in README order."""
    parent = list(range(len(cmds)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[str, int] = {}
    for i, c in enumerate(cmds):
        for p in paths(c.text):
            if p in owner:
                parent[find(i)] = find(owner[p])
            else:
                owner[p] = i
    groups: dict[int, list[Command]] = {}
    for i, c in enumerate(cmds):
        groups.setdefault(find(i), []).append(c)
    return sorted(groups.values(), key=lambda g: g[0].line)


def recipes_toml(text: str, cmds: list[Command]) -> str | None:
    """The ```toml block before the first command that reads recipes.toml, with its runs shortened."""
    users = [c.line for c in cmds if "recipes.toml" in c.text]
    blocks = [(line, "\n".join(body)) for line, body in fenced_blocks(text, "toml") if users and line < users[0]]
    if not blocks:
        return None
    body = re.sub(r"(?m)^(steps|eval-count|eval_count)\s*=.*$", "", blocks[-1][1])
    return re.sub(r"(?m)^\[train\][^\n]*$", f"[train]\nsteps = {STEPS}\neval-count = {EVAL_COUNT}", body, count=1)


# ------------------------------------------------------------------------------------------------


TEXT = README.read_text()
COMMANDS = readme_commands(TEXT)


def test_the_readme_has_its_commands():
    assert len(COMMANDS) > 40 and all(c.text.split()[0] for c in COMMANDS)
    assert any(c.text.startswith("ntp-probe sweep run recipes.toml") for c in COMMANDS)
    assert recipes_toml(TEXT, COMMANDS) is not None


def test_every_skip_and_expect_entry_names_a_readme_command():
    """A stale entry (the README line it named is gone or changed) would silently stop covering anything."""
    for table in (SKIP, EXPECT):
        for start in table:
            assert any(c.text.startswith(start) for c in COMMANDS), f"{start!r}: no README command starts so; update it"


def test_shortenings():
    c = Command(1, "mkdir -p runs && nohup ntp-probe train --degree 5 --steps 6000 --out runs/g5 -q > runs/g5.log 2>&1 &", 0)
    assert shorten(c) == ("mkdir -p runs && ntp-probe train --degree 5 --steps 2 --out runs/g5 -q --eval-count 16 > runs/g5.log 2>&1",
                          None)
    c = Command(1, "ntp-probe train --out runs/tl --steps 3000 --keep-checkpoints -q &", 0)
    assert shorten(c) == ("ntp-probe train --out runs/tl --steps 2 --keep-checkpoints -q --eval-count 16", None)
    c = Command(1, "ntp-probe reproduce --models a,b --count 16000 --out runs/grid   # + grid.png", 0)
    assert shorten(c)[0] == "ntp-probe reproduce --models a,b --count 64 --out runs/grid"
    c = Command(1, "ntp-probe reproduce --degree 2 --steps 1500 --out runs/compare", 0)
    assert shorten(c)[0] == "ntp-probe reproduce --degree 2 --steps 2 --out runs/compare --eval-count 16 --count 64"
    c = Command(1, "ntp-probe eval runs/tl@1500        # RUN@STEP: a kept checkpoint", 0)
    assert shorten(c)[0] == "ntp-probe eval runs/tl@2 --count 64"
    c = Command(1, "ntp-probe eval runs/rev --data deg_2_path_5_nodes_50_test_20000.txt --json", 0)
    assert shorten(c)[0] == "ntp-probe eval runs/rev --data .readme-data/deg_2_path_5_nodes_50_test_20000.txt --json"
    c = Command(1, "ntp-probe patch m --data deg_2_path_5_nodes_50_test_20000.txt --count 500 --png x.png", 0)
    assert shorten(c)[0] == "ntp-probe patch m --data deg_2_path_5_nodes_50_test_20000.txt --count 64 --png x.png"
    assert shorten(Command(1, "ntp-probe watch runs/g5 --follow 10      # running", 0)) == ("ntp-probe watch runs/g5 --follow 10",
                                                                                       "training runs")
    assert paths("ntp-probe reproduce --models runs/a,runs/b --out runs/grid") == {"runs/a", "runs/b", "runs/grid"}
    assert paths("kill -INT $(cat runs/g5/train.pid)") == {"runs/g5"}
    assert paths("ntp-probe patch g2-5-mlm-u --data deg_2_path_5_nodes_50_test_20000.txt --png mlmu.png") == {"mlmu.png"}
    assert paths("ntp-probe patch m --corrupt '32,3|16,12|47,28/32,28'") == set()


@pytest.mark.slow
def test_every_readme_command_runs(tmp_path):
    only = {int(x) for x in os.environ.get("README_LINES", "").replace(" ", "").split(",") if x}
    runnable = [c for c in COMMANDS if skip_reason(c) is None]
    groups = [g for g in chains(runnable) if not only or only & {c.line for c in g}]
    groups.sort(key=lambda g: (-len(g), g[0].line))  # the long chains first: no long one left alone at the end
    assert groups, f"README_LINES={os.environ.get('README_LINES')}: no runnable README command starts on those lines"
    recipes = recipes_toml(TEXT, COMMANDS)
    shims = make_shims(tmp_path / "shims")

    def run_chain(k: int, group: list[Command]) -> list[Outcome]:
        cwd = tmp_path / f"chain-{k:02d}-line-{group[0].line}"
        prepare(cwd, recipes)
        done = []
        for c in group:
            done.append(run_one(c, cwd, shims))
            if done[-1].problem:  # the rest of the chain needs what this one should have made
                break
        return done

    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = [o for res in pool.map(lambda kg: run_chain(*kg), enumerate(groups)) for o in res]
    wall = time.monotonic() - start
    timing = sorted(outcomes, key=lambda o: -o.cpu)[:10]
    print(f"\n{len(outcomes)} README commands in {len(groups)} chains: {wall:.1f}s, {sum(o.cpu for o in outcomes):.1f} CPU "
          "seconds; the most CPU: " + ", ".join(f"{o.cmd.where} {o.cpu:.1f}s" for o in timing))
    failed = [o for o in outcomes if o.problem]
    assert not failed, f"{len(failed)} README command(s) failed:\n\n" + "\n\n".join(o.report() for o in failed)
    ran = {o.cmd.line for o in outcomes}
    assert only or ran == {c.line for c in runnable}


def test_a_failing_command_names_its_readme_line_and_how_to_list_a_skip(tmp_path):
    cmd = Command(123, "ntp-probe no-such-command --steps 5   # a comment", 0)
    prepare(tmp_path / "d", None)
    o = run_one(cmd, tmp_path / "d", make_shims(tmp_path / "shims"))
    assert o.problem == "exited 2"
    msg = o.report()
    assert msg.startswith("README.md:123: `ntp-probe no-such-command --steps 5   # a comment`\n  exited 2")
    assert "No such command" in msg or "no-such-command" in msg.split("\n", 2)[2]
    assert '"ntp-probe no-such-command --steps 5": "why it cannot run in a test",' in msg
    assert "README_LINES=123 python -m pytest tests/test_readme.py" in msg
