"""Hugging Face folders, out and in: the GPT-2 architecture (``GPT2LMHeadModel``), onto which ntp-probe's GPT maps
exactly.

Ours and GPT-2's, side by side: pre-LayerNorm blocks (eps 1e-5), learned positions, fused q|k|v attention
scaled by 1/sqrt(head dim), a 4x MLP, a final LayerNorm, the unembedding tied to the token embedding. GPT-2
always has biases (a model trained with ``bias=False`` goes out with zero biases: the same function); its
Linear layers are ``Conv1D`` (weights stored [in, out], ours [out, in]); its GELU is named by
``activation_function``: ``gelu`` (exact, erf: ours) or ``gelu_new`` (tanh: models imported from the paper's code).
Dropout (training only) maps onto ``embd_pdrop``/``attn_pdrop``/``resid_pdrop``.

What cannot go (refused in one line): Mamba (no attention), the belief state transformer (two GPTs and an MLP
head), ``multi-token`` (an extra transformer block per output head) and ``mlm-u`` (bidirectional attention).

Export needs nothing beyond ntp-probe (``config.json``, ``model.safetensors``, a ``tokenizer.json`` that
``AutoTokenizer`` reads, a model card); ``transformers`` (the ``[hf]`` extra) is only what reads the folder.
The whole ntp-probe header rides along in ``config.json`` under ``ntp_probe``, so ``import --from hf`` gives the
same model back; a GPT-2 folder trained elsewhere on path-star token ids imports with its task given (-d -l).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save_file

from .. import checkpoint as ckpt
from ..atomic import atomic_write, atomic_write_text
from ..errors import ModelFileError, UsageError
from ..model import GPT, GPTConfig
from ..objectives import from_meta as objective_from_meta
from ..safejson import is_int, is_real
from ..safejson import loads as safe_loads
from ..tokenizer import Tokenizer
from . import common

SOURCE = "hf"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"
EXPORT_FILES = (CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE, "tokenizer_config.json", "README.md")
META_KEY = "ntp_probe"  # config.json: the model's whole ntp-probe header
GELU = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh"}  # GPT-2 name -> ours
GELU_OUT = {"gelu": "gelu", "gelu_tanh": "gelu_new"}
EPS = 1e-5
LAYER_KEYS = ("ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight",
              "attn.c_proj.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight",
              "mlp.c_proj.bias")
CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")  # stored [in, out]
BUFFER = re.compile(r"^h\.\d+\.attn\.(bias|masked_bias)$")  # older GPT-2 files keep the causal mask as a buffer
MAX_CONFIG = 4 << 20


# ------------------------------------------------------------------------------------------------
# Out


def check_exportable(lm: ckpt.LoadedModel) -> None:
    """A one-line UsageError for a model that GPT-2 cannot hold exactly."""
    name, c = lm.display_name, lm.model.config
    if lm.arch != "gpt":
        raise UsageError(f"{name} is a {lm.arch} model; GPT-2 is a transformer, so only GPT models export to "
                         "Hugging Face (--to transformer-lens neither)")
    if c.bst:
        raise UsageError(f"{name} is a belief state transformer (a forward and a backward GPT and an MLP head), "
                         "which one GPT-2 cannot hold")
    if c.n_future > 1:
        raise UsageError(f"{name} has {c.n_future} output heads (multi-token: a transformer block per extra head); "
                         "GPT-2 has one, and the heads it was trained with would be lost")
    if not c.causal or c.hidden_token >= 0:
        raise UsageError(f"{name} attends both ways ({lm.objective.name}); GPT-2's attention is causal, so its "
                         "logits would not be this model's")


def hf_config(lm: ckpt.LoadedModel) -> dict:
    c = lm.model.config
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": c.vocab_size,
        "n_positions": c.block_size,
        "n_embd": c.n_embd,
        "n_layer": c.n_layer,
        "n_head": c.n_head,
        "n_inner": 4 * c.n_embd,
        "activation_function": GELU_OUT[c.activation],
        "layer_norm_epsilon": EPS,
        "embd_pdrop": c.dropout,
        "attn_pdrop": c.dropout,
        "resid_pdrop": c.dropout,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "add_cross_attention": False,
        "tie_word_embeddings": True,
        "initializer_range": 0.02,
        "use_cache": True,
        "bos_token_id": None,
        "eos_token_id": None,
        "pad_token_id": None,
        META_KEY: lm.meta,
    }


def hf_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """Our GPT's weights under GPT-2's names and layout (the tied head is GPT-2's too: not stored)."""
    sd = model.state_dict()
    C = model.config.n_embd
    out = {"transformer.wte.weight": sd["wte.weight"], "transformer.wpe.weight": sd["wpe.weight"]}
    sizes = {"ln_1": C, "ln_2": C, "attn.c_attn": 3 * C, "attn.c_proj": C, "mlp.c_fc": 4 * C, "mlp.c_proj": C}
    for i in range(model.config.n_layer):
        for k in LAYER_KEYS:
            t = sd.get(f"blocks.{i}.{k}")
            if t is None:  # bias=False: GPT-2 always has a bias, zero is the same function
                t = torch.zeros(sizes[k.rsplit(".", 1)[0]])
            out[f"transformer.h.{i}.{k}"] = t.T if k in CONV1D else t
    out["transformer.ln_f.weight"] = sd["ln_f.weight"]
    out["transformer.ln_f.bias"] = sd.get("ln_f.bias", torch.zeros(C))
    return {k: v.detach().float().contiguous().cpu().clone() for k, v in out.items()}


def tokenizer_json(tok: Tokenizer) -> dict:
    """A ``tokenizers`` WordLevel tokenizer with ntp-probe's (and the original's) numbering: node i is "i", then
    '|' '=' '/' '$'. It reads the original's text ("2,8|5,2/5,8=") or spaced tokens; commas are dropped."""
    vocab = {str(i): i for i in range(tok.nodes)}
    vocab.update({"|": tok.pipe, "=": tok.eq, "/": tok.slash, "$": tok.dollar})
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [],
        "normalizer": {"type": "Replace", "pattern": {"String": ","}, "content": " "},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "WhitespaceSplit"},
                                                                 {"type": "Punctuation", "behavior": "Isolated"}]},
        "post_processor": None,
        "decoder": None,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"},  # no [UNK]: an unknown token is an error
    }


def hf_card(lm: ckpt.LoadedModel) -> str:
    t, obj, c = lm.task, lm.objective, lm.model.config
    tok = lm.tokenizer
    figures = {**(lm.meta.get("metrics") or {}), **(lm.meta.get("card") or {})}
    shown = [f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in figures.items()
             if isinstance(v, (int, float)) and not isinstance(v, bool)]
    answer = ("one forward pass over the question followed by `$` tokens (teacherless)" if obj.name == "teacherless"
              else f"greedy decoding of {t.path_len} tokens after the question")
    q = "s g / u v | u v … =" if t.query_first else "u v | u v … / s g ="
    lines = [
        "---",
        "library_name: transformers",
        "tags: [ntp-probe, path-star, planning, gpt2]",
        "---",
        "",
        f"# {lm.display_name}",
        "",
        f"A GPT-2 ({c.n_layer} layers, width {c.n_embd}, {c.n_head} heads) exported from "
        f"ntp-probe: trained with the **{obj.name}** objective on path-star graphs "
        f"{t.label()}; the answer runs {obj.answer_direction}.",
        "",
        "## Tokens",
        "",
        f"{c.vocab_size} tokens: node i is id i (0..{t.nodes - 1}), then `|` = {tok.pipe}, `=` = {tok.eq}, "
        f"`/` = {tok.slash}, `$` = {tok.dollar} (the numbering of the paper's code). A question reads `{q}`; "
        f"its answer is {answer}. `tokenizer.json` reads the original's text (`2,8|5,2/5,8=`).",
        "",
        "## Use",
        "",
        "```python",
        "import torch",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "",
        "model = AutoModelForCausalLM.from_pretrained(FOLDER).eval()",
        "tok = AutoTokenizer.from_pretrained(FOLDER)",
        "ids = torch.tensor([tok(QUESTION)['input_ids']])  # e.g. the question part of a line of the paper's data",
        "logits = model(ids).logits  # [1, T, vocab]: the same as ntp-probe's",
        "```",
        "",
        "Back into ntp-probe: `ntp-probe import FOLDER --from hf --out DIR`. The model's ntp-probe header is in "
        f"`config.json` under `{META_KEY}`. Batches here are of one graph shape, unpadded (ntp-probe's padded "
        "batches of several shapes shift each row's positions, which a plain GPT-2 call does not).",
    ]
    if shown:
        lines += ["", "## Figures (from ntp-probe)", "", "| metric | value |", "|---|---|", *shown]
    return "\n".join(lines) + "\n"


def export_hf(lm: ckpt.LoadedModel, out: str | Path, force: bool = False) -> Path:
    """Write ``out/`` (config.json, model.safetensors, tokenizer.json, tokenizer_config.json, README.md)."""
    out = Path(out)
    check_exportable(lm)
    common.check_out(out, force, (CONFIG_FILE, WEIGHTS_FILE), lm.path)
    cfg = hf_config(lm)
    sd = hf_state_dict(lm.model)
    out.mkdir(parents=True, exist_ok=True)

    def weights(tmp: str) -> None:
        try:
            save_file(sd, tmp, metadata={"format": "pt"})
        except SafetensorError as e:
            raise ckpt.as_os_error(e, str(out / WEIGHTS_FILE)) from None

    atomic_write(out / WEIGHTS_FILE, weights)
    atomic_write_text(out / TOKENIZER_FILE, json.dumps(tokenizer_json(lm.tokenizer), indent=1) + "\n")
    atomic_write_text(out / "tokenizer_config.json", json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": lm.model.config.block_size,
        "clean_up_tokenization_spaces": False}, indent=1) + "\n")
    atomic_write_text(out / "README.md", hf_card(lm))
    atomic_write_text(out / CONFIG_FILE, json.dumps(cfg, indent=1) + "\n")  # last: a folder with it is complete
    return out


# ------------------------------------------------------------------------------------------------
# In


def read_config(folder: Path) -> dict:
    if not folder.exists():
        raise ModelFileError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise ModelFileError(f"{folder}: is a file; --from hf reads a Hugging Face model folder (config.json + "
                             "model.safetensors)")
    path = folder / CONFIG_FILE
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG + 1)
    except FileNotFoundError:
        raise ModelFileError(f"{folder}: no {CONFIG_FILE}: not a Hugging Face model folder") from None
    except OSError as e:
        raise ModelFileError(f"{path}: cannot read it ({e.strerror or e.__class__.__name__})") from None
    if len(data) > MAX_CONFIG:
        raise ModelFileError(f"{path}: larger than {MAX_CONFIG >> 20} MiB, not a model's config")
    try:
        cfg = safe_loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise ModelFileError(f"{path}: not valid JSON ({_first(e)})") from None
    if not isinstance(cfg, dict):
        raise ModelFileError(f"{path}: holds {type(cfg).__name__}, not a JSON object")
    return cfg


def _first(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    return lines[0][:120] if lines else e.__class__.__name__


def config_from_hf(cfg: dict, where: str) -> GPTConfig:
    """Our GPT's config from a GPT-2 ``config.json``, or a ModelFileError naming what has no exact counterpart."""
    mt, archs = cfg.get("model_type"), cfg.get("architectures")
    if mt != "gpt2":
        what = f"a {_shown(mt)} model" if mt is not None else "no model_type"
        if isinstance(archs, list) and archs:
            what += f" ({', '.join(_shown(a) for a in archs[:2])})"
        raise ModelFileError(f"{where}: config.json describes {what}; only the GPT-2 architecture (model_type gpt2) imports")
    sizes = {}
    for key in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head"):
        v = cfg.get(key)
        if not is_int(v) or not 1 <= v <= ckpt.MAX_SIZE:
            raise ModelFileError(f"{where}: config.json's {key} is {_shown(v)}, not a whole number in "
                                 f"1..{ckpt.MAX_SIZE:,}")
        sizes[key] = v
    C, H = sizes["n_embd"], sizes["n_head"]
    if C % H:
        raise ModelFileError(f"{where}: config.json's n_embd {C} is not divisible by n_head {H}")
    act = cfg.get("activation_function", "gelu_new")
    if act not in GELU:
        raise ModelFileError(f"{where}: activation_function {_shown(act)}; ntp-probe's MLP has "
                             f"{' or '.join(GELU)}")
    checks = [
        ("layer_norm_epsilon", EPS, lambda v: is_real(v) and abs(v - EPS) <= 1e-12, "1e-05"),
        ("n_inner", None, lambda v: v is None or v == 4 * C, f"null or {4 * C} (4 x n_embd)"),
        ("scale_attn_weights", True, lambda v: v is True, "true"),
        ("scale_attn_by_inverse_layer_idx", False, lambda v: v is False, "false"),
        ("add_cross_attention", False, lambda v: v is False, "false"),
        ("tie_word_embeddings", True, lambda v: v is True, "true (the unembedding is the token embedding)"),
    ]
    for key, default, ok, want in checks:
        v = cfg.get(key, default)
        if not ok(v):
            raise ModelFileError(f"{where}: config.json's {key} is {_shown(v)}; ntp-probe's GPT needs {want}")
    drop = cfg.get("resid_pdrop", 0.0)
    drop = float(drop) if is_real(drop) and 0.0 <= drop < 1.0 else 0.0
    return GPTConfig(vocab_size=sizes["vocab_size"], block_size=sizes["n_positions"], n_layer=sizes["n_layer"],
                     n_head=H, n_embd=C, dropout=drop, bias=True, activation=GELU[act])


def _shown(x) -> str:
    text = repr(x)
    return text if len(text) <= 40 else text[:40] + "…"


def read_weights(folder: Path, config: GPTConfig, where: str) -> dict[str, torch.Tensor]:
    """GPT-2's tensors from ``model.safetensors``, under our names and layout, each checked."""
    path = folder / WEIGHTS_FILE
    if not path.is_file():
        if (folder / "model.safetensors.index.json").is_file():
            raise ModelFileError(f"{where}: sharded weights (model.safetensors.index.json); save it as one file "
                                 "(save_pretrained(DIR, max_shard_size='10GB'))")
        if (folder / "pytorch_model.bin").is_file():
            raise ModelFileError(f"{where}: only pytorch_model.bin; ntp-probe reads safetensors (save_pretrained saves "
                                 "model.safetensors by default)")
        raise ModelFileError(f"{where}: no {WEIGHTS_FILE}")
    data = ckpt.read_bytes(path)
    header, _ = ckpt.parse_header(path, data)
    for k, v in header.items():
        if v["dtype"] not in ckpt.FLOAT_DTYPES and not BUFFER.match(k.removeprefix("transformer.")):
            raise ModelFileError(f"{path}: tensor {_shown(k)} is {v['dtype']}; a model's weights are floating-point")
    try:
        raw = st_load(data)
    except (SafetensorError, RuntimeError, OSError, ValueError) as e:
        raise ModelFileError(f"{path}: not a readable safetensors file ({_first(e)})") from None
    del data
    sd = {}
    for k, v in raw.items():
        k = k.removeprefix("transformer.")
        if not BUFFER.match(k):
            sd[k] = v
    L, C, V, T = config.n_layer, config.n_embd, config.vocab_size, config.block_size
    shapes = {"wte.weight": (V, C), "wpe.weight": (T, C), "ln_f.weight": (C,), "ln_f.bias": (C,)}
    per = {"ln_1.weight": (C,), "ln_1.bias": (C,), "attn.c_attn.weight": (C, 3 * C), "attn.c_attn.bias": (3 * C,),
           "attn.c_proj.weight": (C, C), "attn.c_proj.bias": (C,), "ln_2.weight": (C,), "ln_2.bias": (C,),
           "mlp.c_fc.weight": (C, 4 * C), "mlp.c_fc.bias": (4 * C,), "mlp.c_proj.weight": (4 * C, C),
           "mlp.c_proj.bias": (C,)}
    for i in range(L):
        shapes.update({f"h.{i}.{k}": s for k, s in per.items()})
    missing = [k for k in shapes if k not in sd]
    if missing:
        raise ModelFileError(f"{path}: missing GPT-2 tensors: {', '.join(missing[:3])}"
                             f"{f' … ({len(missing)} in all)' if len(missing) > 3 else ''}")
    unexpected = sorted(set(sd) - set(shapes) - {"lm_head.weight"})
    if unexpected:
        raise ModelFileError(f"{path}: tensors that are not GPT-2's of config.json: {', '.join(unexpected[:3])}"
                             f"{f' … ({len(unexpected)} in all)' if len(unexpected) > 3 else ''}")
    for k, want in shapes.items():
        if tuple(sd[k].shape) != want:
            raise ModelFileError(f"{path}: {k} is {list(sd[k].shape)}; config.json's GPT-2 has {list(want)}")
    head = sd.get("lm_head.weight")
    if head is not None and (tuple(head.shape) != (V, C) or not torch.equal(head, sd["wte.weight"])):
        raise ModelFileError(f"{path}: lm_head.weight differs from the token embedding; ntp-probe's GPT ties them")
    ours = {"wte.weight": sd["wte.weight"], "wpe.weight": sd["wpe.weight"], "ln_f.weight": sd["ln_f.weight"],
            "ln_f.bias": sd["ln_f.bias"]}
    for i in range(L):
        for k in LAYER_KEYS:
            t = sd[f"h.{i}.{k}"]
            ours[f"blocks.{i}.{k}"] = t.T if k in CONV1D else t
    ours = {k: v.detach().float().contiguous() for k, v in ours.items()}
    for k, v in ours.items():
        if not bool(torch.isfinite(v).all()):
            raise ModelFileError(f"{path}: {k} holds NaN or infinite values; the model is broken")
    return ours


def check_tokenizer(folder: Path, nodes: int, where: str) -> None:
    """A ``tokenizer.json`` beside the model (optional) must number the tokens as ntp-probe does."""
    path = folder / TOKENIZER_FILE
    if not path.is_file():
        return
    try:
        tj = safe_loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError, RecursionError) as e:
        raise ModelFileError(f"{path}: not valid JSON ({_first(e)})") from None
    vocab = tj.get("model", {}).get("vocab") if isinstance(tj, dict) and isinstance(tj.get("model"), dict) else None
    if not isinstance(vocab, dict):
        return  # not a word-level vocabulary: nothing to compare
    tok = Tokenizer(nodes)
    want = {str(i): i for i in range(nodes)} | {"|": tok.pipe, "=": tok.eq, "/": tok.slash, "$": tok.dollar}
    for text, i in want.items():
        if vocab.get(text) != i:
            raise ModelFileError(f"{where}: its tokenizer.json numbers {text!r} as {_shown(vocab.get(text))}; "
                                 f"ntp-probe's (the paper's) numbering for N={nodes} has {text!r} = {i}")


def import_hf(folder: str | Path, out: str | Path, degree: int | None = None, path_len: int | None = None,
              nodes: int | None = None, objective: str | None = None, force: bool = False,
              argv: list[str] | None = None) -> Path:
    """Read a GPT-2 Hugging Face folder and write it as an ntp-probe model in ``out``; everything is checked first."""
    folder, out = Path(folder), Path(out)
    common.check_out(out, force, source=folder / WEIGHTS_FILE)
    where = str(folder)
    cfg = read_config(folder)
    config = config_from_hf(cfg, where)
    header = cfg.get(META_KEY)
    if header is not None:  # ours: the task, objective and everything else come back from the header
        task, obj, meta = _our_header(header, config, where)
        for flag, given, have in (("-d", degree, task.degree), ("-l", path_len, task.path_len), ("-N", nodes, task.nodes),
                                  ("--objective", objective, obj.name)):
            if given is not None and given != have:
                raise UsageError(f"{flag} {given}: {where} was exported by ntp-probe with {flag} {have}")
        common.nodes_of(config.vocab_size, task.nodes, where)
    else:
        obj = common.gpt_objective(objective or "next-token", None, "GPT-2")
        n = common.nodes_of(config.vocab_size, nodes, where)
        task = common.infer_task(config.block_size, n, degree, path_len, obj, where)
        meta = None
    check_tokenizer(folder, task.nodes, where)
    weights = read_weights(folder, config, where)
    if task.seq_len + obj.extra_context > config.block_size:
        raise ModelFileError(f"{where}: n_positions {config.block_size} is shorter than the task's "
                             f"{task.seq_len + obj.extra_context} tokens")
    model = GPT(config)
    missing, unexpected = model.load_state_dict(weights, strict=False)
    assert set(missing) <= {"lm_head.weight"} and not unexpected, (missing, unexpected)
    model.eval()
    imported = {"from": SOURCE, "folder": folder.name}
    if meta is not None:
        meta = {**meta, "config": config.to_dict(), "imported": imported}
    else:
        meta = ckpt.make_meta(model, task, obj, imported=imported)
    figures = (meta.get("card") or {}).get("accuracy")
    card = common.imported_card(out, model, task, obj, [
        f"A Hugging Face GPT-2 folder, `{folder.name}`"
        + (" (exported by ntp-probe: its header came back from config.json)" if header is not None else "") + ".",
    ], common.command_line(argv), [
        "- mapped weight for weight from GPT2LMHeadModel (see `ntp_probe/interop/hf.py`)",
        *([f"- greedy accuracy on its card before export: {figures:.4f}"] if is_real(figures) else []),
    ])
    return common.write_model(out, model, meta, card)


def _our_header(header, config: GPTConfig, where: str):
    bad = f"{where}: config.json's {META_KEY} section is not an ntp-probe model header"
    if not isinstance(header, dict) or header.get("format") != ckpt.FORMAT:
        raise ModelFileError(f"{bad} (no format {ckpt.FORMAT!r})")
    for key in ("config", "task", "objective"):
        if not isinstance(header.get(key), dict):
            raise ModelFileError(f"{bad} (no '{key}' section)")
    try:
        ckpt.check_meta(Path(where), {**header, "config": config.to_dict()})
        task = ckpt.TaskSpec.from_meta(header["task"])
        obj = objective_from_meta(header["objective"])
    except (ModelFileError, KeyError, TypeError, ValueError, UsageError) as e:
        raise ModelFileError(f"{bad} ({_first(e)})") from None
    if obj.heads != 1 or not obj.causal or any(getattr(config, k) != v for k, v in obj.model_fields(0).items()):
        raise ModelFileError(f"{bad} (its objective {obj.name} is not one a GPT-2 holds)")
    arch = {k: header["config"].get(k) for k in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd")}
    if arch != {k: getattr(config, k) for k in arch}:
        raise ModelFileError(f"{bad}: its config {arch} disagrees with config.json's GPT-2 fields")
    return task, obj, dict(header)

