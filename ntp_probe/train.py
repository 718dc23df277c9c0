"""The training loop: fresh seeded graphs every step, AdamW with warm-up + cosine decay, periodic
held-out evaluation, atomic checkpoints, Ctrl-C saves, ``resume`` continues exactly.

Determinism: the batch and the dropout noise of step k depend only on (seed, rank, k), so an
interrupted and resumed run produces the same weights as an uninterrupted one.

Runs under ``torchrun`` with DistributedDataParallel when WORLD_SIZE > 1: each rank draws its own
seeded data stream, only rank 0 evaluates and writes.

Layout, top to bottom: ``validate`` (every option, before the disk is touched), ``Distributed``,
the run directory (``_make_out``, then the run's lock, then ``_prepare_out``), ``setup`` (model,
optimizer, data, resume) and ``loop`` (one screen: batch, loss, step, evaluate, checkpoint).
``train`` strings them together.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from . import checkpoint as ckpt
from . import limits, objectives, tracking
from .atomic import atomic_write_text, remove_stale_temps
from .archs import ARCHS
from .checkpoint import LoadedModel, TaskSpec
from .errors import NtpProbeError, UsageError, WriteError
from .evaluate import evaluate
from .limits import check_task_size
from .model import GPTConfig, assume_unpadded, skeleton
from .runfiles import KEPT_DIR, LOCK_FILE, METRICS_FILE, MODEL_FILE, PID_FILE, PROGRESS_FILE, STATE_FILE, TENSORBOARD_DIR, \
    TRACKER_FILE, WANDB_DIR, kept_files, kept_name
from .runs import RunLock, check_record
from .safejson import is_int
from .safejson import loads as safe_loads
from .task import GraphBatch, Topologies, generate_set, read_lines, shape_of, where, with_goals
from .tokenizer import Tokenizer


@dataclass
class TrainConfig:
    degree: int | list[int] = 2  # a list: a topology set (every degree with every path length)
    path_len: int | list[int] = 5
    nodes: int = 50
    objective: str = "next-token"
    future: int = 4  # heads for multi-token
    mix: float = 0.5  # hybrid: weight of the teacherless loss
    drop_rate: float = 0.5  # answer-dropout: probability of dropping an answer input (a row's span, in span mode)
    drop_mode: str = "token"  # answer-dropout: token, span or replace
    targets_per_graph: int = 1  # structured samples: each graph of a batch K times, with K different goals
    query_first: bool = False  # the question's layout: the query 's g /' before the edge list
    arch: str = "gpt"
    d_state: int = 16  # mamba: SSM state per channel
    expand: int = 2  # mamba: inner width = expand * d_model
    layers: int = 2
    d_model: int = 128
    heads: int = 4
    dropout: float = 0.0
    steps: int = 2000
    batch_size: int = 256
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup: int = 100
    weight_decay: float = 0.0
    beta2: float = 0.999  # AdamW's second-moment decay (torch's default; NextLat's benchmark uses 0.95)
    grad_clip: float = 1.0  # 0: no clipping (Bachmann & Nagarajan's train.py clips nothing)
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"  # auto (bf16 on CUDA and on CPUs with native bf16, else fp32) | fp32 | bf16
    eval_every: int = 250
    eval_count: int = 2000
    train_file: str | None = None
    file_order: str = "sample"  # --train-file: sample (seeded draws with replacement) or epochs (each graph once a pass)
    compile: bool = False  # torch.compile the training forward (the evaluations run eager)
    target_accuracy: float | None = None  # stop early once held-out greedy accuracy reaches this
    mask_question: bool = False  # mlm-u: mask the edge list's node ids too, at the same rate
    drop_masked: bool = False  # mlm-u: masked tokens are position-only queries that nothing attends to
    init_from: str | None = None  # warm start (curriculum): a trained model's weights, e.g. one on a smaller graph
    keep_checkpoints: bool = False  # keep every evaluation step's weights as kept/step-N.safetensors (RUN@STEP)
    tracker: str | None = None  # mirror the evaluations to wandb or tensorboard (ntp_probe.tracking)
    tracker_group: str | None = None  # the tracked run's group (a sweep: its directory's name)


Callback = Callable[[dict], None]
Objective = objectives.Objective


def make_objective(cfg: TrainConfig) -> objectives.Objective:
    """The run's objective; it takes its options from the settings of the same name (``future``, ``mix``, …)."""
    return objectives.get(cfg.objective, **asdict(cfg))


def lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))


def warm_start(model: torch.nn.Module, source: LoadedModel, nodes: int) -> dict:
    """Copy a trained model's weights into ``model`` (a curriculum step, e.g. G(2,5) → G(5,5)): every tensor of
    the same name and shape; position embeddings row by row where the context grew. Same architecture, width,
    depth and node ids required."""
    if source.task.nodes != nodes:
        raise UsageError(f"--init-from {source.display_name}: its node ids are 0..{source.task.nodes - 1}, this run's "
                         f"0..{nodes - 1}; the vocabularies must match")
    have, want = getattr(source.model.config, "activation", "gelu"), getattr(model.config, "activation", "gelu")
    if have != want:  # an imported model (interop/): its weights would compute another function here
        raise UsageError(f"--init-from {source.display_name}: its MLP's GELU is {have} (imported), a run trains with "
                         f"{want}; warm starts from imported models are not supported")
    src = source.model.state_dict()
    dst = model.state_dict()
    copied, partial, skipped = [], [], []
    for name, t in dst.items():
        w = src.get(name)
        if w is not None and w.shape == t.shape:
            t.copy_(w)
            copied.append(name)
        elif w is not None and name.endswith("wpe.weight") and w.shape[1:] == t.shape[1:]:
            n = min(w.shape[0], t.shape[0])
            t[:n].copy_(w[:n])
            partial.append(name)
        else:
            skipped.append(name)
    if skipped:
        raise UsageError(f"--init-from {source.display_name}: {len(skipped)} of {len(dst)} weights do not match (e.g. "
                         f"{skipped[0]}); use the same --arch, --layers, --d-model and --heads as that model")
    extra = [name for name in src if name not in dst]  # a deeper model: its extra layers would be dropped silently
    if extra:
        raise UsageError(f"--init-from {source.display_name}: it has {len(extra)} weights this model lacks (e.g. "
                         f"{extra[0]}); use the same --arch, --layers, --d-model and --heads as that model")
    return {"from": source.display_name, "copied": len(copied), "extended": partial}


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise UsageError(f"--device {name}: choose auto, cpu or cuda")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UsageError(f"--device {name}: choose auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        n = torch.cuda.device_count()
        raise UsageError(f"--device {name}: this machine has {n} CUDA device{'s' if n != 1 else ''} (cuda:0 to cuda:{n - 1})")
    return device


@functools.cache
def cpu_has_native_bf16() -> bool:
    """True where the CPU computes bf16 natively (x86 ``avx512_bf16`` or ``amx_bf16``): there bf16 autocast trains
    the small models ~1.75x faster than fp32 (benchmarks/amp_cpu.py). Elsewhere bf16 is emulated and slower."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    return "avx512_bf16" in flags or "amx_bf16" in flags
    except OSError:
        pass
    return False


def resolve_amp(device: torch.device, amp: str) -> str:
    """``auto`` → bf16 on CUDA and on CPUs with native bf16, fp32 elsewhere."""
    if amp not in ("auto", "fp32", "bf16"):
        raise UsageError(f"--amp {amp}: choose auto, fp32 or bf16")
    if amp == "auto":
        return "bf16" if device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16()) else "fp32"
    return amp


def autocast_ctx(device: torch.device, amp: str):
    if resolve_amp(device, amp) == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


class _StopFlag:
    """SIGINT, SIGTERM and SIGHUP (a closed terminal, ``kill``) set a flag checked between steps: the run saves a
    checkpoint and ends as with Ctrl-C. A second signal interrupts at once (``KeyboardInterrupt``)."""

    def __init__(self) -> None:
        self.set = False
        self._old: dict = {}

    def __enter__(self):
        if threading_main():
            self._old = {s: signal.signal(s, self._handle) for s in STOP_SIGNALS}
        return self

    def _handle(self, *_):
        self.set = True
        for s in self._old:
            signal.signal(s, signal.default_int_handler)

    def __exit__(self, *exc):
        for s, old in self._old.items():
            signal.signal(s, old)
        self._old = {}


def threading_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


class DataStream:
    """Batch of step k for a rank: fresh graphs, or a seeded sample of a training file.

    Every batch is drawn on the CPU with a CPU generator and then copied to ``device`` (page-locked, without blocking
    the host, on CUDA): the same seed gives the same graphs on every device, so a CUDA run sees a CPU run's data."""

    def __init__(self, cfg: TrainConfig, device: torch.device, rank: int = 0, graphs: list | None = None):
        self.cfg, self.target, self.rank = cfg, torch.device(device), rank
        self.device = torch.device("cpu")  # where batches are drawn
        self.tok = Tokenizer(cfg.nodes, cfg.query_first)
        self.topologies = Topologies.parse(cfg.degree, cfg.path_len, cfg.nodes)
        self.objective = make_objective(cfg)
        self.pool: GraphBatch | None = None
        if cfg.train_file:
            graphs = graphs if graphs is not None else read_lines(cfg.train_file, cfg.nodes)
            self.pool = GraphBatch.from_graphs(graphs).to(device)

    def generator(self, step: int) -> torch.Generator:
        g = torch.Generator(device=self.device)
        g.manual_seed((self.cfg.seed * 1_000_003 + self.rank * 7_919 + step) % (2**63 - 1))
        return g

    def epoch_indices(self, step: int, count: int) -> torch.Tensor:
        """``--file-order epochs``: the file's graphs in a seeded order, a new one each pass (the original code's
        ``DataLoader(shuffle=True)``); step k takes samples k·count … k·count + count − 1 of this rank's stream, so the
        batch of a step depends only on (seed, rank, step), as with sampling, and a resumed run continues exactly."""
        size, lo, hi = len(self.pool), step * count, (step + 1) * count
        parts = []
        while lo < hi:  # a batch that crosses a pass's end takes the next pass's first graphs
            e, at = divmod(lo, size)
            take = min(hi - lo, size - at)
            parts.append(self._order(e)[at : at + take])  # slices of the pass's order, made once a pass
            lo += take
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def _order(self, epoch: int) -> torch.Tensor:
        cached = getattr(self, "_cached_order", None)
        if cached is None or cached[0] != epoch:
            g = torch.Generator()
            g.manual_seed((self.cfg.seed * 1_000_003 + self.rank * 7_919 + 104_729 * (epoch + 1)) % (2**63 - 1))
            self._cached_order = (epoch, torch.randperm(len(self.pool), generator=g).to(self.device))
        return self._cached_order[1]

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        cfg, gen = self.cfg, self.generator(step)
        k = cfg.targets_per_graph
        count = cfg.batch_size // k  # structured samples: each graph k times, with k goals
        if self.pool is None:
            # a topology set: each graph's shape drawn uniformly (one shape: exactly generate(), as always)
            b = generate_set(self.topologies, cfg.nodes, count, generator=gen, device=self.device)
        elif cfg.file_order == "epochs":
            b = self.pool[self.epoch_indices(step, count)]
        else:
            idx = torch.randint(len(self.pool), (count,), generator=gen, device=self.device)
            b = self.pool[idx]
        if k > 1:
            b = with_goals(b, k, gen)
        q = self.tok.questions(b)
        x, y = self.objective.train_batch(q, self.objective.answer(b.path), self.tok.dollar, gen)
        if self.target.type == "cuda":
            return x.pin_memory().to(self.target, non_blocking=True), y.pin_memory().to(self.target, non_blocking=True)
        return x.to(self.target), y.to(self.target)


# ------------------------------------------------------------------------------------------------
# Setup: everything before the first step. Options are checked before the disk is touched; the run
# directory's lock is taken before anything in it is read, cleaned or deleted.


def validate(cfg: TrainConfig) -> Objective:
    """Check every option (pure: no disk, no allocation) and return the objective; else one UsageError."""
    L = limits
    topologies = Topologies.parse(cfg.degree, cfg.path_len, cfg.nodes)  # one shape: check_topology, as always
    check_task_size(topologies.max_degree, topologies.max_path_len, cfg.nodes)
    L.check_int("--steps", cfg.steps, 1, L.MAX_STEPS)
    L.check_int("--batch-size", cfg.batch_size, 1, L.MAX_BATCH)
    L.check_int("--eval-every", cfg.eval_every, 1, L.MAX_STEPS)
    L.check_count(cfg.eval_count, cfg.nodes, "--eval-count", topologies.max_degree * (topologies.max_path_len - 1))
    L.check_int("--warmup", cfg.warmup, 0, L.MAX_STEPS)
    L.check_int("--layers", cfg.layers, 1, L.MAX_LAYERS)
    L.check_int("--d-model", cfg.d_model, 8, L.MAX_D_MODEL)
    L.check_int("--heads", cfg.heads, 1, L.MAX_HEADS)
    L.check_int("--d-state", cfg.d_state, 1, L.MAX_D_STATE)
    L.check_int("--expand", cfg.expand, 1, L.MAX_EXPAND)
    L.check_int("--future", cfg.future, 1, L.MAX_FUTURE)
    L.check_seed(cfg.seed)
    L.check_float("--lr", cfg.lr, 0, 10, lo_open=True)
    L.check_float("--min-lr", cfg.min_lr, 0, 10)
    L.check_float("--weight-decay", cfg.weight_decay, 0, 10)
    L.check_float("--beta2", cfg.beta2, 0, 1, hi_open=True)
    L.check_float("--grad-clip", cfg.grad_clip, 0, 1e6)
    if cfg.file_order not in ("sample", "epochs"):
        raise UsageError(f"--file-order {cfg.file_order}: choose sample or epochs")
    if cfg.file_order == "epochs" and not cfg.train_file:
        raise UsageError("--file-order epochs: passes over a --train-file; give one (fresh graphs have no epochs)")
    L.check_float("--dropout", cfg.dropout, 0, 1, hi_open=True)
    L.check_float("--mix", cfg.mix, 0, 1)
    if cfg.target_accuracy is not None:
        L.check_float("--target-accuracy", cfg.target_accuracy, 0, 1)
    if cfg.d_model % cfg.heads:
        raise UsageError(f"--d-model {cfg.d_model} must be divisible by --heads {cfg.heads}")
    if cfg.arch not in ARCHS:
        raise UsageError(f"--arch {cfg.arch}: choose {' or '.join(ARCHS)}")
    if cfg.amp not in ("auto", "fp32", "bf16"):
        raise UsageError(f"--amp {cfg.amp}: choose auto, fp32 or bf16")
    objective = make_objective(cfg)
    L.check_int("--targets-per-graph", cfg.targets_per_graph, 1, topologies.max_degree)
    if cfg.targets_per_graph > 1:
        if topologies.mixed:
            raise UsageError(f"--targets-per-graph {cfg.targets_per_graph} needs one shape, not a set ({topologies.label()})")
        if cfg.batch_size % cfg.targets_per_graph:
            raise UsageError(f"--batch-size {cfg.batch_size} is not a multiple of --targets-per-graph {cfg.targets_per_graph}")
    tracking.check(cfg.tracker, cfg.tracker_group)  # a tracker that is not installed: one line, before anything starts
    if not objective.causal and cfg.arch != "gpt":
        raise UsageError(f"--objective {cfg.objective} needs bidirectional attention: use --arch gpt")
    if objective.gpt_only and cfg.arch != "gpt":
        raise UsageError(f"--objective {cfg.objective} {objective.gpt_only}: use --arch gpt")
    if topologies.mixed and not objective.mixed_shapes:
        raise UsageError(f"--objective {cfg.objective} trains on one shape only; a topology set "
                         f"({topologies.label()}) needs next-token, reverse or multi-token")
    if topologies.mixed and cfg.arch != "gpt":
        raise UsageError(f"--arch {cfg.arch} trains on one shape only (left padding would change its state); "
                         f"a topology set ({topologies.label()}) needs --arch gpt")
    with skeleton():  # count the parameters without allocating them
        params = sum(p.numel() for p in ckpt.build_model(model_config(cfg, objective)).parameters())
    if params > limits.MAX_PARAMS:
        raise UsageError(f"the model would have {params:,} parameters; at most {limits.MAX_PARAMS:,} (fewer --layers, "
                         "a smaller --d-model or --expand)")
    return objective


def check_train_file(graphs: list, topologies: Topologies) -> None:
    """Every graph of a ``--train-file`` must be of the run's shapes, as ``--degree``/``--path-len`` say: a bigger one
    does not fit the model's context, a smaller one would be trained on silently. Checked before the run is touched."""
    for i, g in enumerate(graphs):
        shape = shape_of(g)
        if shape is None or shape not in topologies:
            what = f"G{shape[0], shape[1]}".replace(" ", "") if shape else "not a path-star G(d,l)"
            raise UsageError(f"--train-file {where(graphs, i)}: a graph of {len(g.edges)} edges and a {len(g.path)}-node "
                             f"path ({what}), but the run trains on {topologies.label()}; give --degree/--path-len of "
                             "the file's shapes")


def task_spec(cfg: TrainConfig) -> TaskSpec:
    """The run's task: one shape, or a topology set (sized by its largest shape)."""
    return TaskSpec.of(Topologies.parse(cfg.degree, cfg.path_len, cfg.nodes), cfg.nodes, cfg.query_first)


def model_config(cfg: TrainConfig, objective: Objective) -> GPTConfig:
    task = task_spec(cfg)
    return GPTConfig(
        vocab_size=Tokenizer(cfg.nodes).vocab_size,
        block_size=task.seq_len + objective.extra_context,
        n_layer=cfg.layers,
        n_head=cfg.heads,
        n_embd=cfg.d_model,
        dropout=cfg.dropout,
        n_future=objective.heads,
        arch=cfg.arch,
        d_state=cfg.d_state,
        expand=cfg.expand,
        causal=objective.causal,
        **objective.model_fields(Tokenizer(cfg.nodes).dollar),
    )


@dataclass
class Distributed:
    """This process's place under ``torchrun`` (world 1 without it)."""

    world: int
    rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @staticmethod
    def start(device_name: str) -> Distributed:
        world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
        device = pick_device(device_name)
        if world > 1:
            import torch.distributed as dist

            if device.type == "cuda":
                device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
                torch.cuda.set_device(device)
            if not dist.is_initialized():
                dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return Distributed(world, rank, device)

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def any(self, flag: bool) -> bool:
        """True on every rank if it is true on one (a Ctrl-C on any rank stops them all)."""
        if self.world == 1:
            return flag
        t = torch.tensor([float(flag)], device=self.device)
        torch.distributed.all_reduce(t)
        return bool(t.item())

    def from_main(self, flag: bool) -> bool:
        if self.world == 1:
            return flag
        t = torch.tensor([float(flag)], device=self.device)
        torch.distributed.broadcast(t, 0)
        return bool(t.item())


RUN_FILES = (STATE_FILE, MODEL_FILE, METRICS_FILE)


# what a run killed (kill -9) before its first checkpoint leaves: nothing to resume, nothing to lose
LEFTOVERS = (LOCK_FILE, PID_FILE, PROGRESS_FILE, METRICS_FILE, TRACKER_FILE, TENSORBOARD_DIR, WANDB_DIR)


def _no_checkpoint(out: Path) -> bool:
    """True when ``out`` holds only what a run stopped before its first checkpoint leaves behind (or nothing)."""
    return all(p.name in LEFTOVERS or (p.name.startswith(".") and p.name.endswith(".tmp")) for p in out.iterdir())


def _no_state(out: Path) -> UsageError:
    if out.is_dir() and _no_checkpoint(out):
        return UsageError(f"--resume: {out} was stopped before its first checkpoint; there is nothing to resume: run "
                          "the same command without --resume")
    return UsageError(f"--resume: {out} has no {STATE_FILE} to resume from (start over with --force)")


def _make_out(out: Path, resume: bool) -> None:
    """The checks that need no lock, then ``mkdir`` (the lock file lives inside). Rank 0 only."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a directory")
    if resume and not (out / STATE_FILE).is_file():
        raise _no_state(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # e.g. a path through a file
        raise UsageError(f"--out {out}: cannot write there ({e.strerror or e})") from None


def _prepare_out(out: Path, resume: bool, force: bool) -> None:
    """Under the run's lock: sweep dead temp files, then check the run (resume) or clear it (force). Rank 0 only."""
    try:
        remove_stale_temps(out, (*RUN_FILES, PID_FILE, PROGRESS_FILE, TRACKER_FILE))  # left by a kill -9 mid-write
        for tmp in (out / KEPT_DIR).glob(".step-*.tmp"):  # a kept checkpoint's, likewise
            with contextlib.suppress(OSError):
                tmp.unlink()
        if resume:
            if not (out / STATE_FILE).is_file():
                raise _no_state(out)
            return
        if _no_checkpoint(out):  # killed before its first checkpoint: its log alone is cleared, as with --force
            (out / METRICS_FILE).unlink(missing_ok=True)
            tracking.clear(out)
        elif any(p.name not in (LOCK_FILE, PID_FILE) for p in out.iterdir()):
            if not force:
                raise UsageError(f"--out {out}: directory exists and is not empty; use --resume to continue or --force "
                                 "to overwrite")
            for name in RUN_FILES:
                with contextlib.suppress(FileNotFoundError):
                    (out / name).unlink()
            for kept in kept_files(out).values():  # the old run's kept steps are not this run's
                kept.unlink()
            tracking.clear(out)  # nor its tracked run
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:  # e.g. an unreadable directory
        raise UsageError(f"--out {out}: cannot write there ({e.strerror or e})") from None


def _check_resumable(out: Path, cfg: TrainConfig) -> None:
    saved = ckpt.read_state_meta(out / STATE_FILE).get("train", {})
    for key in ("degree", "path_len", "nodes", "objective", "future", "mix", "drop_rate", "drop_mode", "targets_per_graph",
                "query_first", "layers", "d_model", "heads", "arch", "seed", "batch_size"):
        if key in saved and saved[key] != getattr(cfg, key):
            raise UsageError(f"--resume: {key}={getattr(cfg, key)!r} differs from the run's {saved[key]!r}")


@dataclass
class Run:
    """Everything the loop needs, built by ``setup``."""

    cfg: TrainConfig
    out: Path
    dist: Distributed
    objective: Objective
    task: TaskSpec
    model: torch.nn.Module  # what the loop calls: DDP-wrapped under torchrun
    raw_model: torch.nn.Module  # what is saved and evaluated
    opt: torch.optim.Optimizer
    data: DataStream
    eval_set: GraphBatch
    amp: contextlib.AbstractContextManager
    precision: str  # what --amp resolved to: bf16 or fp32
    command: str | None = None
    tracker: tracking.Tracker | None = None  # rank 0, with --tracker: gets each evaluation's metrics record
    start_step: int = 0
    wall_before: float = 0.0
    loss_sum: float = 0.0  # the running loss since the last evaluation (restored on resume)
    loss_n: int = 0


def setup(cfg: TrainConfig, out: Path, objective: Objective, dist: Distributed, resume: bool, command: str | None,
          train_graphs: list | None = None, init: LoadedModel | None = None) -> Run:
    """Model, optimizer, data and held-out set; on resume, the checkpoint's state. The run is already locked."""
    device = dist.device
    if resume:
        _check_resumable(out, cfg)
    torch.manual_seed(cfg.seed)
    model = ckpt.build_model(model_config(cfg, objective)).to(device)
    if init is not None:  # on resume the checkpoint already holds the warm-started weights
        with torch.no_grad():
            warm_start(model, init, cfg.nodes)
    opt = make_optimizer(model, cfg, device)
    task = task_spec(cfg)
    run = Run(cfg, out, dist, objective, task, model, model, opt,
              DataStream(cfg, device, dist.rank, graphs=train_graphs),
              generate_set(task.topologies, cfg.nodes, cfg.eval_count, seed=cfg.seed + 999_983).to(device),  # drawn on the CPU: the same graphs on every device
              autocast_ctx(device, cfg.amp), resolve_amp(device, cfg.amp), command)
    if resume:
        state = ckpt.load_state(out / STATE_FILE, model, opt)
        run.start_step, run.wall_before = int(state["step"]), float(state.get("wall_time_s", 0.0))
        run.loss_sum, run.loss_n = float(state.get("loss_sum", 0.0)), int(state.get("loss_n", 0))
        if dist.is_main:
            _trim_metrics(out / METRICS_FILE, run.start_step)
            _trim_kept(out, run.start_step)
    if dist.world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        run.model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        run.model = torch.compile(run.model)  # the same parameters: raw_model is what is saved and evaluated
    return run


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """AdamW; on CUDA its fused kernel (one launch for every parameter). The CPU keeps torch's default, so CPU runs
    give the figures they always gave."""
    extra = {"fused": True} if device.type == "cuda" else {}
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, cfg.beta2), weight_decay=cfg.weight_decay, **extra)


def set_cuda_backends(device: torch.device) -> None:
    """On CUDA: TF32 for the fp32 matmuls and convolutions (the original code's settings), cuDNN's autotuner. The CPU
    is left as it is."""
    if device.type != "cuda":
        return
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True


def check_compile(device: torch.device) -> None:
    """``--compile`` needs TorchDynamo on this Python and a backend for the device (a C++ compiler on the CPU, Triton
    on CUDA): else one UsageError, before anything is written."""
    import shutil

    try:
        import torch._dynamo as dynamo

        supported = dynamo.is_dynamo_supported()
    except Exception:  # noqa: BLE001 - an import that fails on an odd build is the same answer
        supported = False
    if not supported:
        raise UsageError(f"--compile: torch {torch.__version__} cannot compile on this Python "
                         f"({sys.version_info.major}.{sys.version_info.minor}); train without --compile")
    if device.type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            raise UsageError("--compile: Triton is not installed (torch.compile's CUDA backend); pip install triton, "
                             "or train without --compile") from None
    elif not (os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")):
        raise UsageError("--compile: no C++ compiler found (torch.compile's CPU backend needs one); install g++, or "
                         "train without --compile")


def _trim_metrics(path: Path, upto_step: int) -> None:
    """Keep only complete metric lines up to the resumed step (drops torn and repeated lines)."""
    if not path.exists():
        return
    keep, seen = [], set()
    for line in path.read_text(errors="replace").splitlines():
        try:
            rec = safe_loads(line, max_depth=8)  # a line nested 100k deep is a ValueError here, not a RecursionError
        except ValueError:
            continue
        step = rec.get("step") if isinstance(rec, dict) else None
        if is_int(step) and 0 <= step <= upto_step and step not in seen and check_record(rec) is None:
            seen.add(step)
            keep.append(line)
    try:
        atomic_write_text(path, "".join(x + "\n" for x in keep))
    except OSError as e:
        raise WriteError(f"{path}: cannot rewrite the metrics log ({e.strerror or e}); it is unchanged") from None


def _trim_kept(out: Path, upto_step: int) -> None:
    """Keep the kept checkpoints up to the resumed step: a later one (saved before a kill, its state not) is
    written again, the same, when the resumed run gets there."""
    for step, path in kept_files(out).items():
        if step > upto_step:
            try:
                path.unlink()
            except OSError as e:
                raise WriteError(f"{path}: cannot remove a kept checkpoint past step {upto_step} ({e.strerror or e})") from None


def _append_metric(path: Path, rec: dict) -> None:
    """One whole line per evaluation: a line torn by a kill is dropped by ``_trim_metrics`` on resume."""
    try:
        with open(path, "a") as f:
            f.write(json.dumps(rec) + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise WriteError(f"{path}: cannot append step {rec['step']} ({e.strerror or e}); the checkpoint of the last "
                         "evaluation is intact, continue with --resume") from None


def save_checkpoint(run: Run, step: int, wall_s: float, metrics: dict, loss_sum: float, loss_n: int,
                    keep: bool = False) -> None:
    """``train_state`` (for --resume), the kept copy of an evaluation step (``keep``, with --keep-checkpoints: the
    same file as ``model.safetensors``, under ``kept/``), then ``model.safetensors``; each write atomic. Rank 0 only."""
    cfg, out = run.cfg, run.out
    device = run.dist.device
    summary = {
        "steps": step,
        "target_steps": cfg.steps,
        "wall_time_s": round(wall_s, 2),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "precision": run.precision,
        "world_size": run.dist.world,
        "tokens_seen": step * cfg.batch_size * run.dist.world * run.task.seq_len,
        "command": run.command,
    }
    train_meta = asdict(cfg)
    meta = ckpt.make_meta(run.raw_model, run.task, run.objective, training={**summary, "config": train_meta}, metrics=metrics)
    try:  # each write is atomic: on failure the file keeps its previous checkpoint
        ckpt.save_state(out / STATE_FILE, run.raw_model, run.opt, {"step": step, "wall_time_s": wall_s,
                                                                        "train": train_meta, "loss_sum": loss_sum,
                                                                        "loss_n": loss_n})
        if keep:
            (out / KEPT_DIR).mkdir(exist_ok=True)
            ckpt.save(out / KEPT_DIR / kept_name(step), run.raw_model, meta)
        ckpt.save(out / MODEL_FILE, run.raw_model, meta)
    except OSError as e:
        raise WriteError(f"{out}: cannot save the checkpoint of step {step} ({e.strerror or e}); the previous "
                         "checkpoint is intact, continue with --resume") from None


def held_out(run: Run) -> dict:
    """Greedy and teacher-forced accuracy on the run's fixed held-out graphs."""
    run.raw_model.eval()
    with run.amp:
        m = evaluate(LoadedModel(run.raw_model, run.task, run.objective, {}), run.eval_set)
    run.raw_model.train()
    return {k: m[k] for k in ("accuracy", "per_position", "forced_accuracy", "forced_per_position", "forced_after_decision",
                              "decision_accuracy", "by_topology") if k in m}  # by_topology: a topology set's run


# ------------------------------------------------------------------------------------------------
# The loop


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside torch.compile's and DDP's wrappers."""
    while True:
        inner = getattr(model, "_orig_mod", None) or getattr(model, "module", None)
        if not isinstance(inner, torch.nn.Module):
            return model
        model = inner


BUCKETS = 4  # a padded batch (a topology set) runs as this many groups of rows of similar length


def batch_loss(objective: Objective, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, amp,
               buckets: int = BUCKETS, padded: bool = True) -> torch.Tensor:
    """The step's loss. A batch of one shape: one pass, as always. A padded batch of several shapes (left-padded
    inputs): its rows sorted by length in ``buckets`` groups, each cut to its own longest row, so most of the
    padding is never computed (G(2..5, 3..6): 43 real tokens of 83 on average). The loss is the same (up to
    rounding): a graph's logits do not depend on its padding, and the groups' mean losses are weighted by their
    target counts (one output head; objectives with more heads take one pass). ``padded=False`` (a run of one
    shape) skips the padding check, a host sync on CUDA."""
    if not padded:
        with amp, assume_unpadded(unwrap(model)):
            logits = objective.train_logits(model, x)
        return objective.loss(logits, y)
    pad = (x < 0).cumprod(dim=1).sum(dim=1)  # left padding of each row
    if buckets <= 1 or objective.heads != 1 or not bool(pad.any()):
        with amp:
            logits = objective.train_logits(model, x)
        return objective.loss(logits, y)
    from .objectives import IGNORE

    order = pad.argsort(stable=True)
    total, count = 0.0, 0
    for rows in order.chunk(buckets):
        cut = int(pad[rows].min())
        xb, yb = x[rows, cut:], y[rows, cut:]
        n = int((yb != IGNORE).sum())
        if n == 0:
            continue
        with amp:
            logits = objective.train_logits(model, xb)
        total = total + objective.loss(logits, yb) * n
        count += n
    return total / count


SYNC_EVERY = 25  # CUDA: steps between reads of the running loss (each read waits for the device)


class LossMeter:
    """The running loss since the last evaluation. On the CPU each step's loss is added as a Python float, as it always
    was (same sums, same figures). On CUDA it is summed on the device and read (a host sync) only every
    ``SYNC_EVERY`` steps, at an evaluation and at a stop, so the host queues steps ahead of the GPU."""

    def __init__(self, loss_sum: float, loss_n: int, device: torch.device):
        self.on_device = device.type == "cuda"
        self.base_sum, self.base_n = loss_sum, loss_n
        self.acc = torch.zeros((), dtype=torch.float64, device=device) if self.on_device else None
        self.n = 0

    def add(self, loss: torch.Tensor) -> None:
        if self.on_device:
            self.acc += loss.detach().double()
        else:
            self.base_sum += loss.item()
        self.n += 1

    def due(self, step: int) -> bool:
        return not self.on_device or step % SYNC_EVERY == 0

    def read(self) -> tuple[float, int]:
        if not self.on_device:
            return self.base_sum, self.base_n + self.n
        return self.base_sum + float(self.acc.item()), self.base_n + self.n

    def reset(self) -> None:
        self.base_sum, self.base_n, self.n = 0.0, 0, 0
        if self.on_device:
            self.acc.zero_()


def loop(run: Run, lock: RunLock, emit: Callback, stop: _StopFlag | None = None) -> dict:
    cfg, model, opt, objective, dist = run.cfg, run.model, run.opt, run.objective, run.dist
    step, loss_sum, loss_n = run.start_step, run.loss_sum, run.loss_n
    emit({"event": "start", "step": step, "steps": cfg.steps, "device": str(dist.device), "params": run.raw_model.num_params(),
          "precision": run.precision})
    t_start = time.perf_counter()
    wall = lambda: run.wall_before + time.perf_counter() - t_start  # noqa: E731
    metrics: dict = {}
    interrupted = stopped_early = False
    meter = LossMeter(loss_sum, loss_n, dist.device)
    shown = loss_sum / loss_n if loss_n else float("nan")
    with contextlib.nullcontext(stop) if stop is not None else _StopFlag() as stop:
        model.train()
        while step < cfg.steps:
            for group in opt.param_groups:
                group["lr"] = lr_at(step, cfg)
            torch.manual_seed(cfg.seed * 1_000_003 + dist.rank * 7_919 + step + 1)  # dropout noise of this step
            x, y = run.data.batch(step)
            loss = batch_loss(objective, model, x, y, run.amp, padded=run.data.topologies.mixed)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            step += 1
            meter.add(loss)
            at_eval = step % cfg.eval_every == 0 or step == cfg.steps
            if at_eval or meter.due(step):  # on CUDA the loss is read every SYNC_EVERY steps, not every step
                loss_sum, loss_n = meter.read()
                shown = loss_sum / loss_n
            emit({"event": "step", "step": step, "loss": shown, "lr": opt.param_groups[0]["lr"]})
            lock.beat(step, wall(), shown)
            # under torchrun on CUDA the ranks agree on a stop every SYNC_EVERY steps (an all-reduce waits for the GPU)
            halt = dist.any(stop.set) if dist.world == 1 or at_eval or meter.due(step) else False
            if halt:
                loss_sum, loss_n = meter.read()
            if at_eval and dist.is_main:
                metrics = held_out(run)
                rec = {"step": step, "loss": loss_sum / loss_n, "lr": opt.param_groups[0]["lr"], **metrics,
                       "eval_count": cfg.eval_count, "wall_time_s": round(wall(), 3)}
                _append_metric(run.out / METRICS_FILE, rec)
                if run.tracker is not None:  # the same record, host numbers only: no device sync added
                    run.tracker.log(rec)
                emit({"event": "eval", **rec})
                loss_sum, loss_n = 0.0, 0
                meter.reset()
                stopped_early = cfg.target_accuracy is not None and metrics["accuracy"] >= cfg.target_accuracy
            if at_eval and cfg.target_accuracy is not None:
                stopped_early = dist.from_main(stopped_early)
            if (at_eval or halt or stopped_early) and dist.is_main:
                save_checkpoint(run, step, wall(), metrics, loss_sum, loss_n, keep=at_eval and cfg.keep_checkpoints)
                emit({"event": "save", "step": step})
            if halt or stopped_early:
                interrupted = halt
                break
    return {"step": step, "steps": cfg.steps, "interrupted": interrupted, "stopped_early": stopped_early,
            "wall_time_s": wall(), "metrics": metrics, "out": str(run.out)}


def train(
    cfg: TrainConfig,
    out: str | Path,
    resume: bool = False,
    force: bool = False,
    callback: Callback | None = None,
    command: str | None = None,
) -> dict:
    """Train and return a summary. Writes ``model.safetensors``, ``train_state.safetensors``, ``metrics.jsonl``.

    Order matters: every option and input file is checked first (nothing on disk changes if one is wrong);
    then rank 0 creates the run directory and takes its lock before it reads, cleans or clears anything."""
    out = Path(out)
    objective = validate(cfg)
    train_graphs = read_lines(cfg.train_file, cfg.nodes) if cfg.train_file else None
    if train_graphs is not None:
        check_train_file(train_graphs, Topologies.parse(cfg.degree, cfg.path_len, cfg.nodes))
    init = ckpt.load(cfg.init_from) if cfg.init_from and not resume else None
    if init is not None:  # does it fit? checked on a meta-device skeleton, before the run is touched
        with skeleton(), torch.no_grad():
            warm_start(ckpt.build_model(model_config(cfg, objective)), init, cfg.nodes)
    if cfg.compile:
        check_compile(pick_device(cfg.device))
    dist = Distributed.start(cfg.device)
    set_cuda_backends(dist.device)
    about = {k: getattr(cfg, k) for k in ("objective", "degree", "path_len", "nodes", "arch", "steps", "eval_every")}
    if dist.is_main:
        _make_out(out, resume)
    # the stop signals are caught from here on: one during set-up stops the run after its first step, saved
    with _StopFlag() as stop, RunLock(out, dist.is_main, about) as lock:  # taken before the run is read or changed
        if dist.is_main:
            _prepare_out(out, resume, force)
        dist.barrier()
        run = setup(cfg, out, objective, dist, resume, command, train_graphs, init)
        emit = callback if (callback and dist.is_main) else (lambda e: None)
        with open_tracker(run, resume) as run.tracker:
            summary = loop(run, lock, emit, stop)
        if run.tracker is not None:
            summary["tracker"] = run.tracker.where
    dist.barrier()
    emit({"event": "done", **summary})
    return summary


@contextlib.contextmanager
def open_tracker(run: Run, resume: bool):
    """The run's tracker (``--tracker``; rank 0 only; None without one), closed (flushed, its run ended) however the
    loop ends. Opened once the run is set up, before its first step: a resumed run continues its tracked run."""
    cfg = run.cfg
    if cfg.tracker is None or not run.dist.is_main:
        yield None
        return
    config = {**asdict(cfg), "command": run.command, "run": str(run.out), "params": run.raw_model.num_params(),
              "precision": run.precision, "world_size": run.dist.world}
    tracker = tracking.start(cfg.tracker, run.out, config, resume, run.start_step, run.wall_before, cfg.tracker_group)
    try:
        yield tracker
    finally:
        tracker.close()


def run_command_line() -> str:
    return "ntp-probe " + " ".join(_quote(a) for a in sys.argv[1:])


def _quote(a: str) -> str:
    import shlex

    return shlex.quote(a)


__all__ = ["TrainConfig", "train", "NtpProbeError"]
