"""Running a sweep: ``train`` subprocesses K at a time, stopped together, each run's state shown (``Sweep``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .recipe import LOG_TAIL_BYTES, Run, Spec


@dataclass
class Job:
    run: Run
    state: str  # pending, waiting (for the run it starts from), running, finished, stopped, failed, skipped
    proc: subprocess.Popen | None = None
    code: int | None = None
    note: str = ""
    log: Path | None = None
    started: float | None = None


@dataclass
class Sweep:
    """Runs a sweep's runs as ``train`` subprocesses, ``jobs`` at a time. ``stop()`` (SIGINT, SIGTERM) makes every
    running run checkpoint and exit, and starts nothing new."""

    runs: list[Run]
    schema: dict[str, Spec]
    jobs: int = 1
    program: list[str] = field(default_factory=lambda: [sys.executable, "-m", "ntp_probe"])
    poll_s: float = 0.5
    env: dict | None = None

    def __post_init__(self):
        self.table = [Job(r, "pending") for r in self.runs]
        self.stopping = False

    def job(self, name: str) -> Job:
        return next(j for j in self.table if j.run.name == name)

    def _start(self, job: Job) -> None:
        state = job.run.state()
        if state == "finished":
            job.state, job.note = "finished", "already finished"
            return
        if state == "running":  # started by hand or by another machine: wait for it, as for a warm start
            job.state, job.note = "waiting", "another process trains it"
            return
        if state == "stuck":  # a model (or other files) and nothing to resume from: never started over, reported
            job.state, job.note = "failed", job.run.why
            return
        job.run.out.mkdir(parents=True, exist_ok=True)
        job.log = job.run.out / f"{job.run.name}.log"
        with open(job.log, "ab") as log:
            log.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} {job.run.command(self.schema, state=state)}\n".encode())
            log.flush()
            job.proc = subprocess.Popen([*self.program, *job.run.train_args(self.schema, state)],
                                        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True, env=self.env)
        job.state, job.started = "running", time.time()
        job.note = "resumed" if state == "stopped" else ""

    def _reap(self, job: Job) -> None:
        code = job.proc.poll()
        if code is None:
            return
        job.code, job.proc = code, None
        if code == 0:
            state = job.run.state()
            job.state = "finished" if state == "finished" else "stopped"
            if state == "stuck":
                job.state, job.note = "failed", job.run.why
        else:
            job.state, job.note = "failed", f"exit {code}: {_last_line(job.log)}"

    def stop(self) -> None:
        self.stopping = True
        for j in self.table:
            if j.proc is not None and j.proc.poll() is None:
                try:
                    os.killpg(j.proc.pid, signal.SIGINT)
                except ProcessLookupError:
                    pass

    def step(self) -> bool:
        """Reap finished processes, start what may start; False once nothing is left to do."""
        from ..runs import owner

        for j in self.table:
            if j.proc is not None:
                self._reap(j)
        if not self.stopping:
            for j in self.table:
                if sum(x.proc is not None for x in self.table) >= self.jobs:
                    break
                if j.state not in ("pending", "waiting"):
                    continue
                if j.note == "another process trains it" and owner(j.run.dir) is not None:  # a pid check, not a status read
                    continue
                if j.run.after is not None:
                    dep = self.job(j.run.after)
                    if dep.state in ("failed", "skipped", "stopped") or (dep.state == "finished" and dep.run.state() != "finished"):
                        j.state, j.note = "skipped", f"{dep.run.name} did not finish"
                        continue
                    if dep.state != "finished":
                        j.state = "waiting"
                        continue
                j.note = ""
                self._start(j)
        return any(j.proc is not None for j in self.table) or (
            not self.stopping and any(j.state in ("pending", "waiting") for j in self.table))

    def run(self, on_tick: Callable[[Sweep], None] | None = None) -> list[Job]:
        """Run to the end (or until ``stop``), calling ``on_tick`` between polls. If anything fails here (the view
        included), every running training is stopped (it checkpoints) and waited for before the error goes on: a
        sweep never leaves trainings behind."""
        try:
            while self.step():
                if on_tick:
                    on_tick(self)
                time.sleep(self.poll_s)
        except BaseException:
            self.stop()
            self.wait()
            raise
        for j in self.table:
            if j.state in ("pending", "waiting") and self.stopping:
                j.state = "pending"
        if on_tick:
            on_tick(self)
        return self.table


    def wait(self, timeout_s: float = 120.0) -> None:
        """Wait for the running trainings to exit (after ``stop``); past ``timeout_s``, kill them."""
        deadline = time.time() + timeout_s
        for j in self.table:
            if j.proc is None:
                continue
            try:
                j.proc.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(j.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                j.proc.wait()
            j.code, j.proc = j.proc.returncode, None
            j.state = "stopped"


def _last_line(log: Path | None) -> str:
    """The last line of a run's log (its error, most often), from the end of the file only, on one line. Plain
    text: whoever shows it must not read it as markup."""
    if log is None:
        return "see its log"
    try:
        with open(log, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - LOG_TAIL_BYTES))
            text = f.read(LOG_TAIL_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return "see its log"
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("# ")]
    return " ".join(lines[-1].split())[:200] if lines else "no output"


