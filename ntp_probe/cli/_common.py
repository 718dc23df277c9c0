"""What every command shares: the consoles, the one-line ``error:`` + exit 2 machinery, the common options and
the helpers that turn options into engine arguments. Imports nothing of ``ntp_probe.cli`` (the commands import it).

Every error a user can cause is an ``NtpProbeError``: printed on one line to stderr, exit code 2.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
import typer.core
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from .. import __version__
from ..archs import ARCHS
from ..errors import NtpProbeError, UsageError

# Typer ≥ 0.24 carries its own copy of click: catch the exceptions of whichever click it runs on
_click = getattr(typer.core, "_click", None) or __import__("click")
ClickException = _click.exceptions.ClickException
NoArgsIsHelpError = getattr(_click.exceptions, "NoArgsIsHelpError", ())
Abort = getattr(typer.core, "Abort", None) or _click.exceptions.Abort


class OneLineErrors(TyperGroup):
    """Click's own usage errors (a bad value, an unknown option, a missing argument) as the project's one line
    on stderr with exit code 2, like every other bad input, instead of Typer's boxed panel."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except NoArgsIsHelpError as e:  # bare 'ntp-probe' or 'ntp-probe train': the help
            from typer import rich_utils

            rich_utils.rich_format_error(e)
            sys.exit(e.exit_code)
        except ClickException as e:
            msg = " ".join(e.format_message().split())
            ctx = getattr(e, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            err.print(f"[bold red]error:[/] {escape(msg)}{escape(hint)}", highlight=False)
            sys.exit(2)
        except Abort:
            err.print("Aborted!", highlight=False)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


class ClosedOutput(io.TextIOBase):
    """Standard output when the shell closed it (``ntp-probe generate >&-``): a write is the one-line usage error."""

    encoding = "utf-8"

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if not text:
            return 0
        raise UsageError("standard output is closed (>&-): nothing can be printed; redirect it (> FILE) or give --out")

    def isatty(self) -> bool:
        return False


def set_up_output() -> None:
    """The command line's console and error output, before its consoles are made, for any terminal or pipe:

    * a closed stdout (``>&-``) becomes ``ClosedOutput`` (one line on stderr, exit 2, when something is printed);
      a closed stderr, ``/dev/null`` (there is nowhere to say anything);
    * an encoding that cannot write the tables' characters (``PYTHONIOENCODING=ascii``, ``LC_ALL=C PYTHONUTF8=0``):
      those characters are replaced (Rich draws its boxes in ASCII there) instead of a ``UnicodeEncodeError``;
    * ``COLUMNS``/``LINES`` that are not a positive number (``COLUMNS=0``): ignored, the terminal's size (or 80) is
      used; at width 0 Rich printed nothing, error messages included.
    """
    if sys.stdout is None:
        sys.stdout = ClosedOutput()
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process
    for stream in (sys.stdout, sys.stderr):
        enc = (getattr(stream, "encoding", None) or "").lower().replace("-", "").replace("_", "")
        if enc and not enc.startswith("utf") and hasattr(stream, "reconfigure"):
            with contextlib.suppress(Exception):
                stream.reconfigure(errors="replace")
    for var in ("COLUMNS", "LINES"):
        value = os.environ.get(var)
        if value is not None and not (value.strip().isdigit() and 0 < int(value) < 100_000):
            del os.environ[var]


set_up_output()
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    message = message.replace("\r", "\\r").replace("\n", "\\n")  # one line, whatever a path or value holds
    err.print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    return typer.Exit(code)


@contextlib.contextmanager
def writing(option: str):
    """Around the write of an output a user named with ``option``: its error reads ``--png nodir/x.png: cannot write
    (No such file or directory)`` (``atomic.CannotWrite``, the path as given, never a temp file)."""
    from ..atomic import CannotWrite

    try:
        yield
    except CannotWrite as e:
        if e.what is None:
            e.what = option
        raise


def handle_errors(fn):
    """Turn the project's errors into one line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except NtpProbeError as e:
            raise fail(str(e).replace("[", r"\[")) from None
        except BrokenPipeError:
            sys.stderr.close()
            raise typer.Exit(0) from None
        except OSError as e:  # a file we could not read or write: say which, no traceback
            where = f": {e.filename}" if e.filename else ""
            raise fail(f"{e.strerror or e}{where}".replace("[", r"\[")) from None
        except (MemoryError, RuntimeError) as e:  # the last guard: sizes within the limits that still do not fit
            if not isinstance(e, MemoryError) and "alloc" not in str(e).lower() and "out of memory" not in str(e).lower():
                raise
            raise fail("out of memory: the sizes asked for do not fit this machine; use smaller ones "
                       f"({str(e).strip().splitlines()[0][:160] if str(e).strip() else 'MemoryError'})".replace("[", r"\[")) from None

    return wrapper


def version_callback(value: bool) -> None:
    if value:
        out.print(f"ntp-probe {__version__}")
        raise typer.Exit()


def set_threads(threads: int | None) -> None:
    from ..limits import check_threads

    if check_threads(threads):
        import torch

        torch.set_num_threads(threads)


ThreadsOpt = Annotated[Optional[int], typer.Option("--threads", help="Torch CPU threads (default: torch's choice).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")]
SHIPPED_DATA = (" A bare name of one of the original test files (deg_2_path_5_nodes_50_test_20000.txt and the others "
                "shipped with ntp-probe) reads the shipped copy when there is no such file here.")
_SET = " One value, a range (2-5) or a list (2,3,5): a topology set, each graph's shape drawn uniformly."
DegreeOpt = Annotated[str, typer.Option("--degree", "-d", help="Arms of the star (d)." + _SET, rich_help_panel="Task")]
PathLenOpt = Annotated[str, typer.Option("--path-len", "-l", help="Nodes on the start→goal path (l)." + _SET, rich_help_panel="Task")]
ModelDegreeOpt = Annotated[Optional[str], typer.Option("--degree", "-d", help="Fresh graphs of these degrees (default: the model's; 2-5 or 2,3,5).", rich_help_panel="Graphs")]
ModelPathLenOpt = Annotated[Optional[str], typer.Option("--path-len", "-l", help="Fresh graphs of these path lengths (default: the model's; 3-6 or 3,5).", rich_help_panel="Graphs")]
NodesOpt = Annotated[int, typer.Option("--nodes", "-n", help="Node ids 0..N-1.", rich_help_panel="Task")]
DecodeOpt = Annotated[str, typer.Option("--decode", help="greedy, sample, beam or verify (verifier-guided search).", rich_help_panel="Decoding")]
ArchOpt = Annotated[str, typer.Option("--arch", help=" or ".join(f"{k} ({v})" for k, v in ARCHS.items()) + ".", rich_help_panel="Model")]
DStateOpt = Annotated[int, typer.Option("--d-state", help="Mamba: SSM state size per channel.", rich_help_panel="Model")]
ExpandOpt = Annotated[int, typer.Option("--expand", help="Mamba: inner width = expand × d-model.", rich_help_panel="Model")]
TempOpt = Annotated[float, typer.Option("--temperature", help="Sampling temperature.", rich_help_panel="Decoding")]
SampleTopKOpt = Annotated[int, typer.Option("--sample-top-k", help="Sample only from the top K tokens (0: all).", rich_help_panel="Decoding")]
BeamOpt = Annotated[int, typer.Option("--beam", help="Beam width for --decode beam.", rich_help_panel="Decoding")]
TriesOpt = Annotated[int, typer.Option("--tries", help="Candidates the verifier may check (--decode verify).", rich_help_panel="Decoding")]


DEFAULT_OBJECTIVES = "next-token,reverse,teacherless"


def make_strategy(decode: str, temperature: float, sample_top_k: int, beam: int, tries: int, seed: int = 0):
    from ..decoding import Strategy

    return Strategy(decode, temperature, sample_top_k, beam, tries, seed)


def one_or_set(text: str) -> int | str:
    """An option's text as an int when it is one plain number (one shape: today's checks and messages)."""
    return int(text) if text.strip().isdigit() and len(text.strip()) < 10 else text


def load_graphs_arg(lm, data: Path | None, count: int, seed: int, degree: str | None = None,
                    path_len: str | None = None, odd_ok: bool = False):
    """--data's graphs (checked against the model before any work), or ``count`` fresh ones of the model's shapes
    (or of --degree/--path-len). ``odd_ok``: see ``evaluate.check_graphs`` (clever-hans skips non-stars)."""
    from ..limits import check_count
    from ..task import Topologies, generate_set, read_lines

    if data is not None:
        if degree is not None or path_len is not None:
            raise UsageError("--degree/--path-len choose fresh graphs; --data gives its own")
        from ..evaluate import check_graphs

        graphs = read_lines(data, lm.task.nodes)
        check_graphs(lm, graphs, odd_ok)  # before any scoring starts
        return graphs
    t = lm.task
    check_count(count, t.nodes, edges=t.num_edges)
    shapes = t.topologies
    if degree is not None or path_len is not None:
        shapes = Topologies.parse(one_or_set(degree) if degree is not None else list(shapes.degrees),
                                  one_or_set(path_len) if path_len is not None else list(shapes.path_lens), t.nodes)
        if not t.mixed and shapes.shapes != t.topologies.shapes:
            raise UsageError(f"{lm.display_name} was trained on {t.topologies.label()} only; it scores no other shape")
        from ..evaluate import check_fits

        for d, l in shapes.shapes:  # a set's model scores any shape that fits its context
            try:
                check_fits(lm, d * (l - 1), l, f"--degree {d} --path-len {l}")
            except NtpProbeError as e:
                raise UsageError(str(e)) from None
    return generate_set(shapes, t.nodes, count, seed=seed)


def check_seed(seed: int) -> None:
    from ..limits import check_seed as check

    check(seed)
