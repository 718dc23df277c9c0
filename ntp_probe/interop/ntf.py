"""Checkpoints of the paper's own code, gregorbachmann/Next-Token-Failures (``train.py`` saves
``torch.save(model.state_dict(), …)``), as ntp-probe models.

Its GPT (``models/gpt.py``, ``models/lib.py``, ``models/base_model.py``) is ours, weight for weight:

============================================  ==========================================
theirs                                        ours
============================================  ==========================================
``embed_tokens.weight`` (= ``lm_head.weight``)  ``wte.weight`` (tied to ``lm_head.weight``)
``pos_encoding.weight`` (learned positions)   ``wpe.weight``
``layers.K.ln_1`` / ``ln_2`` (pre-LN, 1e-5)   ``blocks.K.ln_1`` / ``ln_2``
``layers.K.attn.{queries,keys,values}_linear`` ``blocks.K.attn.c_attn`` (rows q | k | v)
``layers.K.attn.proj``                        ``blocks.K.attn.c_proj``
``layers.K.mlp.expand`` / ``mlp.proj``        ``blocks.K.mlp.c_fc`` / ``mlp.c_proj``
``final_layernorm``                           ``ln_f``
============================================  ==========================================

Heads split the width the same way (``view(B, T, heads, head_dim)``), attention is causal with scale
1/sqrt(head_dim), every Linear and LayerNorm has a bias (``get_model`` sets ``bias=True``). One difference: its
MLP's GELU is the tanh approximation (``models/lib.py: gelu``), so the imported model says ``activation:
gelu_tanh``. Its tokenizer (``tokenizing/numeral_tokenizer.py``) numbers node i as i, then '|' = N, '=' = N+1,
'/' = N+2, '$' = N+3: ours (``tokenizer.py``), so token ids need no mapping, and its teacherless token is our '$'.

What the state dict cannot tell (the number of heads; the graph shape when its context fits several; the
objective) is asked for; everything else (width, layers, vocabulary, context) is read from it.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import re
import zipfile
from pathlib import Path

import torch

from .. import checkpoint as ckpt
from ..errors import ModelFileError, UsageError
from ..model import GPT, GPTConfig
from . import common

SOURCE = "next-token-failures"
REPO = "gregorbachmann/Next-Token-Failures"
OBJECTIVES = ("next-token", "teacherless", "reverse")  # train.py: default, --teacherless, --reverse
WRAPPERS = ("model", "state_dict", "model_state_dict")  # {"model": state_dict, …}: a common way to save more
PREFIXES = ("_orig_mod.", "module.")  # torch.compile, DDP
LAYER_KEYS = ("ln_1.weight", "ln_1.bias", "attn.queries_linear.weight", "attn.queries_linear.bias",
              "attn.keys_linear.weight", "attn.keys_linear.bias", "attn.values_linear.weight", "attn.values_linear.bias",
              "attn.proj.weight", "attn.proj.bias", "ln_2.weight", "ln_2.bias", "mlp.expand.weight", "mlp.expand.bias",
              "mlp.proj.weight", "mlp.proj.bias")
TOP_KEYS = ("pos_encoding.weight", "final_layernorm.weight", "final_layernorm.bias")
MAX_LAYERS = 4096


def _first(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    return lines[0][:160] if lines else e.__class__.__name__


def read_state_dict(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """The checkpoint's tensors by name (``torch.load(…, weights_only=True)``: no pickled code runs) and its sha256."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ModelFileError(f"{path}: is a directory; a checkpoint of the paper's code is one file "
                             "(a Hugging Face folder imports with --from hf)") from None
    if not data:
        raise ModelFileError(f"{path}: empty file (zero bytes), not a checkpoint")
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # weights_only refuses: the pickle would build objects or run code
        m = re.search(r"Unsupported (?:global|operand):?\s*(?:GLOBAL\s+)?[\w.<>]*", str(e))
        why = m.group(0).strip()[:120] if m else _first(e)
        if "weights only load failed" in str(e).lower() or m:
            raise ModelFileError(f"{path}: refused: it needs more than tensors to unpickle, and no pickled code is run "
                                 f"(torch.load weights_only=True: {why})") from None
        raise ModelFileError(f"{path}: not a torch checkpoint ({why})") from None
    except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile, OSError, AttributeError, TypeError, KeyError,
            IndexError) as e:
        raise ModelFileError(f"{path}: not a torch checkpoint ({_first(e)})") from None
    digest = hashlib.sha256(data).hexdigest()
    del data
    if isinstance(obj, dict):
        for key in WRAPPERS:  # {"model": state_dict, "optimizer": …, "epoch": …}
            inner = obj.get(key)
            if isinstance(inner, dict) and inner and all(torch.is_tensor(v) for v in inner.values()):
                obj = inner
                break
    if not isinstance(obj, dict):
        raise ModelFileError(f"{path}: holds {_kind(obj)}, not a state dict (tensors by name, as train.py saves "
                             "model.state_dict())")
    if not obj:
        raise ModelFileError(f"{path}: an empty dict, not a state dict")
    for k, v in obj.items():
        if not isinstance(k, str) or not torch.is_tensor(v):
            raise ModelFileError(f"{path}: a dict, but not a state dict ({_shown(k)} holds {_kind(v)}, not a tensor)")
    sd = dict(obj)
    for prefix in PREFIXES:
        if all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd, digest


def _kind(x) -> str:
    if torch.is_tensor(x):
        return f"a tensor {list(x.shape)}"
    return {list: "a list", tuple: "a tuple", dict: "a dict", str: "a string", int: "a number", float: "a number",
            type(None): "None"}.get(type(x), f"a {type(x).__name__}")


def _shown(x) -> str:
    text = repr(x)
    return text if len(text) <= 50 else text[:50] + "…"


def _keys(sd: dict, n: int = 3) -> str:
    names = sorted(sd)
    return ", ".join(names[:n]) + (f" … ({len(names)} in all)" if len(names) > n else "")


def to_ours(sd: dict[str, torch.Tensor], heads: int | None, where: str, layers: int | None = None,
            d_model: int | None = None) -> tuple[GPTConfig, dict[str, torch.Tensor]]:
    """Their state dict -> (our config, our state dict); every key, shape and dtype checked, one message if not."""
    if "embed_tokens.weight" not in sd and "lm_head.weight" not in sd or not any(k.startswith("layers.") for k in sd):
        if "wte.weight" in sd and any(k.startswith("blocks.") for k in sd):
            hint = " (an ntp-probe or nanoGPT state dict: wte / blocks; ntp-probe models open as they are)"
        elif any(k.startswith(("transformer.h.", "h.")) for k in sd):
            hint = " (a Hugging Face GPT-2: save it as a folder and import it with --from hf)"
        else:
            hint = ""
        raise ModelFileError(f"{where}: not a state dict of the paper's GPT (models/gpt.py: embed_tokens, "
                             f"pos_encoding, layers.K.attn.queries_linear …); it holds {_keys(sd)}{hint}")
    if "pos_encoding.weight" not in sd and any(k.endswith("attn.queries_linear.weight") for k in sd):
        raise ModelFileError(f"{where}: no pos_encoding.weight: the paper's Pythia (rotary positions, models/pythia.py), "
                             "not its GPT; only GPT checkpoints import")
    for k, v in sd.items():
        if not v.is_floating_point():
            raise ModelFileError(f"{where}: tensor {_shown(k)} is {str(v.dtype).removeprefix('torch.')}; a model's "
                                 "weights are floating-point")
    idx = set()
    for k in sd:
        if k.startswith("layers."):
            part = k.split(".")[1]
            if not part.isdigit() or int(part) >= MAX_LAYERS:
                raise ModelFileError(f"{where}: unexpected key {_shown(k)}: not the paper's GPT")
            idx.add(int(part))
    n_layer = len(idx)
    expected = set(TOP_KEYS) | {f"layers.{i}.{k}" for i in range(max(idx) + 1) for k in LAYER_KEYS}
    missing = sorted(expected - set(sd), key=_natural)
    if missing:
        raise ModelFileError(f"{where}: missing keys of the paper's GPT: {', '.join(missing[:3])}"
                             f"{f' … ({len(missing)} in all)' if len(missing) > 3 else ''}")
    unexpected = sorted(set(sd) - expected - {"embed_tokens.weight", "lm_head.weight"}, key=_natural)
    if unexpected:
        raise ModelFileError(f"{where}: unexpected keys, not the paper's GPT: {', '.join(unexpected[:3])}"
                             f"{f' … ({len(unexpected)} in all)' if len(unexpected) > 3 else ''}")
    emb, head = sd.get("embed_tokens.weight"), sd.get("lm_head.weight")
    if emb is not None and head is not None and (emb.shape != head.shape or not torch.equal(emb, head)):
        raise ModelFileError(f"{where}: lm_head.weight differs from embed_tokens.weight; the paper's GPT ties them "
                             "(models/gpt.py), and so does ntp-probe")
    emb = emb if emb is not None else head
    if emb.dim() != 2:
        raise ModelFileError(f"{where}: embed_tokens.weight is {list(emb.shape)}, not [vocabulary, width]")
    V, C = emb.shape
    pos = sd["pos_encoding.weight"]
    if pos.dim() != 2 or pos.shape[1] != C:
        raise ModelFileError(f"{where}: pos_encoding.weight is {list(pos.shape)}, not [context, {C}]")
    T = pos.shape[0]
    if layers is not None and layers != n_layer:
        raise UsageError(f"--layers {layers}: {where} holds {n_layer} layers")
    if d_model is not None and d_model != C:
        raise UsageError(f"--d-model {d_model}: {where} is {C} wide")
    if heads is None:
        raise UsageError(f"{where}: a state dict does not say how many attention heads its GPT has; give --heads "
                         "(train.py's --n_head, 6 by default)")
    if heads < 1 or C % heads:
        raise UsageError(f"--heads {heads}: the width {C} is not divisible by it")
    shapes = {"final_layernorm.weight": (C,), "final_layernorm.bias": (C,)}
    for i in range(n_layer):
        p = f"layers.{i}."
        for k in LAYER_KEYS:
            mlp_in = k.startswith("mlp.expand")
            mlp_out = k.startswith("mlp.proj")
            if k.endswith("bias"):
                shapes[p + k] = (4 * C,) if mlp_in else (C,)
            elif k.startswith("ln_"):
                shapes[p + k] = (C,)
            else:
                shapes[p + k] = (4 * C, C) if mlp_in else (C, 4 * C) if mlp_out else (C, C)
    for k, want in shapes.items():
        if tuple(sd[k].shape) != want:
            raise ModelFileError(f"{where}: {k} is {list(sd[k].shape)}; the paper's GPT of width {C} has {list(want)}")
    config = GPTConfig(vocab_size=V, block_size=T, n_layer=n_layer, n_head=heads, n_embd=C, dropout=0.0, bias=True,
                       activation="gelu_tanh")
    ours = {"wte.weight": emb, "wpe.weight": pos, "ln_f.weight": sd["final_layernorm.weight"],
            "ln_f.bias": sd["final_layernorm.bias"]}
    for i in range(n_layer):
        t, o = f"layers.{i}.", f"blocks.{i}."
        for a, b in (("ln_1", "ln_1"), ("ln_2", "ln_2"), ("attn.proj", "attn.c_proj"), ("mlp.expand", "mlp.c_fc"),
                     ("mlp.proj", "mlp.c_proj")):
            ours[f"{o}{b}.weight"], ours[f"{o}{b}.bias"] = sd[f"{t}{a}.weight"], sd[f"{t}{a}.bias"]
        for part in ("weight", "bias"):
            ours[f"{o}attn.c_attn.{part}"] = torch.cat([sd[f"{t}attn.{n}_linear.{part}"] for n in ("queries", "keys", "values")])
    ours = {k: v.detach().float().contiguous() for k, v in ours.items()}
    for k, v in ours.items():
        if not bool(torch.isfinite(v).all()):
            raise ModelFileError(f"{where}: {k} holds NaN or infinite values; the model is broken")
    return config, ours


def _natural(key: str):
    return [int(p) if p.isdigit() else p for p in key.split(".")]


def build(config: GPTConfig, sd: dict[str, torch.Tensor]) -> GPT:
    model = GPT(config)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert set(missing) <= {"lm_head.weight"} and not unexpected, (missing, unexpected)  # to_ours names every key
    return model.eval()


def import_checkpoint(path: str | Path, out: str | Path, heads: int | None = None, degree: int | None = None,
                      path_len: int | None = None, nodes: int | None = None, objective: str = "next-token",
                      layers: int | None = None, d_model: int | None = None, force: bool = False,
                      argv: list[str] | None = None) -> Path:
    """Read a checkpoint of the paper's code and write it as an ntp-probe model in ``out`` (a directory); everything
    is checked before anything is written."""
    path, out = Path(path), Path(out)
    common.check_out(out, force, source=path)
    obj = common.gpt_objective(objective, OBJECTIVES, "the paper's code")
    sd, digest = read_state_dict(path)
    config, ours = to_ours(sd, heads, str(path), layers, d_model)
    n = common.nodes_of(config.vocab_size, nodes, str(path))
    task = common.infer_task(config.block_size, n, degree, path_len, obj, str(path))
    model = build(config, ours)
    meta = ckpt.make_meta(model, task, obj, imported={"from": SOURCE, "repository": REPO, "file": path.name,
                                                      "sha256": digest})
    card = common.imported_card(out, model, task, obj, [
        f"A checkpoint of [{REPO}](https://github.com/{REPO}) (`torch.save(model.state_dict(), …)` in its `train.py`):",
        "",
        f"- file: `{path.name}`",
        f"- sha256: `{digest}`",
    ], common.command_line(argv), [
        "- mapped weight for weight onto ntp-probe's GPT (see `ntp_probe/interop/ntf.py`); its MLP's GELU is the tanh "
        "approximation (`activation: gelu_tanh`), its tokenizer numbering is ntp-probe's",
        f"- not in a state dict, so given or inferred: {task.topologies.label()} "
        f"({'given' if degree is not None and path_len is not None else f'the one shape whose question + answer is its context of {config.block_size} tokens'}), "
        f"{config.n_head} heads (given), the {obj.name} objective (given, or train.py's default)",
    ])
    return common.write_model(out, model, meta, card)
