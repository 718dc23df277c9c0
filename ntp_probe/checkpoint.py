"""Model files: ``model.safetensors`` with the config, task and objective in its metadata header.

No pickles anywhere: weights, optimizer state and RNG state are all safetensors. Every write is
atomic (``atomic.py``: temp file in the same directory, fsync, rename).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_model as st_load_model
from safetensors.torch import save_file, save_model

from .atomic import atomic_write, atomic_write_text  # noqa: F401 - re-exported for older imports
from .errors import ModelFileError, NtpProbeError
from .model import GPT, GPTConfig
from .archs import ARCHS
from .objectives import Objective, from_meta as objective_from_meta
from .safejson import is_int, is_real
from .safejson import loads as safe_loads
from .task import MAX_SHAPES, Topologies
from .tokenizer import Tokenizer

FORMAT = "ntp-probe/1"
LAYOUTS = ("edges-first", "query-first")  # the question's token order (TaskSpec.query_first)
META_KEY = "ntp_probe"
MODEL_FILE = "model.safetensors"
STATE_FILE = "train_state.safetensors"


@dataclass(frozen=True)
class TaskSpec:
    """What a model was trained on. One shape G(degree, path_len), or a topology set (``degrees`` × ``path_lens``,
    then ``degree`` and ``path_len`` are the set's largest: they size the context)."""

    degree: int
    path_len: int
    nodes: int
    degrees: tuple[int, ...] = ()  # a topology set (empty: the one shape above)
    path_lens: tuple[int, ...] = ()
    query_first: bool = False  # the question's layout: 's g / edges =' instead of 'edges / s g =' (header "layout")

    @staticmethod
    def of(topologies: Topologies, nodes: int, query_first: bool = False) -> TaskSpec:
        if not topologies.mixed:
            return TaskSpec(topologies.degrees[0], topologies.path_lens[0], nodes, query_first=query_first)
        return TaskSpec(topologies.max_degree, topologies.max_path_len, nodes, topologies.degrees, topologies.path_lens,
                        query_first)

    @property
    def topologies(self) -> Topologies:
        return Topologies(self.degrees or (self.degree,), self.path_lens or (self.path_len,))

    @property
    def mixed(self) -> bool:
        return self.topologies.mixed

    def answer_len(self, path_len: int) -> int:
        """How many answer tokens to decode for a graph whose path has ``path_len`` nodes: its own in a topology
        set's model, the model's one length otherwise (as always)."""
        return path_len if self.mixed else self.path_len

    def to_meta(self) -> dict:
        meta = {"degree": self.degree, "path_len": self.path_len, "nodes": self.nodes}
        if self.mixed:
            meta.update(degrees=list(self.degrees), path_lens=list(self.path_lens))
        if self.query_first:  # the default layout writes nothing: older files and readers unchanged
            meta["layout"] = "query-first"
        return meta

    @staticmethod
    def from_meta(task: dict) -> TaskSpec:
        """The header's task; ``degrees``/``path_lens`` lists (a topology set) are optional."""
        spec = TaskSpec(**{k: int(task[k]) for k in ("degree", "path_len", "nodes")})
        if "degrees" in task or "path_lens" in task:
            sets = {}
            for key in ("degrees", "path_lens"):
                v = task.get(key)
                if not isinstance(v, list) or not v or not all(isinstance(x, int) and not isinstance(x, bool) for x in v):
                    raise ValueError(f"task {key} must be a non-empty list of integers")
                sets[key] = tuple(sorted(set(v)))
            spec = TaskSpec(spec.degree, spec.path_len, spec.nodes, sets["degrees"], sets["path_lens"])
            if (max(spec.degrees), max(spec.path_lens)) != (spec.degree, spec.path_len):
                raise ValueError("task degree/path_len must be the largest of degrees/path_lens")
            if min(spec.degrees) < 1 or min(spec.path_lens) < 2:
                raise ValueError("task degrees must be ≥ 1 and path_lens ≥ 2")
        if task.get("layout", "edges-first") not in LAYOUTS:
            raise ValueError(f"task layout must be one of {', '.join(LAYOUTS)}")
        if task.get("layout") == "query-first":
            spec = dataclasses.replace(spec, query_first=True)
        return spec

    @property
    def num_edges(self) -> int:
        return self.degree * (self.path_len - 1)

    @property
    def question_len(self) -> int:
        return Tokenizer.question_len(self.num_edges)

    @property
    def seq_len(self) -> int:
        """Model input length: question + answer - 1."""
        return self.question_len + self.path_len - 1

    def label(self) -> str:
        return f"{self.topologies.label()} N={self.nodes}"


@dataclass
class LoadedModel:
    """A model ready to use: the network, its task, objective and tokenizer, and the file's metadata."""

    model: torch.nn.Module
    task: TaskSpec
    objective: Objective
    meta: dict
    path: Path | None = None
    name: str | None = None

    @property
    def tokenizer(self) -> Tokenizer:
        return Tokenizer(self.task.nodes, self.task.query_first)

    @property
    def arch(self) -> str:
        return self.meta.get("config", {}).get("arch", "gpt")

    @property
    def display_name(self) -> str:
        return self.name or (str(self.path) if self.path else "model")


# ------------------------------------------------------------------------------------------------
# Model files


def build_model(config: GPTConfig) -> torch.nn.Module:
    if config.arch == "gpt":
        if config.bst:
            from .bst import BST

            return BST(config)
        return GPT(config)
    if config.bst:
        raise ModelFileError(f"a belief state transformer (bst) is built of GPTs, not of the {config.arch!r} architecture")
    if config.arch == "mamba":
        from .mamba import Mamba

        return Mamba(config)
    raise ModelFileError(f"unknown architecture {config.arch!r}")


def make_meta(model: torch.nn.Module, task: TaskSpec, objective: Objective, **extra) -> dict:
    return {
        "format": FORMAT,
        "config": model.config.to_dict(),
        "task": task.to_meta(),
        "objective": objective.to_meta(),
        **extra,
    }


def save(path: str | Path, model: torch.nn.Module, meta: dict) -> None:
    """Save weights (tied embeddings handled by ``save_model``) with ``meta`` as JSON in the header."""
    model = getattr(model, "module", model)  # unwrap DDP
    model = getattr(model, "_orig_mod", model)  # unwrap torch.compile

    def write(tmp: str) -> None:
        save_model(model, tmp, metadata={META_KEY: json.dumps(meta)})

    atomic_write(Path(path), write)


def read_meta(path: Path) -> dict:
    """The ntp-probe metadata of a safetensors file, or a ModelFileError saying what is wrong."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such file") from None
    if size == 0:
        raise ModelFileError(f"{path}: empty file (zero bytes), not a model")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        first = str(e).splitlines()[0] if str(e) else e.__class__.__name__
        raise ModelFileError(f"{path}: not a readable safetensors file ({first})") from None
    if META_KEY not in header:
        raise ModelFileError(f"{path}: a safetensors file, but not an ntp-probe model (no '{META_KEY}' metadata)")
    try:
        meta = safe_loads(header[META_KEY])
    except json.JSONDecodeError:
        raise ModelFileError(f"{path}: the ntp-probe metadata is not valid JSON") from None
    except ValueError as e:  # nested too deep, too long, a 5,000-digit number
        raise ModelFileError(f"{path}: the ntp-probe metadata is not valid JSON ({_first_line(e)[:80]})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        fmt = meta.get("format") if isinstance(meta, dict) else meta
        raise ModelFileError(f"{path}: unsupported model format {_shown(fmt)}")
    for key in ("config", "task", "objective"):
        if not isinstance(meta.get(key), dict):
            raise ModelFileError(f"{path}: the metadata has no '{key}' section")
    check_meta(path, meta)
    return meta


def _shown(x) -> str:
    text = repr(x)
    return text if len(text) <= 40 else text[:40] + "…"


# every size a config may hold; the tensors pin each one down, these bounds only keep messages and checks sane
CONFIG_INTS = {"vocab_size": 5, "block_size": 2, "n_layer": 1, "n_head": 1, "n_embd": 1, "n_future": 1,
               "d_state": 1, "d_conv": 1, "expand": 1}  # name -> smallest valid value
CONFIG_REQUIRED = ("vocab_size", "block_size", "n_layer", "n_head", "n_embd")
FIGURES = ("accuracy", "decision_accuracy", "forced_accuracy", "forced_after_decision", "clever_hans_rate", "steps")
MAX_SIZE = 1 << 24  # no field of a model that fits in memory is larger (block_size of a Mamba included)


def check_meta(path: Path, meta: dict) -> None:
    """Types and ranges of the task, objective and config sections, before any tensor is looked at."""
    task, obj, cfg = meta["task"], meta["objective"], meta["config"]

    def bad(section: str, key: str, why: str):
        return ModelFileError(f"{path}: the metadata's {section} is wrong ({key} {_shown(section_of[section].get(key))}: {why})")

    section_of = {"task": task, "objective": obj, "config": cfg}
    for key in ("degree", "path_len", "nodes"):
        if key not in task:
            raise ModelFileError(f"{path}: the metadata's task has no '{key}'")
        if not is_int(task[key]) or not abs(task[key]) <= MAX_SIZE:  # below 1: check_topology says why it is impossible
            raise bad("task", key, f"not a whole number in 1..{MAX_SIZE:,}")
    for key in ("degrees", "path_lens"):  # a topology set's shapes (optional)
        v = task.get(key)
        if key in task and (not isinstance(v, list) or not 0 < len(v) <= MAX_SHAPES
                            or not all(is_int(x) and 1 <= x <= MAX_SIZE for x in v)):
            raise bad("task", key, f"not a list of 1 to {MAX_SHAPES} whole numbers in 1..{MAX_SIZE:,}")
    if not isinstance(obj.get("name"), str):
        raise ModelFileError(f"{path}: the metadata's objective has no name")
    if "n_future" in obj and (not is_int(obj["n_future"]) or not 0 < obj["n_future"] <= MAX_SIZE):
        raise bad("objective", "n_future", f"not a whole number in 1..{MAX_SIZE:,}")
    if "drop_masked" in obj and not isinstance(obj["drop_masked"], bool):
        raise bad("objective", "drop_masked", "not true or false")
    if "mix" in obj and (not is_real(obj["mix"]) or not 0.0 <= obj["mix"] <= 1.0):  # hybrid: NaN fails too
        raise bad("objective", "mix", "not a number in [0, 1]")
    if "drop_rate" in obj and (not is_real(obj["drop_rate"]) or not 0.0 <= obj["drop_rate"] <= 1.0):  # answer-dropout
        raise bad("objective", "drop_rate", "not a number in [0, 1]")
    if "drop_mode" in obj and obj["drop_mode"] not in ("token", "span", "replace"):
        raise bad("objective", "drop_mode", "not token, span or replace")
    for key in CONFIG_REQUIRED:
        if key not in cfg:
            raise ModelFileError(f"{path}: the metadata's config has no '{key}'")
    for key, low in CONFIG_INTS.items():
        if key in cfg and (not is_int(cfg[key]) or not low <= cfg[key] <= MAX_SIZE):
            raise bad("config", key, f"not a whole number in {low}..{MAX_SIZE:,}")
    if "hidden_token" in cfg and (not is_int(cfg["hidden_token"]) or not -1 <= cfg["hidden_token"] < cfg["vocab_size"]):
        raise bad("config", "hidden_token", "not -1 or a token id")
    if "dropout" in cfg and (not is_real(cfg["dropout"]) or not 0.0 <= cfg["dropout"] < 1.0):
        raise bad("config", "dropout", "not a number in [0, 1)")
    for key in ("bias", "causal", "bst"):
        if key in cfg and not isinstance(cfg[key], bool):
            raise bad("config", key, "not true or false")
    if "arch" in cfg and (not isinstance(cfg["arch"], str) or cfg["arch"] not in ARCHS):
        raise ModelFileError(f"{path}: unknown architecture {_shown(cfg['arch'])}")
    for section in ("card", "metrics", "training"):  # what `models`, reports and cards show: objects of numbers
        info = meta.get(section)
        if info is None:
            continue
        if not isinstance(info, dict):
            raise ModelFileError(f"{path}: the metadata's {section} is {_shown(info)}, not an object")
        for key in FIGURES:
            if info.get(key) is not None and not is_real(info[key]):
                raise ModelFileError(f"{path}: the metadata's {section} is wrong ({key} {_shown(info[key])}: not a number)")
    if cfg.get("arch", "gpt") == "gpt" and cfg["n_embd"] % cfg["n_head"]:  # a Mamba has no heads
        raise ModelFileError(f"{path}: cannot build the model from its config (n_embd {cfg['n_embd']} must be divisible "
                             f"by n_head {cfg['n_head']})")


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0][:200] if lines else e.__class__.__name__


def _check_shapes(path: Path, config: GPTConfig) -> None:
    """Compare the file's tensor shapes (read from the header) with the config's, building only a meta-device skeleton."""
    try:
        with safe_open(str(path), framework="pt") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ModelFileError(f"{path}: not a readable safetensors file ({_first_line(e)})") from None
    # count the repeated modules first: the skeleton below is free in memory but not in time (a header
    # saying a million layers or heads must not make us build a million blocks)
    layers = len({k.split(".")[1] for k in shapes if k.startswith("blocks.")})
    if config.n_layer != layers:
        raise ModelFileError(f"{path}: tensors do not match the config (n_layer {config.n_layer!r}, the file holds {layers})")
    heads = len({k.split(".")[1] for k in shapes if k.startswith("future.")})
    if config.n_future - 1 != heads:
        raise ModelFileError(f"{path}: tensors do not match the config (n_future {config.n_future!r}, the file holds "
                             f"{heads + 1} output heads)")
    try:
        with torch.device("meta"):
            skeleton = build_model(config)
    except ModelFileError as e:
        raise ModelFileError(f"{path}: {e}") from None
    except Exception as e:  # noqa: BLE001 - any bad field is one message
        raise ModelFileError(f"{path}: cannot build the model from its config ({_first_line(e)})") from None
    for k, t in skeleton.state_dict().items():
        if k in shapes and tuple(t.shape) != shapes[k]:
            raise ModelFileError(f"{path}: tensors do not match the config ({k} is {list(shapes[k])} in the file, "
                                 f"{list(t.shape)} by the config)")


def load_file(path: str | Path, device: str | torch.device = "cpu", name: str | None = None) -> LoadedModel:
    path = Path(path)
    meta = read_meta(path)
    try:
        task = TaskSpec.from_meta(meta["task"])
        config = GPTConfig.from_dict(meta["config"])
        objective = objective_from_meta(meta["objective"])
    except (KeyError, TypeError, ValueError, Exception) as e:  # noqa: BLE001 - any bad field is one message
        raise ModelFileError(f"{path}: the metadata's config is incomplete or wrong ({e.__class__.__name__}: {e})") from None
    try:
        from .task import check_topology

        check_topology(task.degree, task.path_len, task.nodes)
    except NtpProbeError as e:
        raise ModelFileError(f"{path}: the metadata's task is impossible ({e})") from None
    if config.vocab_size != task.nodes + 4:
        raise ModelFileError(f"{path}: config vocab_size {config.vocab_size} does not match N={task.nodes} (+4 specials)")
    if config.block_size < task.seq_len + objective.extra_context:
        raise ModelFileError(f"{path}: context {config.block_size} is shorter than the task's "
                             f"{task.seq_len + objective.extra_context} tokens")
    if config.n_future != objective.heads:
        raise ModelFileError(f"{path}: config has {config.n_future} heads but the objective {objective.heads}")
    if config.causal != objective.causal:
        raise ModelFileError(f"{path}: config says causal={str(config.causal).lower()}, but the {objective.name} objective "
                             f"needs {'causal' if objective.causal else 'bidirectional'} attention")
    for key, want in objective.model_fields(Tokenizer(task.nodes).dollar).items():
        if getattr(config, key) != want:
            raise ModelFileError(f"{path}: config says {key}={getattr(config, key)!r}, but the {objective.name} "
                                 f"objective needs {want!r}")
    _check_shapes(path, config)  # before allocating: a wrong header must not ask for terabytes
    try:
        model = build_model(config)
    except Exception as e:  # noqa: BLE001
        raise ModelFileError(f"{path}: cannot build the model from its config ({_first_line(e)})") from None
    try:
        missing, unexpected = st_load_model(model, str(path), strict=False, device=str(device))
    except (SafetensorError, RuntimeError, OSError, ValueError) as e:
        first = str(e).strip().splitlines()
        msg = next((ln.strip() for ln in first if "size mismatch" in ln), first[0] if first else e.__class__.__name__)
        raise ModelFileError(f"{path}: tensors do not match the config ({msg})") from None
    if missing or unexpected:
        what = f"missing {sorted(missing)[:3]}" if missing else f"unexpected {sorted(unexpected)[:3]}"
        raise ModelFileError(f"{path}: tensors do not match the config ({what})")
    model.to(device).eval()
    return LoadedModel(model, task, objective, meta, path, name)


# ------------------------------------------------------------------------------------------------
# Finding a model by name


def model_dirs() -> list[Path]:
    """Where model names are looked up: $NTP_PROBE_MODELS, ./models, then the repository's models/."""
    dirs = []
    if env := os.environ.get("NTP_PROBE_MODELS"):
        dirs.append(Path(env))
    dirs.append(Path.cwd() / "models")
    dirs.append(Path(__file__).resolve().parent.parent / "models")
    out: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in [o.resolve() for o in out]:
            out.append(d)
    return out


def resolve(spec: str | Path) -> tuple[Path, str | None]:
    """MODEL argument -> (file, name): a .safetensors file, a directory holding one, a shipped name, or
    ``RUN@STEP``: a checkpoint that ``train --keep-checkpoints`` kept (``follow.py``)."""
    p = Path(spec)
    if p.is_file():
        return p, None
    from .follow import resolve_at

    if (kept := resolve_at(spec)) is not None:
        return kept
    if p.is_dir():
        if (p / MODEL_FILE).is_file():
            return p / MODEL_FILE, p.name
        raise ModelFileError(f"{p}: directory has no {MODEL_FILE}")
    for d in model_dirs():
        if (d / str(spec) / MODEL_FILE).is_file():
            return d / str(spec) / MODEL_FILE, str(spec)
    names = sorted(n for d in model_dirs() for n in (x.name for x in d.iterdir() if (x / MODEL_FILE).is_file()))
    shown = ", ".join(names[:6]) + (f" … ({len(names)} in all: ntp-probe models)" if len(names) > 6 else "")
    hint = f"; shipped models: {shown}" if names else ""
    raise ModelFileError(f"model {str(spec)!r} not found: not a file, a directory, or a model name{hint}")


def load(spec: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    path, name = resolve(spec)
    return load_file(path, device, name)


def list_models() -> list[tuple[str, Path]]:
    seen, out = set(), []
    for d in model_dirs():
        for x in sorted(d.iterdir()):
            if (x / MODEL_FILE).is_file() and x.name not in seen:
                seen.add(x.name)
                out.append((x.name, x / MODEL_FILE))
    return out


# ------------------------------------------------------------------------------------------------
# Training state (for --resume): model + optimizer + step in one safetensors file


def save_state(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, meta: dict) -> None:
    model = getattr(model, "module", model)
    model = getattr(model, "_orig_mod", model)
    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    osd = optimizer.state_dict()
    for idx, st in osd["state"].items():
        for k, v in st.items():
            t = v if torch.is_tensor(v) else torch.tensor(v)
            tensors[f"optim.{idx}.{k}"] = t.detach().contiguous().cpu()
    meta = {**meta, "param_groups": osd["param_groups"]}

    def write(tmp: str) -> None:
        save_file(tensors, tmp, metadata={META_KEY: json.dumps(meta)})

    atomic_write(path, write)


def read_state_meta(path: Path) -> dict:
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = safe_loads((f.metadata() or {})[META_KEY])
    except (SafetensorError, OSError, KeyError, ValueError) as e:
        raise ModelFileError(f"{path}: cannot read the training state ({e.__class__.__name__}); start over with --force") from None
    if not isinstance(meta, dict):
        raise ModelFileError(f"{path}: the training state's metadata is not an object; start over with --force")
    return meta


def load_state(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = safe_loads((f.metadata() or {})[META_KEY])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, KeyError, ValueError) as e:
        raise ModelFileError(f"{path}: cannot read the training state ({e.__class__.__name__}); start over with --force") from None
    sd = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    if "wte.weight" in sd and hasattr(model, "lm_head"):
        sd["lm_head.weight"] = sd["wte.weight"]
    try:
        if not isinstance(meta, dict) or not isinstance(meta.get("step"), int):
            raise KeyError("step")
        model.load_state_dict(sd)
        state: dict[int, dict] = {}
        for k, v in tensors.items():
            if k.startswith("optim."):
                _, idx, name = k.split(".", 2)
                state.setdefault(int(idx), {})[name] = v
        optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    except (KeyError, RuntimeError, ValueError, TypeError) as e:
        raise ModelFileError(f"{path}: the training state does not fit this run ({e.__class__.__name__}: "
                             f"{_first_line(e)}); start over with --force") from None
    return meta
