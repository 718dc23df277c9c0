"""What both importers share: the task a model's vocabulary and context tell (and what is asked for), the objective
checked against the network, and writing the ntp-probe model (``model.safetensors`` with its header, a card)."""

from __future__ import annotations

import shlex
from pathlib import Path

import torch

from .. import checkpoint as ckpt
from ..atomic import atomic_write_text
from ..cards import architecture
from ..errors import ModelFileError, UsageError
from ..model import GPTConfig
from ..objectives import get as get_objective
from ..objectives.base import Objective
from ..task import GraphError, check_topology

SPECIALS = 4  # '|', '=', '/', '$' after the N node ids: the original's numeral tokenizer, and ours
BPE_VOCABS = (50257, 50304)  # GPT-2's BPE vocabulary (the original's --model gpt2 / pythia), and it padded to 64


def shape_label(d: int, l: int) -> str:  # noqa: E741 - the paper's letters
    return f"G({d},{l})"


def nodes_of(vocab_size: int, nodes: int | None, where: str) -> int:
    """N from a vocabulary of N + 4 tokens; ``nodes`` (-N), when given, must agree."""
    if vocab_size in BPE_VOCABS:
        raise ModelFileError(f"{where}: a vocabulary of {vocab_size:,} tokens is GPT-2's BPE (the original's --model gpt2 "
                             f"or pythia), not the numeral tokenizer of N+{SPECIALS} tokens that ntp-probe reads")
    if vocab_size < SPECIALS + 3:
        raise ModelFileError(f"{where}: a vocabulary of {vocab_size} tokens leaves {max(vocab_size - SPECIALS, 0)} node ids "
                             f"after the {SPECIALS} specials; a path-star graph needs at least 3")
    n = vocab_size - SPECIALS
    if nodes is not None and nodes != n:
        raise ModelFileError(f"{where}: its vocabulary of {vocab_size} tokens is N={n} nodes + {SPECIALS} specials, "
                             f"not -N {nodes}")
    return n


def infer_task(block_size: int, nodes: int, degree: int | None, path_len: int | None, objective: Objective,
               where: str) -> ckpt.TaskSpec:
    """The task: -d and -l when both are given, else the G(d, l) whose original training sequence is exactly
    ``block_size`` tokens long (asking for -d or -l when several are, or none)."""
    if degree is not None and path_len is not None:
        d, l = degree, path_len  # noqa: E741
    else:
        fits = []  # the shapes whose original training sequence is exactly the context
        for d in range(1, block_size):
            num, den = block_size - 3 + 3 * d, 3 * d + 1  # 3d(l-1) + 3 + l = block_size
            l = num // den  # noqa: E741
            if num % den or l < 2 or (degree is not None and d != degree) or (path_len is not None and l != path_len):
                continue
            fits.append((d, l))
        shapes = [s for s in fits if s[0] * (s[1] - 1) + 1 <= nodes]  # check_topology's bound
        given = "".join(f" and {flag} {v}" for flag, v in (("-d", degree), ("-l", path_len)) if v is not None)
        if len(fits) == 1 and not shapes:
            shapes = fits  # the one shape its context says: check_topology below says why N is too few
        if not shapes:
            raise UsageError(f"{where}: no path-star graph over N={nodes} nodes{given} has a training sequence (question + "
                             f"answer) of exactly its context of {block_size} tokens; give -d and -l")
        if len(shapes) > 1:
            fits = ", ".join(shape_label(*s) for s in shapes[:6]) + (" …" if len(shapes) > 6 else "")
            raise UsageError(f"{where}: its context of {block_size} tokens fits {fits}; say which with -d (or -l)")
        d, l = shapes[0]  # noqa: E741
    try:
        check_topology(d, l, nodes)
    except GraphError as e:
        raise ModelFileError(f"{where}: {e} (its vocabulary holds N={nodes} node ids)") from None
    spec = ckpt.TaskSpec(d, l, nodes)
    need = spec.seq_len + objective.extra_context
    if block_size < need:
        raise ModelFileError(f"{where}: its context of {block_size} positions is shorter than the {need} input tokens "
                             f"of {shape_label(d, l)}")
    return spec


def gpt_objective(name: str, allowed: tuple[str, ...] | None, where: str) -> Objective:
    """The objective ``name``, which a causal, one-head GPT must be able to hold."""
    if allowed is not None and name not in allowed:
        raise UsageError(f"--objective {name}: {where} trains {', '.join(allowed)} only")
    obj = get_objective(name)
    defaults = GPTConfig(vocab_size=5, block_size=2)
    if obj.heads != 1 or not obj.causal or any(getattr(defaults, k) != v for k, v in obj.model_fields(0).items()):
        raise UsageError(f"--objective {name}: its network is not a causal GPT with one output head "
                         f"({where} holds one)")
    return obj


def check_out(out: Path, force: bool, names: tuple[str, ...] = (ckpt.MODEL_FILE,), source: Path | None = None) -> None:
    """--out DIR may be new, or a directory; one already holding a model is replaced only with --force, and never
    the folder the model is read from (``source``: a file in it, or the file itself)."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: is a file, not a directory")
    if source is not None and out.exists():
        src = Path(source).resolve()
        if out.resolve() in (src, src.parent):
            raise UsageError(f"--out {out}: is where the model is read from; write it to another folder")
    held = [n for n in names if (out / n).exists()]
    if held and not force:
        raise UsageError(f"--out {out}: already holds {held[0]}; give --force to replace it")


def write_model(out: Path, model: torch.nn.Module, meta: dict, card: str) -> Path:
    """``out/model.safetensors`` (its header ``meta``) and ``out/README.md`` (the card); the written model is then read
    back as every command reads it."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / ckpt.MODEL_FILE
    ckpt.save(path, model, meta)
    atomic_write_text(out / "README.md", card)
    ckpt.load_file(path)
    return path


def command_line(argv: list[str] | None) -> str:
    return "ntp-probe " + " ".join(shlex.quote(a) for a in argv) if argv else "(not recorded)"


def imported_card(out: Path, model: torch.nn.Module, task: ckpt.TaskSpec, objective: Objective, source: list[str],
                  command: str, notes: list[str] = ()) -> str:
    """The card of an imported model: what it is, where it came from, how it was mapped, how to measure it."""
    lines = [
        f"# {out.name}",
        "",
        f"A {architecture(model.config.to_dict())} trained with the **{objective.name}** objective on path-star graphs "
        f"{task.label()} (answer in {objective.answer_order} order), imported into ntp-probe.",
        "",
        "## Source",
        "",
        *source,
        "",
        "Imported with:",
        "",
        "```bash",
        command,
        "```",
        "",
        f"- parameters: {model.num_params():,}",
        *notes,
        "",
        "## Figures",
        "",
        "Not measured at import. Measure them with:",
        "",
        "```bash",
        f"ntp-probe eval {shlex.quote(str(out))} --json",
        "```",
        "",
    ]
    return "\n".join(lines)

