"""The ``ntp-probe`` command line: a thin shell over the engine and the probing API.

Every error a user can cause is an ``NtpProbeError``: printed on one line to stderr, exit code 2.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
import typer.core
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from . import __version__, objectives
from .archs import ARCHS
from .errors import NtpProbeError, UsageError


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


app = typer.Typer(
    cls=OneLineErrors,
    name="ntp-probe",
    help="See why next-token prediction with teacher forcing fails to learn planning (path-star graphs).",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    add_completion=False,
)
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


@app.callback()
def main_callback(
    version: Annotated[
        Optional[bool], typer.Option("--version", callback=version_callback, is_eager=True, help="Show the version and exit.")
    ] = None,
) -> None:
    """[bold]ntp-probe[/]: generate path-star graphs, train, evaluate and probe models."""


def set_threads(threads: int | None) -> None:
    from .limits import check_threads

    if check_threads(threads):
        import torch

        torch.set_num_threads(threads)


ThreadsOpt = Annotated[Optional[int], typer.Option("--threads", help="Torch CPU threads (default: torch's choice).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")]
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
    from .decoding import Strategy

    return Strategy(decode, temperature, sample_top_k, beam, tries, seed)


# ------------------------------------------------------------------------------------------------
# generate


@app.command()
@handle_errors
def generate(
    degree: DegreeOpt = "2",
    path_len: PathLenOpt = "5",
    nodes: Annotated[int, typer.Option("--nodes", "-n", help="Node ids are drawn from 0..N-1.")] = 50,
    count: Annotated[int, typer.Option("--count", "-c", help="How many graphs.", min=1)] = 10,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same lines).")] = 0,
    out_file: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write here (atomically) instead of stdout.")] = None,
    question_only: Annotated[bool, typer.Option("--no-answer", help="Leave out the '=s,…,g' answers.")] = False,
    one_batch: Annotated[bool, typer.Option("--one-batch", help="All graphs as one batch from one generator: the "
                                            "output of versions before the stream (e.g. the G(5,5) test files).")] = False,
) -> None:
    """Generate path-star graphs G(d, l) in the original line format [dim]u,v|…/s,g=s,…,g[/].

    A seed names one endless stream of graphs: [bold]--count 3[/] is the first 3 lines of [bold]--count 100000[/].
    Written in chunks, so any count runs in bounded memory. A topology set ([bold]--degree 2-5 --path-len 3-6[/])
    draws each graph's shape uniformly."""
    from .atomic import atomic_write_chunks
    from .limits import check_count, check_seed, check_task_size
    from .task import Topologies, format_lines, generate_set, generate_text, stream_chunk_size

    shapes = Topologies.parse(one_or_set(degree), one_or_set(path_len), nodes)  # one shape: check_topology as always
    degree, path_len = shapes.max_degree, shapes.max_path_len
    check_task_size(degree, path_len, nodes)
    check_seed(seed)
    if one_batch:  # not a stream: --count 3 is not a prefix of --count 4; in memory, so bounded like eval --count
        check_count(count, nodes, edges=degree * (path_len - 1))
        batch = generate_set(shapes, nodes, count, seed=seed)
        size = stream_chunk_size(nodes)  # formatted a chunk at a time: a million lines' Python ints took GBs
        chunks = ("\n".join(format_lines(batch[lo : lo + size], with_answer=not question_only)) + "\n"
                  for lo in range(0, count, size))
    else:
        chunks = generate_text(degree, path_len, nodes, count, seed, with_answer=not question_only, shapes=shapes)
    if out_file is None:
        for chunk in chunks:
            sys.stdout.write(chunk)
    else:
        try:
            atomic_write_chunks(out_file, chunks)
        except OSError as e:
            raise UsageError(f"--out {out_file}: cannot write ({e.strerror or e})") from None
        err.print(f"wrote {count:,} graphs to {out_file}")


# ------------------------------------------------------------------------------------------------
# train


@app.command()
@handle_errors
def train(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Run directory (model, metrics, training state).")],
    degree: DegreeOpt = "2",
    path_len: PathLenOpt = "5",
    nodes: NodesOpt = 50,
    objective: Annotated[str, typer.Option("--objective", help=f"{objectives.choices()}.", rich_help_panel="Task")] = "next-token",
    future: Annotated[int, typer.Option("--future", help="Heads of the multi-token objective (k).", rich_help_panel="Task")] = 4,
    mix: Annotated[float, typer.Option("--mix", help="hybrid: weight of the teacherless loss (the next-token loss gets 1 − mix).", rich_help_panel="Task")] = 0.5,
    drop_rate: Annotated[float, typer.Option("--drop-rate", help="answer-dropout: probability that an answer input is dropped (span mode: that a row loses a span).", rich_help_panel="Task")] = 0.5,
    drop_mode: Annotated[str, typer.Option("--drop-mode", help="answer-dropout: token ($ per input), span (one span of $) or replace (a random node id per input).", rich_help_panel="Task")] = "token",
    targets_per_graph: Annotated[int, typer.Option("--targets-per-graph", help="Structured samples: each graph of a batch K times with K different goals (K ≤ degree; the batch holds batch-size ÷ K graphs).", rich_help_panel="Task")] = 1,
    query_first: Annotated[bool, typer.Option("--query-first", help="Layout: the query 's g /' before the edge list (Frydenlund 2025); the model's header keeps it, every command honours it.", rich_help_panel="Task")] = False,
    arch: ArchOpt = "gpt",
    d_state: DStateOpt = 16,
    expand: ExpandOpt = 2,
    train_file: Annotated[Optional[Path], typer.Option("--train-file", help="Sample batches from this file instead of fresh graphs.", rich_help_panel="Task")] = None,
    steps: Annotated[int, typer.Option("--steps", help="Optimizer steps.", rich_help_panel="Optimiser")] = 2000,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", help="Graphs per step (per process).", rich_help_panel="Optimiser")] = 256,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate (AdamW).", rich_help_panel="Optimiser")] = 1e-3,
    min_lr: Annotated[float, typer.Option("--min-lr", help="Learning rate at the end of the cosine decay.", rich_help_panel="Optimiser")] = 1e-4,
    warmup: Annotated[int, typer.Option("--warmup", help="Linear warm-up steps.", rich_help_panel="Optimiser")] = 100,
    weight_decay: Annotated[float, typer.Option("--weight-decay", help="AdamW weight decay.", rich_help_panel="Optimiser")] = 0.0,
    layers: Annotated[int, typer.Option("--layers", help="Transformer blocks.", rich_help_panel="Model")] = 2,
    d_model: Annotated[int, typer.Option("--d-model", help="Width.", rich_help_panel="Model")] = 128,
    heads: Annotated[int, typer.Option("--heads", help="Attention heads.", rich_help_panel="Model")] = 4,
    dropout: Annotated[float, typer.Option("--dropout", help="Dropout probability.", rich_help_panel="Model")] = 0.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed for init and data.", rich_help_panel="Optimiser")] = 0,
    device: DeviceOpt = "auto",
    amp: Annotated[str, typer.Option("--amp", help="auto (bf16 on CUDA and on CPUs with native bf16, else fp32), fp32 or bf16.")] = "auto",
    eval_every: Annotated[int, typer.Option("--eval-every", help="Evaluate and checkpoint every K steps.")] = 250,
    eval_count: Annotated[int, typer.Option("--eval-count", help="Held-out graphs per evaluation.")] = 2000,
    target_accuracy: Annotated[Optional[float], typer.Option("--target-accuracy", help="Stop once held-out greedy accuracy reaches this.")] = None,
    mask_question: Annotated[bool, typer.Option("--mask-question", help="mlm-u: mask the edge list's node ids too, at the same rate (the whole sequence, as in Kitouni et al.).", rich_help_panel="Task")] = False,
    drop_masked: Annotated[bool, typer.Option("--drop-masked", help="mlm-u: masked tokens are queries only (their position), hidden from every other position, as in the authors' code.", rich_help_panel="Task")] = False,
    init_from: Annotated[Optional[str], typer.Option("--init-from", help="Warm start from this MODEL's weights (a curriculum, e.g. G(2,5) → G(5,5)); same size and node ids.", rich_help_panel="Model")] = None,
    keep_checkpoints: Annotated[bool, typer.Option("--keep-checkpoints", help="Keep the weights of every evaluation step in --out/kept/ (open one as RUN@STEP; replay them in the app with , and .).")] = False,
    threads: ThreadsOpt = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out where it stopped.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing run in --out.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar; one line per evaluation.")] = False,
) -> None:
    """Train a model on G(d, l). Ctrl-C saves a checkpoint and exits 0; [bold]--resume[/] continues exactly."""
    from .train import run_command_line, train as run_train

    set_threads(threads)
    cfg = train_config(locals())
    from .progress import TrainProgress

    with TrainProgress(err, quiet=quiet or not err.is_terminal) as progress:
        summary = run_train(cfg, out_dir, resume=resume, force=force, callback=progress, command=run_command_line())
    import os

    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun only rank 0 reports
        return
    m = summary["metrics"]
    state = "interrupted, saved" if summary["interrupted"] else ("target reached" if summary["stopped_early"] else "done")
    acc = f" greedy accuracy {m['accuracy']:.3f}, decision {m['decision_accuracy']:.3f}" if m else ""
    err.print(f"{state}: step {summary['step']}/{summary['steps']} in {summary['wall_time_s']:.1f}s;{acc} → {out_dir}")


def train_config(params: dict):
    """The TrainConfig of train's parsed options (its parameter names): the one mapping, shared with ``sweep``."""
    from .task import Topologies
    from .train import TrainConfig

    p = params
    degree, path_len = Topologies.parse(one_or_set(p["degree"]), one_or_set(p["path_len"]), p["nodes"]).to_option()
    names = ("nodes", "objective", "future", "mix", "drop_rate", "drop_mode", "targets_per_graph", "query_first", "arch", "d_state", "expand", "layers", "d_model", "heads", "dropout",
             "steps", "batch_size", "lr", "min_lr", "warmup", "weight_decay", "seed", "device", "amp", "eval_every",
             "eval_count", "target_accuracy", "init_from", "mask_question", "drop_masked", "keep_checkpoints")
    return TrainConfig(degree=degree, path_len=path_len, train_file=str(p["train_file"]) if p["train_file"] else None,
                       **{k: p[k] for k in names})


# ------------------------------------------------------------------------------------------------
# eval


def one_or_set(text: str) -> int | str:
    """An option's text as an int when it is one plain number (one shape: today's checks and messages)."""
    return int(text) if text.strip().isdigit() and len(text.strip()) < 10 else text


def load_graphs_arg(lm, data: Path | None, count: int, seed: int, degree: str | None = None,
                    path_len: str | None = None, odd_ok: bool = False):
    """--data's graphs (checked against the model before any work), or ``count`` fresh ones of the model's shapes
    (or of --degree/--path-len). ``odd_ok``: see ``evaluate.check_graphs`` (clever-hans skips non-stars)."""
    from .limits import check_count
    from .task import Topologies, generate_set, read_lines

    if data is not None:
        if degree is not None or path_len is not None:
            raise UsageError("--degree/--path-len choose fresh graphs; --data gives its own")
        from .evaluate import check_graphs

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
        from .evaluate import check_fits

        for d, l in shapes.shapes:  # a set's model scores any shape that fits its context
            try:
                check_fits(lm, d * (l - 1), l, f"--degree {d} --path-len {l}")
            except NtpProbeError as e:
                raise UsageError(str(e)) from None
    return generate_set(shapes, t.nodes, count, seed=seed)


def check_seed(seed: int) -> None:
    from .limits import check_seed as check

    check(seed)


@app.command("eval")
@handle_errors
def eval_cmd(
    model: Annotated[str, typer.Argument(help="A .safetensors file, a run directory, or a shipped model name.")],
    data: Annotated[Optional[Path], typer.Option("--data", help="Graphs in the original line format, with answers.", rich_help_panel="Graphs")] = None,
    count: Annotated[int, typer.Option("--count", help="Fresh graphs when no --data.", min=1, rich_help_panel="Graphs")] = 2000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the fresh graphs.", rich_help_panel="Graphs")] = 12345,
    degree: ModelDegreeOpt = None,
    path_len: ModelPathLenOpt = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Graphs per forward pass.", min=1)] = 2000,
    device: DeviceOpt = "cpu",
    decode: DecodeOpt = "greedy",
    temperature: TempOpt = 1.0,
    sample_top_k: SampleTopKOpt = 0,
    beam: BeamOpt = 4,
    tries: TriesOpt = 8,
    threads: ThreadsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Score a model: greedy (or --decode) and teacher-forced accuracy, per position, and the decision step."""
    from .checkpoint import load
    from .evaluate import evaluate
    from .train import pick_device

    set_threads(threads)
    check_seed(seed)
    strategy = make_strategy(decode, temperature, sample_top_k, beam, tries, seed)
    lm = load(model, pick_device(device))
    graphs = load_graphs_arg(lm, data, count, seed, degree, path_len)
    res = evaluate(lm, graphs, batch_size=batch_size, strategy=strategy)
    res = {"model": lm.display_name, "data": str(data) if data else f"fresh:seed={seed}", **res}
    if as_json:
        out.print_json(json.dumps(res)) if out.is_terminal else print(json.dumps(res))
        return
    from .render import eval_table, shape_table

    out.print(eval_table(lm, res))
    if "by_topology" in res:
        out.print(shape_table(res, "per shape"))


# ------------------------------------------------------------------------------------------------
# models


@app.command()
@handle_errors
def watch(
    runs: Annotated[list[Path], typer.Argument(help="Run directories (a directory of runs, e.g. a reproduce --out, is expanded); RUN@STEP: as of a kept checkpoint.")],
    follow: Annotated[Optional[float], typer.Option("--follow", "-f", help="Refresh every SECONDS until Ctrl-C.", min=0.2)] = None,
    as_json: JsonOpt = False,
) -> None:
    """Where trainings stand: running or stopped, step, s/step, ETA, last evaluation, per-position curves."""
    from .limits import MAX_FOLLOW_S, check_float
    from .render import watch_view
    from .runs import statuses

    if follow is not None:
        check_float("--follow", follow, 0.2, MAX_FOLLOW_S)  # inf: an OverflowError in sleep
    if as_json:
        print(json.dumps(statuses(runs)))
        return
    if follow is None:
        out.print(watch_view(statuses(runs)))
        return
    import time

    from rich.live import Live

    try:
        with Live(watch_view(statuses(runs)), console=out, auto_refresh=False) as live:
            while True:
                time.sleep(follow)
                live.update(watch_view(statuses(runs)), refresh=True)
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


def _set_label(task: dict) -> str:
    """A set's shapes in a table column: 'G(2-5,3-6)' (degrees, path lengths)."""
    from .task import format_values

    try:
        return f"G({format_values(task['degrees'])},{format_values(task['path_lens'])})"
    except (TypeError, ValueError):
        return "G(?)"


@app.command("models")
@handle_errors
def models_cmd(as_json: JsonOpt = False) -> None:
    """List the shipped models (models/) with their task, objective and accuracy."""
    from .checkpoint import list_models, read_meta

    rows = []
    for name, path in list_models():
        try:
            meta = read_meta(path)
        except NtpProbeError as e:
            rows.append({"name": name, "error": str(e)})
            continue
        t, m, tr = meta["task"], meta.get("metrics") or {}, meta.get("training") or {}
        card = meta.get("card") or {}
        rows.append({
            "name": name,
            "objective": meta["objective"]["name"],
            "arch": meta["config"].get("arch", "gpt"),
            "degree": t["degree"],
            "path_len": t["path_len"],
            **({"degrees": t["degrees"], "path_lens": t["path_lens"], "task": _set_label(t)} if "degrees" in t else {}),
            "nodes": t["nodes"],
            "layers": meta["config"]["n_layer"],
            "d_model": meta["config"]["n_embd"],
            "accuracy": card.get("accuracy", m.get("accuracy")),
            "decision_accuracy": card.get("decision_accuracy", m.get("decision_accuracy")),
            "forced_accuracy": card.get("forced_accuracy", m.get("forced_accuracy")),
            "clever_hans_rate": card.get("clever_hans_rate"),
            "steps": tr.get("steps"),
            "path": str(path),
        })
    if as_json:
        print(json.dumps(rows))
        return
    from .render import models_table

    out.print(models_table(rows))


# ------------------------------------------------------------------------------------------------
# probe / clever-hans


@app.command()
@handle_errors
def probe(
    model: Annotated[Optional[str], typer.Argument(help="A .safetensors file, a run directory, or a shipped model name.")] = None,
    graph: Annotated[Optional[str], typer.Option("--graph", "-g", help="One graph, in the line or the human format.", rich_help_panel="Graph")] = None,
    graphs: Annotated[Optional[Path], typer.Option("--graphs", help="A file of graphs, one a line (original format).", rich_help_panel="Graph")] = None,
    force: Annotated[Optional[str], typer.Option("--force", "-f", help="Force the first answer tokens, e.g. 9,3 (model's order).", rich_help_panel="Graph")] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="Top tokens shown per step.", min=1, rich_help_panel="Output")] = 5,
    decode: DecodeOpt = "greedy",
    temperature: TempOpt = 1.0,
    sample_top_k: SampleTopKOpt = 0,
    beam: BeamOpt = 4,
    tries: TriesOpt = 8,
    seed: Annotated[int, typer.Option("--seed", help="Seed for --decode sample.", rich_help_panel="Decoding")] = 0,
    layers: Annotated[bool, typer.Option("--layers", help="Add the logit lens: each layer's readout per step.", rich_help_panel="Output")] = False,
    save: Annotated[Optional[Path], typer.Option("--save", help="Save the session (model, graph, forced tokens, strategy) as JSON.", rich_help_panel="Output")] = None,
    load_from: Annotated[Optional[Path], typer.Option("--load", help="Load a saved session instead of MODEL/--graph.", rich_help_panel="Graph")] = None,
    threads: ThreadsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Decode graphs step by step, optionally forcing a (wrong) prefix, and show every step's distribution."""
    from .checkpoint import load
    from .probing import ProbeSession, load_session, parse_for_model, parse_force
    from .task import read_lines

    set_threads(threads)
    check_seed(seed)
    if load_from is not None:
        if graph is not None or graphs is not None:
            raise UsageError("--load restores the graph; leave out --graph/--graphs")
        sessions = [load_session(load_from, load(model) if model else None)]
        for note in sessions[0].notes:
            err.print(f"warning: {note}", highlight=False, markup=False)
    else:
        if model is None:
            raise UsageError("give a MODEL (or --load FILE)")
        if (graph is None) == (graphs is None):
            raise UsageError("give exactly one of --graph TEXT or --graphs FILE")
        if save is not None and graphs is not None:
            raise UsageError("--save saves one session: use it with --graph")
        strategy = make_strategy(decode, temperature, sample_top_k, beam, tries, seed)
        lm = load(model)
        items = [parse_for_model(graph, lm)] if graph is not None else read_lines(graphs, lm.task.nodes)
        sessions = (ProbeSession(lm, g, strategy=strategy) for g in items)
    for session in sessions:
        if force is not None:  # --force '' is an error (an empty list), not silently nothing
            session.set_forced_prefix(parse_force(force, session.lm, session.graph))
        if save is not None:
            session.save(save)
        if as_json:
            print(json.dumps(session.to_json(top_k, layers=layers)), flush=True)
        else:
            from .render import probe_panel

            out.print(probe_panel(session, top_k, layers=layers))


@app.command("clever-hans")
@handle_errors
def clever_hans_cmd(
    model: Annotated[str, typer.Argument(help="A .safetensors file, a run directory, or a shipped model name.")],
    data: Annotated[Optional[Path], typer.Option("--data", help="Graphs in the original line format.")] = None,
    count: Annotated[int, typer.Option("--count", help="Fresh graphs when no --data.", min=1)] = 2000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the fresh graphs and of the wrong-arm choice.")] = 12345,
    degree: ModelDegreeOpt = None,
    path_len: ModelPathLenOpt = None,
    threads: ThreadsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Force the decision step onto a wrong arm and measure whether the model follows it (the Clever Hans cheat)."""
    from .checkpoint import load
    from .metrics import clever_hans

    set_threads(threads)
    check_seed(seed)
    lm = load(model)
    res = clever_hans(lm, load_graphs_arg(lm, data, count, seed, degree, path_len, odd_ok=True), seed=seed)
    res["data"] = str(data) if data else f"fresh:seed={seed}"
    if as_json:
        print(json.dumps(res))
        return
    from .render import clever_hans_table, shape_table

    out.print(clever_hans_table(res))
    if "by_topology" in res:
        out.print(shape_table(res, "per shape"))


@app.command("patch")
@handle_errors
def patch_cmd(
    model: Annotated[str, typer.Argument(help="A .safetensors file, a run directory, or a shipped model name.")],
    graph: Annotated[Optional[str], typer.Option("--graph", "-g", help="One graph (the clean run), line or human format.", rich_help_panel="Graphs")] = None,
    data: Annotated[Optional[Path], typer.Option("--data", help="Average over the first --count graphs of this file.", rich_help_panel="Graphs")] = None,
    count: Annotated[int, typer.Option("--count", help="Graphs to average over (--data's first, or fresh ones).", min=1, rich_help_panel="Graphs")] = 500,
    pair: Annotated[str, typer.Option("--pair", help="The corrupt run: goal (the goal on another arm's leaf) or shuffle (the edges reordered).", rich_help_panel="Graphs")] = "goal",
    corrupt: Annotated[Optional[str], typer.Option("--corrupt", help="The corrupt run's graph, of --graph's shape.", rich_help_panel="Graphs")] = None,
    step: Annotated[Optional[int], typer.Option("--step", help="Answer token K (1-based, the model's order; default: the decision step).")] = None,
    knockout: Annotated[bool, typer.Option("--knockout", help="Also hide each edge from every attention and report its effect.")] = False,
    attribution: Annotated[bool, typer.Option("--attribution", help="Also each head's and MLP's direct logit attribution.")] = False,
    png: Annotated[Optional[Path], typer.Option("--png", help="Write the heat map as a PNG.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of fresh graphs and of the shuffle pair.")] = 0,
    threads: ThreadsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Activation patching at one answer step: which (layer, token) carries the goal to the decision; with
    --knockout the edges it reads, with --attribution the heads and MLPs that write the answer."""
    from .checkpoint import load
    from .limits import check_count
    from .probing import parse_for_model
    from .probing.patching import PAIRS, patch

    set_threads(threads)
    check_seed(seed)
    if pair not in PAIRS:
        raise UsageError(f"--pair {pair!r}: choose goal or shuffle (or give --corrupt GRAPH)")
    if graph is not None and data is not None:
        raise UsageError("give --graph (one pair) or --data (an average), not both")
    if corrupt is not None and graph is None:
        raise UsageError("--corrupt is the second graph of one pair: give --graph too")
    lm = load(model)
    if graph is not None:
        graphs = [parse_for_model(graph, lm)]
    else:
        check_count(count, lm.task.nodes)
        got = load_graphs_arg(lm, data, count, seed)  # a file's graphs, or a batch of fresh ones
        graphs = (list(got.graphs()) if hasattr(got, "graphs") else got)[:count]
    second = None
    if corrupt is not None:
        try:
            second = parse_for_model(corrupt, lm)
        except NtpProbeError as e:
            raise e.__class__(f"--corrupt: {e}") from None
    k = None
    if step is not None:
        if step < 1:
            raise UsageError(f"--step {step}: answer tokens are counted from 1")
        k = step - 1
    res = patch(lm, graphs, pair, second, k, edges=knockout, attribute=attribution, seed=seed)
    if png is not None:
        from .probing.figure import heatmap_png

        heatmap_png(res, png)
    if as_json:
        print(json.dumps(res))
        return
    from .render import patch_view

    out.print(patch_view(res))
    if png is not None:
        out.print(f"wrote {escape(str(png))}", highlight=False)


@app.command("inference-fixes")
@handle_errors
def inference_fixes_cmd(
    models: Annotated[Optional[list[str]], typer.Argument(help="Models to compare (default: g2-5-next-token g2-5-reverse).")] = None,
    data: Annotated[Optional[Path], typer.Option("--data", help="Graphs in the original line format.", rich_help_panel="Graphs")] = None,
    count: Annotated[int, typer.Option("--count", help="Fresh graphs when no --data.", min=1, rich_help_panel="Graphs")] = 2000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the fresh graphs and of sampling.", rich_help_panel="Graphs")] = 12345,
    beam: BeamOpt = 4,
    tries: Annotated[Optional[int], typer.Option("--tries", help="Verifier budget (default max(8, 2d)).", rich_help_panel="Decoding")] = None,
    temperature: TempOpt = 1.0,
    threads: ThreadsOpt = None,
    as_json: JsonOpt = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print a Markdown table (for reports).")] = False,
) -> None:
    """Greedy, sampling, beam search and a perfect verifier on the same graphs: does search recover the plan?"""
    from .checkpoint import load
    from .evaluate import inference_fixes

    set_threads(threads)
    check_seed(seed)
    from .limits import check_int, check_strategy, MAX_TRIES

    if tries is not None:
        check_int("--tries", tries, 1, MAX_TRIES)  # 0 is not "the default"
    check_strategy(temperature, 0, beam, tries or 1)
    rows = []
    for spec in models or ["g2-5-next-token", "g2-5-reverse"]:
        lm = load(spec)
        rows += inference_fixes(lm, load_graphs_arg(lm, data, count, seed), beam=beam, tries=tries,
                                temperature=temperature, seed=seed)
    if as_json:
        print(json.dumps(rows))
        return
    if markdown:
        from .report import inference_markdown

        print("\n".join(inference_markdown(rows)))
        return
    from .render import inference_table

    out.print(inference_table(rows))


# ------------------------------------------------------------------------------------------------
# reproduce / ship


@app.command()
@handle_errors
def reproduce(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Directory for the runs, report.md and the plots.")],
    degree: DegreeOpt = "2",
    path_len: PathLenOpt = "5",
    nodes: NodesOpt = 50,
    objective_names: Annotated[str, typer.Option("--objectives", help=f"Comma-separated objectives to train (any of {', '.join(objectives.names())}).", rich_help_panel="Task")] = DEFAULT_OBJECTIVES,
    models: Annotated[Optional[str], typer.Option("--models", help="Evaluate these existing models (comma-separated) instead of training.", rich_help_panel="Task")] = None,
    data: Annotated[Optional[Path], typer.Option("--data", help="Score on this file (original format) instead of fresh graphs.", rich_help_panel="Task")] = None,
    count: Annotated[int, typer.Option("--count", help="Fresh graphs to score on when no --data.", min=1, rich_help_panel="Task")] = 2000,
    steps: Annotated[int, typer.Option("--steps", help="Training steps per objective.", min=1, rich_help_panel="Optimiser")] = 1500,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, rich_help_panel="Optimiser")] = 256,
    lr: Annotated[float, typer.Option("--lr", rich_help_panel="Optimiser")] = 1e-3,
    layers: Annotated[int, typer.Option("--layers", min=1, rich_help_panel="Model")] = 2,
    d_model: Annotated[int, typer.Option("--d-model", min=8, rich_help_panel="Model")] = 128,
    heads: Annotated[int, typer.Option("--heads", min=1, rich_help_panel="Model")] = 4,
    arch: ArchOpt = "gpt",
    d_state: DStateOpt = 16,
    expand: ExpandOpt = 2,
    eval_every: Annotated[int, typer.Option("--eval-every", min=1)] = 100,
    seed: Annotated[int, typer.Option("--seed", rich_help_panel="Optimiser")] = 0,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    report: Annotated[str, typer.Option("--report", help="File name of the report inside --out.")] = "report.md",
    fixes: Annotated[bool, typer.Option("--inference-fixes", help="Add the inference-fixes table (greedy, sampling, beam, verifier) for every model.")] = False,
    leaderboard: Annotated[bool, typer.Option("--leaderboard", help="Score every shipped model (or --models) on G(2,3), G(2,4), G(2,5), G(5,5) and its star set: one row per fix and shape, into leaderboard.md/.json.", rich_help_panel="Task")] = False,
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir", help="--leaderboard: score each shape on its original test file found here (deg_D_path_L_nodes_N_test_*.txt); else --count fresh graphs.", rich_help_panel="Task")] = None,
) -> None:
    """Train the objectives side by side with one recipe (or score --models) and write a report with plots;
    [bold]--leaderboard[/] scores the shipped models on the debate's shapes instead."""
    from .checkpoint import load
    from .report import metrics_for, score, sparkline, train_all, write_report
    from .train import TrainConfig, run_command_line

    from .limits import check_file_name

    set_threads(threads)
    check_seed(seed)
    check_file_name(report, "--report", "--out")  # before anything is trained: the report stays inside --out
    if models is not None and not [m for m in models.split(",") if m.strip()]:
        raise UsageError("--models: empty list; give model names or files, comma-separated")
    if leaderboard:
        return reproduce_leaderboard(out_dir, models, data_dir, count, seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    if models is not None:
        lms = [load(m.strip()) for m in models.split(",") if m.strip()]
    else:
        from .progress import TrainProgress

        from .task import Topologies

        shapes = Topologies.parse(one_or_set(degree), one_or_set(path_len), nodes)
        if shapes.mixed and objective_names == DEFAULT_OBJECTIVES:  # teacherless trains on one shape only
            objective_names = "next-token,reverse"
        degree, path_len = shapes.to_option()
        base = TrainConfig(degree=degree, path_len=path_len, nodes=nodes, steps=steps, batch_size=batch_size, lr=lr,
                           layers=layers, d_model=d_model, heads=heads, arch=arch, d_state=d_state, expand=expand,
                           eval_every=eval_every, seed=seed, device=device)
        objs = [o.strip() for o in objective_names.split(",") if o.strip()]
        for o in objs:  # a bad name fails before any training
            objectives.objective_class(o)
        progress = {}

        def callback_for(obj):
            err.print(f"[bold]{obj}[/]")
            progress[obj] = TrainProgress(err, quiet=True)
            return progress[obj]

        runs = train_all(base, objs, out_dir, callback_for, command=run_command_line())
        lms = [load(r) for r in runs]
    tasks = {lm.task for lm in lms}
    if len(tasks) != 1:
        raise UsageError("--models must all be trained on the same G(d,l) and N")
    lm0 = lms[0]
    graphs = load_graphs_arg(lm0, data, count, seed + 12345)
    rows, curves, fix_rows = [], {}, []
    for lm in lms:
        err.print(f"scoring {lm.display_name} …")
        rows.append(score(lm, graphs, seed=seed))
        curves[lm.display_name] = metrics_for(lm)
        if fixes:
            from .evaluate import inference_fixes

            fix_rows += inference_fixes(lm, graphs, seed=seed + 12345)
    desc = f"`{data.name}` ({len(graphs):,} graphs)" if data else f"{count:,} fresh graphs (seed {seed + 12345})"
    path = write_report(rows, curves, out_dir, lm0.task.label(), desc, run_command_line(), report, fix_rows)
    from .render import reproduce_table

    out.print(reproduce_table(rows, lm0.task.label()))
    if any("by_topology" in r for r in rows):
        from .render import grid_table

        out.print(grid_table(rows))
    for name, recs in curves.items():
        if recs:
            out.print(f"[bold]{name}[/] greedy per position over {recs[-1]['step']} steps")
            for p in range(len(recs[0]["per_position"])):
                out.print(f"  pos {p} {sparkline([r['per_position'][p] for r in recs])}", highlight=False)
    err.print(f"report: {path}")


def reproduce_leaderboard(out_dir: Path, models: str | None, data_dir: Path | None, count: int, seed: int) -> None:
    from .atomic import atomic_write_text
    from .checkpoint import list_models, load
    from .leaderboard import markdown, rows_for

    if data_dir is not None and not data_dir.is_dir():
        raise UsageError(f"--data-dir {data_dir}: no such directory")
    names = [m.strip() for m in models.split(",") if m.strip()] if models else [name for name, _ in list_models()]
    if not names:
        raise UsageError("no models to score (none shipped, and no --models)")
    lms = [load(n) for n in names]  # every model loads before any scoring
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for lm in lms:
        rows += rows_for(lm, data_dir, count, seed + 12345, note=lambda s: err.print(s, highlight=False))
    md = markdown(rows)
    atomic_write_text(out_dir / "leaderboard.md", md + "\n")
    atomic_write_text(out_dir / "leaderboard.json", json.dumps(rows, indent=1) + "\n")
    out.print(md, markup=False, highlight=False)
    err.print(f"wrote {out_dir / 'leaderboard.md'} and leaderboard.json", highlight=False)


@app.command(hidden=True)
@handle_errors
def ship(
    run: Annotated[str, typer.Argument(help="A run directory (or model) to package.")],
    name: Annotated[str, typer.Option("--name", help="Model name: the folder models/NAME.")],
    data: Annotated[Path, typer.Option("--data", help="Test file the card's figures are measured on.")],
    models_dir: Annotated[Path, typer.Option("--models-dir", help="Where shipped models live.")] = Path("models"),
    seed: Annotated[int, typer.Option("--seed")] = 0,
    note: Annotated[Optional[str], typer.Option("--note", help="A paragraph for the card's Notes section.")] = None,
    threads: ThreadsOpt = None,
) -> None:
    """Package a trained run as a shipped model: weights with its card figures, metrics.jsonl, README.md."""
    from .cards import ship_model

    set_threads(threads)
    check_seed(seed)
    path = ship_model(run, name, data, models_dir, seed, note)
    err.print(f"shipped {name} → {path}")

# ------------------------------------------------------------------------------------------------
# tui


@app.command()
@handle_errors
def tui(
    models: Annotated[
        Optional[list[str]],
        typer.Argument(help="Models to open: .safetensors files, run directories (RUN@STEP: a kept checkpoint) or shipped names; the first is probed, "
                            "the others are shown side by side. Default: star-next-token (+ star-reverse), else "
                            "g2-5-next-token (+ reverse, teacherless)."),
    ] = None,
    follow: Annotated[bool, typer.Option("--follow", help="The first MODEL is a run directory that train is writing: "
                                         "load each new checkpoint as it is saved (same graph, forced tokens, cursor).")] = False,
    interval: Annotated[float, typer.Option("--interval", help="--follow: seconds between looks at the run.",
                                            min=0.1, max=3600)] = 1.0,
) -> None:
    """Open the probing app: step through decoding, force a wrong arm (the Clever Hans demo), compare models."""
    if follow:
        from .follow import check_followable

        if not models:
            raise UsageError("--follow: give the run directory to follow, e.g. ntp-probe tui runs/x --follow")
        check_followable(models[0])
    for name, stream in (("input", sys.stdin), ("output", sys.stdout)):  # the app reads keys and draws on a terminal
        if stream is None or isinstance(stream, ClosedOutput):
            raise UsageError(f"the app needs a terminal: standard {name} is closed; run 'ntp-probe tui' in a terminal")
        try:
            tty = stream.isatty()
        except (OSError, ValueError):
            tty = False
        if not tty:
            raise UsageError(f"the app needs a terminal: standard {name} is not one (a file or a pipe); run "
                             "'ntp-probe tui' in a terminal (the CLI's probe --graph prints the same figures)")
    from .tui.app import ProbeApp

    ProbeApp(models or None, follow=follow, follow_interval=interval).run()


# ------------------------------------------------------------------------------------------------
# export


@app.command()
@handle_errors
def export(
    model: Annotated[str, typer.Argument(help="A .safetensors file, a run directory, or a shipped model name (GPT).")],
    out_file: Annotated[Path, typer.Option("--out", "-o", help="Write the exported model here (transformer-lens: a safetensors file; hf: a folder).")],
    to: Annotated[str, typer.Option("--to", help="Target format: transformer-lens or hf (a Hugging Face GPT-2 folder).")] = "transformer-lens",
    force: Annotated[bool, typer.Option("--force", help="hf: replace the model a folder already holds.")] = False,
) -> None:
    """Export a GPT to TransformerLens (a HookedTransformer with our weights; needs [bold]pip install ntp-probe\\[interp][/]) or as a Hugging Face GPT-2 folder (--to hf)."""
    from .checkpoint import load

    if to == "hf":
        from .interop.hf import export_hf

        path = export_hf(load(model), out_file, force)
        err.print(f"exported {model} → {path}/ (transformers.AutoModelForCausalLM.from_pretrained reads it)", highlight=False,
                  markup=False)
        return
    from .export import FORMATS
    from .export import export as do_export

    if to not in FORMATS:
        raise UsageError(f"--to {to}: choose one of {', '.join((*FORMATS, 'hf'))}")
    path = do_export(load(model), to, out_file)
    err.print(f"exported {model} → {path} (load it with ntp_probe.export.load_hooked)", highlight=False)


# ------------------------------------------------------------------------------------------------
# import


@app.command("import")
@handle_errors
def import_cmd(
    source: Annotated[str, typer.Argument(help="next-token-failures: a checkpoint file of the paper's train.py; hf: a Hugging Face GPT-2 folder.")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Write the ntp-probe model into this folder (models/NAME: open it by NAME).")],
    source_kind: Annotated[str, typer.Option("--from", help="next-token-failures (gregorbachmann/Next-Token-Failures) or hf.")] = "next-token-failures",
    heads: Annotated[Optional[int], typer.Option("--heads", help="Attention heads (a state dict does not record them; train.py's --n_head).", rich_help_panel="Model")] = None,
    layers: Annotated[Optional[int], typer.Option("--layers", help="Check: the layers the checkpoint holds.", rich_help_panel="Model")] = None,
    d_model: Annotated[Optional[int], typer.Option("--d-model", help="Check: the checkpoint's width.", rich_help_panel="Model")] = None,
    degree: Annotated[Optional[int], typer.Option("--degree", "-d", help="Arms (d); default: read from the model's context.", rich_help_panel="Task")] = None,
    path_len: Annotated[Optional[int], typer.Option("--path-len", "-l", help="Path nodes (l); default: read from the model's context.", rich_help_panel="Task")] = None,
    nodes: Annotated[Optional[int], typer.Option("--nodes", "-n", "-N", help="Check: node ids (the vocabulary is N+4).", rich_help_panel="Task")] = None,
    objective: Annotated[Optional[str], typer.Option("--objective", help="next-token (default), teacherless or reverse; an ntp-probe export brings its own.", rich_help_panel="Task")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace the model --out already holds.")] = False,
) -> None:
    """Import a model trained elsewhere: a checkpoint of the paper's code, or a Hugging Face GPT-2 folder."""
    argv = ["import", *sys.argv[2:]] if len(sys.argv) > 1 and sys.argv[1] == "import" else None
    if source_kind == "next-token-failures":
        from .interop.ntf import import_checkpoint

        path = import_checkpoint(source, out_dir, heads, degree, path_len, nodes, objective or "next-token", layers,
                                 d_model, force, argv)
    elif source_kind == "hf":
        for flag, v in (("--heads", heads), ("--layers", layers), ("--d-model", d_model)):
            if v is not None:
                raise UsageError(f"{flag}: a Hugging Face folder's config.json says it; give it with --from next-token-failures only")
        from .interop.hf import import_hf

        path = import_hf(source, out_dir, degree, path_len, nodes, objective, force, argv)
    else:
        raise UsageError(f"--from {source_kind}: choose next-token-failures or hf")
    err.print(f"imported {source} → {path.parent}/ (open it with ntp-probe tui {path.parent}; measure it with ntp-probe "
              f"eval {path.parent})", highlight=False, markup=False)


from .cli_sweep import sweep_app  # noqa: E402  (it uses the app and its error handling above)

app.add_typer(sweep_app, name="sweep")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
