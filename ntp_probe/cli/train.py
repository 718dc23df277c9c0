"""``ntp-probe train``, and ``train_config``: train's options -> ``TrainConfig`` (shared with ``sweep``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .. import objectives
from ._common import ArchOpt, DegreeOpt, DeviceOpt, DStateOpt, ExpandOpt, NodesOpt, PathLenOpt, ThreadsOpt, err, \
    SHIPPED_DATA, handle_errors, one_or_set, set_threads


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
    train_file: Annotated[Optional[Path], typer.Option("--train-file", help="Sample batches from this file instead of fresh graphs." + SHIPPED_DATA, rich_help_panel="Task")] = None,
    file_order: Annotated[str, typer.Option("--file-order", help="--train-file: sample (seeded draws) or epochs (each graph once a pass, reshuffled every pass).", rich_help_panel="Task")] = "sample",
    steps: Annotated[int, typer.Option("--steps", help="Optimizer steps.", rich_help_panel="Optimiser")] = 2000,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", help="Graphs per step (per process).", rich_help_panel="Optimiser")] = 256,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate (AdamW).", rich_help_panel="Optimiser")] = 1e-3,
    min_lr: Annotated[float, typer.Option("--min-lr", help="Learning rate at the end of the cosine decay.", rich_help_panel="Optimiser")] = 1e-4,
    warmup: Annotated[int, typer.Option("--warmup", help="Linear warm-up steps.", rich_help_panel="Optimiser")] = 100,
    weight_decay: Annotated[float, typer.Option("--weight-decay", help="AdamW weight decay.", rich_help_panel="Optimiser")] = 0.0,
    beta2: Annotated[float, typer.Option("--beta2", help="AdamW's second-moment decay β2.", rich_help_panel="Optimiser")] = 0.999,
    grad_clip: Annotated[float, typer.Option("--grad-clip", help="Clip the gradient norm to this (0: no clipping).", rich_help_panel="Optimiser")] = 1.0,
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
    compile_: Annotated[bool, typer.Option("--compile", help="torch.compile the training step's model (needs a C++ compiler on the CPU, Triton on CUDA).")] = False,
    keep_checkpoints: Annotated[bool, typer.Option("--keep-checkpoints", help="Keep the weights of every evaluation step in --out/kept/ (open one as RUN@STEP; replay them in the app with , and .).")] = False,
    tracker: Annotated[Optional[str], typer.Option("--tracker", help="Mirror each evaluation (loss, lr, s/step, held-out accuracy per position) and the run's config to wandb or tensorboard (optional extras: pip install 'ntp-probe\\[wandb]'); --resume continues the same tracked run.", rich_help_panel="Tracking")] = None,
    tracker_group: Annotated[Optional[str], typer.Option("--tracker-group", help="The tracked run's group (wandb; a sweep sets its directory's name).", rich_help_panel="Tracking")] = None,
    threads: ThreadsOpt = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out where it stopped.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing run in --out.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar; one line per evaluation.")] = False,
) -> None:
    """Train a model on G(d, l). Ctrl-C saves a checkpoint and exits 0; [bold]--resume[/] continues exactly."""
    from ..train import run_command_line, train as run_train

    set_threads(threads)
    cfg = train_config(locals())
    from ..progress import TrainProgress

    with TrainProgress(err, quiet=quiet or not err.is_terminal) as progress:
        summary = run_train(cfg, out_dir, resume=resume, force=force, callback=progress, command=run_command_line())
    import os

    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun only rank 0 reports
        return
    m = summary["metrics"]
    state = "interrupted, saved" if summary["interrupted"] else ("target reached" if summary["stopped_early"] else "done")
    acc = f" greedy accuracy {m['accuracy']:.3f}, decision {m['decision_accuracy']:.3f}" if m else ""
    err.print(f"{state}: step {summary['step']}/{summary['steps']} in {summary['wall_time_s']:.1f}s;{acc} → {out_dir}")
    if summary.get("tracker"):
        err.print(f"tracked: {summary['tracker']}", highlight=False, markup=False)


def train_config(params: dict):
    """The TrainConfig of train's parsed options (its parameter names): the one mapping, shared with ``sweep``."""
    from ..task import Topologies
    from ..train import TrainConfig

    p = params
    degree, path_len = Topologies.parse(one_or_set(p["degree"]), one_or_set(p["path_len"]), p["nodes"]).to_option()
    names = ("nodes", "objective", "future", "mix", "drop_rate", "drop_mode", "targets_per_graph", "query_first", "arch", "d_state", "expand", "layers", "d_model", "heads", "dropout",
             "steps", "batch_size", "lr", "min_lr", "warmup", "weight_decay", "seed", "device", "amp", "eval_every",
             "eval_count", "target_accuracy", "init_from", "mask_question", "drop_masked", "keep_checkpoints", "tracker",
             "tracker_group", "beta2", "grad_clip", "file_order")
    return TrainConfig(degree=degree, path_len=path_len, train_file=str(p["train_file"]) if p["train_file"] else None,
                       compile=p["compile_"], **{k: p[k] for k in names})
