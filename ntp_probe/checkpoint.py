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
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save_file, save_model

from .atomic import atomic_write
from .errors import ModelFileError, NtpProbeError
from .model import GPT, GPTConfig, skeleton
from .archs import ARCHS
from .objectives import Objective, from_meta as objective_from_meta
from .runfiles import MODEL_FILE, kept_files, split_at
from .safejson import is_int, is_real
from .safejson import loads as safe_loads
from .task import MAX_SHAPES, Topologies
from .tokenizer import Tokenizer

FORMAT = "ntp-probe/1"
LAYOUTS = ("edges-first", "query-first")  # the question's token order (TaskSpec.query_first)
META_KEY = "ntp_probe"


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


def as_os_error(e: Exception, path: str) -> OSError:
    """safetensors' write error (``SafetensorError: … (os error 28)``: a full disk, ``ulimit -f``) as the
    ``OSError`` it is, so that every writer reports it as its one-line write error."""
    import errno
    import re

    m = re.search(r"(?:code: |os error )(\d+)", str(e))
    code = int(m.group(1)) if m else errno.EIO
    return OSError(code, os.strerror(code), path)


def save(path: str | Path, model: torch.nn.Module, meta: dict) -> None:
    """Save weights (tied embeddings handled by ``save_model``) with ``meta`` as JSON in the header."""
    model = getattr(model, "module", model)  # unwrap DDP
    model = getattr(model, "_orig_mod", model)  # unwrap torch.compile

    def write(tmp: str) -> None:
        try:
            save_model(model, tmp, metadata={META_KEY: json.dumps(meta)})
        except SafetensorError as e:
            raise as_os_error(e, str(path)) from None

    atomic_write(Path(path), write)


def replace_meta(path: str | Path, meta: dict) -> None:
    """Rewrite a model file's ntp-probe metadata (a card re-measured), its tensors kept byte for byte: a new header
    (padded with spaces to 8 bytes, as safetensors writes it) before the same data, written atomically."""
    path = Path(path)
    data = read_bytes(path)
    tensors, old = parse_header(path, data)
    n = int.from_bytes(data[:8], "little")
    header = {"__metadata__": {**old, META_KEY: json.dumps(meta)}, **tensors}
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    new = len(head).to_bytes(8, "little") + head + data[8 + n :]
    read_meta(path, new)  # what will be written reads back as a model file, or nothing is written

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(new)

    atomic_write(path, write)


# Model and state files are read into memory with one open and one read, then parsed from those bytes: never
# mmap'd (an unreadable block of a mapped file is a SIGBUS that kills the process, an EIO on read() is an error)
# and never reopened by path (a checkpoint renamed over the file between two opens would mix two files).
DTYPE_SIZES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E4M3FNUZ": 1, "F8_E5M2": 1, "F8_E5M2FNUZ": 1, "I16": 2,
               "U16": 2, "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "C64": 8, "I64": 8, "U64": 8, "F64": 8}
FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")  # what a model's weights may be; anything else is not cast silently


def _unreadable(path: Path, why: str) -> ModelFileError:
    return ModelFileError(f"{path}: not a readable safetensors file ({why})")


def read_bytes(path: Path, header_only: bool = False) -> bytes:
    """The file's bytes (or only its 8-byte length and header) from one open; a ModelFileError if it cannot be read."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                raise ModelFileError(f"{path}: empty file (zero bytes), not a model")
            if not header_only:
                return f.read()
            head = f.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else 0
            return head + f.read(n) if 0 < n <= size - 8 else head
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ModelFileError(f"{path}: is a directory, not a model file") from None
    except OSError as e:  # EIO: a bad block
        raise ModelFileError(f"{path}: cannot read the file ({e.strerror or e.__class__.__name__})") from None


def parse_header(path: Path, data: bytes, size: int | None = None) -> tuple[dict, dict]:
    """(tensors {name: {dtype, shape, data_offsets}}, metadata) of a safetensors file's bytes (``data`` may stop after
    the header; ``size`` is then the whole file's), each entry checked as the safetensors loader checks it."""
    size = len(data) if size is None else size
    if len(data) < 8:
        raise _unreadable(path, f"{len(data)} bytes, shorter than a header")
    n = int.from_bytes(data[:8], "little")
    if n > size - 8 or len(data) < 8 + n:
        raise _unreadable(path, f"header of {n:,} bytes, past the end of the file")
    try:
        header = json.loads(data[8 : 8 + n])
    except (ValueError, RecursionError) as e:
        raise _unreadable(path, f"header is not JSON: {_first_line(e)[:80]}") from None
    if not isinstance(header, dict):
        raise _unreadable(path, "header is not an object")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise _unreadable(path, "metadata is not an object of strings")
    spans = []
    for name, info in header.items():
        ok = isinstance(info, dict) and info.get("dtype") in DTYPE_SIZES and isinstance(info.get("shape"), list)
        ok = ok and all(is_int(x) and x >= 0 for x in info["shape"]) and isinstance(info.get("data_offsets"), list)
        ok = ok and len(info["data_offsets"]) == 2 and all(is_int(x) for x in info["data_offsets"])
        if not ok:
            raise _unreadable(path, f"tensor {_shown(name)} is not described properly")
        a, b = info["data_offsets"]
        count = 1
        for x in info["shape"]:
            count *= x
        if b - a != count * DTYPE_SIZES[info["dtype"]]:
            raise _unreadable(path, f"tensor {_shown(name)}: its offsets do not match its shape")
        spans.append((a, b))
    end = 0
    for a, b in sorted(spans):
        if a != end:
            raise _unreadable(path, "tensor data overlaps or leaves gaps")
        end = b
    if 8 + n + end != size:
        raise _unreadable(path, f"tensor data of {end:,} bytes, the file holds {size - 8 - n:,}")
    return header, meta


def read_meta(path: Path, data: bytes | None = None) -> dict:
    """The ntp-probe metadata of a safetensors file (read from ``data``, its bytes, when given; else only its header
    is read), or a ModelFileError saying what is wrong."""
    path = Path(path)
    if data is None:
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise ModelFileError(f"{path}: no such file") from None
        except OSError as e:
            raise ModelFileError(f"{path}: cannot read the file ({e.strerror or e.__class__.__name__})") from None
        _, header = parse_header(path, read_bytes(path, header_only=True), size)
    else:
        if not data:
            raise ModelFileError(f"{path}: empty file (zero bytes), not a model")
        _, header = parse_header(path, data)
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
    for section in ("card", "metrics", "training"):  # null is no section: every reader can .get() it
        if section in meta and meta[section] is None:
            del meta[section]
    return meta


def _shown(x) -> str:
    text = repr(x)
    return text if len(text) <= 40 else text[:40] + "…"


# every size a config may hold; the tensors pin each one down, these bounds only keep messages and checks sane
CONFIG_INTS = {"vocab_size": 5, "block_size": 2, "n_layer": 1, "n_head": 1, "n_embd": 1, "n_future": 1,
               "d_state": 1, "d_conv": 1, "expand": 1}  # name -> smallest valid value
CONFIG_REQUIRED = ("vocab_size", "block_size", "n_layer", "n_head", "n_embd")
FIGURES = ("accuracy", "decision_accuracy", "forced_accuracy", "forced_after_decision", "follow_rate", "goal_copy_rate",
           "wrong_leaf_rate", "clever_hans_rate", "steps")  # clever_hans_rate: cards written before follow_rate
ACTIVATIONS = ("gelu", "gelu_tanh")  # the MLP's GELU: exact, or the tanh approximation (models imported from the paper's code)
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
    if ("degrees" in task) != ("path_lens" in task):  # a topology set names both
        have, lack = ("degrees", "path_lens") if "degrees" in task else ("path_lens", "degrees")
        raise ModelFileError(f"{path}: the metadata's task has '{have}' but no '{lack}'")
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
    if "activation" in cfg and cfg["activation"] not in ACTIVATIONS:
        raise bad("config", "activation", f"not {' or '.join(ACTIVATIONS)}")
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
    train_cfg = (meta.get("training") or {}).get("config")  # the run's options (cards, the app's i, reports)
    if train_cfg is not None and not isinstance(train_cfg, dict):
        raise ModelFileError(f"{path}: the metadata's training is wrong (config {_shown(train_cfg)}: not an object)")
    if cfg.get("arch", "gpt") == "gpt" and cfg["n_embd"] % cfg["n_head"]:  # a Mamba has no heads
        raise ModelFileError(f"{path}: cannot build the model from its config (n_embd {cfg['n_embd']} must be divisible "
                             f"by n_head {cfg['n_head']})")


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0][:200] if lines else e.__class__.__name__


def _check_shapes(path: Path, config: GPTConfig, tensors: dict) -> None:
    """Compare the file's tensor shapes (read from the header) with the config's, building only a meta-device skeleton."""
    shapes = {k: tuple(v["shape"]) for k, v in tensors.items()}
    for k, v in tensors.items():  # a model's weights are floating-point: bool, integer, complex are not cast silently
        if v["dtype"] not in FLOAT_DTYPES:
            raise ModelFileError(f"{path}: tensor {_shown(k)} is {v['dtype']}; a model's weights are floating-point "
                                 f"({', '.join(FLOAT_DTYPES)})")
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
        with skeleton():
            shell = build_model(config)
    except ModelFileError as e:
        raise ModelFileError(f"{path}: {e}") from None
    except Exception as e:  # noqa: BLE001 - any bad field is one message
        raise ModelFileError(f"{path}: cannot build the model from its config ({_first_line(e)})") from None
    for k, t in shell.state_dict().items():
        if k in shapes and tuple(t.shape) != shapes[k]:
            raise ModelFileError(f"{path}: tensors do not match the config ({k} is {list(shapes[k])} in the file, "
                                 f"{list(t.shape)} by the config)")


def load_file(path: str | Path, device: str | torch.device = "cpu", name: str | None = None) -> LoadedModel:
    path = Path(path)
    data = read_bytes(path)  # one open, one read: see read_bytes
    meta = read_meta(path, data)
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
    _check_shapes(path, config, parse_header(path, data)[0])  # before allocating: a wrong header must not ask for terabytes
    try:
        model = build_model(config)
    except Exception as e:  # noqa: BLE001
        raise ModelFileError(f"{path}: cannot build the model from its config ({_first_line(e)})") from None
    try:
        tensors = st_load(data)
    except (SafetensorError, RuntimeError, OSError, ValueError) as e:
        raise _unreadable(path, _first_line(e)) from None
    del data
    for k, t in tensors.items():
        if not bool(torch.isfinite(t).all()):
            raise ModelFileError(f"{path}: tensor {_shown(k)} holds NaN or infinite values; the model is broken")
    missing, unexpected = _load_weights(path, model, tensors)
    if missing or unexpected:
        what = f"missing {sorted(missing)[:3]}" if missing else f"unexpected {sorted(unexpected)[:3]}"
        raise ModelFileError(f"{path}: tensors do not match the config ({what})")
    model.to(device).eval()
    return LoadedModel(model, task, objective, meta, path, name)


def _load_weights(path: Path, model: torch.nn.Module, tensors: dict) -> tuple[set, list]:
    """Copy ``tensors`` into ``model`` (as ``safetensors.torch.load_model``: a tied weight saved once under one of its
    names counts for all of them); (missing, unexpected) names."""
    try:
        missing, unexpected = model.load_state_dict(tensors, strict=False)
    except RuntimeError as e:
        lines = str(e).strip().splitlines()
        msg = next((ln.strip() for ln in lines if "size mismatch" in ln), lines[0] if lines else e.__class__.__name__)
        raise ModelFileError(f"{path}: tensors do not match the config ({msg})") from None
    by_storage: dict[int, list[str]] = {}
    for k, t in model.state_dict().items():
        by_storage.setdefault(t.data_ptr(), []).append(k)
    tied = {k for names in by_storage.values() if len(names) > 1 and any(n in tensors for n in names) for k in names}
    return set(missing) - tied, list(unexpected)


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
    ``RUN@STEP``: a checkpoint that ``train --keep-checkpoints`` kept (``resolve_at``)."""
    p = Path(spec)
    if p.is_file():
        return p, None
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


def steps_text(steps) -> str:
    """'10, 20, 30' or '10, 20, … 300 (30 steps)' for a message."""
    steps = list(steps)
    if len(steps) <= 6:
        return ", ".join(map(str, steps))
    return f"{', '.join(map(str, steps[:3]))}, … {steps[-1]} ({len(steps)} steps)"


def resolve_at(spec: str | Path) -> tuple[Path, str] | None:
    """``RUN@STEP`` -> (the kept file, the name ``RUN@STEP`` shows as); None when ``spec`` is not of that form.
    A run that is not there, or a step it did not keep, is a ModelFileError that says which steps it kept."""
    at = split_at(spec)
    if at is None:
        return None
    run, step = at
    if not run.is_dir():
        raise ModelFileError(f"{spec}: {run} is not a run directory (RUN@STEP names a checkpoint that "
                             "'train --keep-checkpoints' kept in RUN)")
    kept = kept_files(run)
    if step not in kept:
        if not kept:
            raise ModelFileError(f"{spec}: {run} kept no checkpoints (train it with --keep-checkpoints)")
        raise ModelFileError(f"{spec}: step {step} was not kept; {run} kept steps {steps_text(kept)}")
    return kept[step], f"{run.name}@{step}"


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
        try:
            save_file(tensors, tmp, metadata={META_KEY: json.dumps(meta)})
        except SafetensorError as e:
            raise as_os_error(e, str(path)) from None

    atomic_write(path, write)


def _state_file(path: Path, header_only: bool) -> tuple[dict, bytes]:
    """(metadata, bytes) of a training state, from one read; a ModelFileError saying to start over otherwise."""
    try:
        data = read_bytes(path, header_only)
        size = len(data) if not header_only else path.stat().st_size
        meta = safe_loads(parse_header(path, data, size)[1][META_KEY])
    except (ModelFileError, OSError, KeyError, ValueError) as e:
        raise ModelFileError(f"{path}: cannot read the training state ({e.__class__.__name__}); start over with --force") from None
    return meta, data


def read_state_meta(path: Path) -> dict:
    meta, _ = _state_file(path, header_only=True)
    if not isinstance(meta, dict):
        raise ModelFileError(f"{path}: the training state's metadata is not an object; start over with --force")
    return meta


def load_state(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    meta, data = _state_file(path, header_only=False)
    try:
        tensors = st_load(data)
    except (SafetensorError, RuntimeError, ValueError) as e:
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
