"""Export a GPT to TransformerLens (``pip install ntp-probe[interp]``): a ``HookedTransformer`` with our weights,
so the usual mechanistic-interpretability tools (activation caching, patching, hooks) work on shipped models.

The mapping is exact (no LayerNorm folding or weight centering): the hooked model's logits equal ours.
Multi-token models export their first head (the one decoding uses); ``mlm-u`` models export with
bidirectional attention. Mamba has no TransformerLens counterpart.

The file is a safetensors file (no pickles): the hooked model's weights, with the TransformerLens config
and our own metadata in its header; ``load_hooked(path)`` rebuilds the model.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .atomic import atomic_write
from .checkpoint import LoadedModel, as_os_error
from .errors import ModelFileError, UsageError

FORMATS = ("transformer-lens",)
TL_KEY = "transformer_lens_config"


def _require_tl():
    try:
        import transformer_lens  # noqa: F401
        from transformer_lens import HookedTransformer, HookedTransformerConfig
    except ImportError as e:
        raise UsageError(
            f"--to transformer-lens needs TransformerLens 3.x with HookedTransformer ({e.__class__.__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}); install it with: pip install 'ntp-probe[interp]'"
        ) from None
    return HookedTransformer, HookedTransformerConfig


def tl_config_dict(lm: LoadedModel) -> dict:
    if lm.arch != "gpt":
        raise UsageError(f"{lm.display_name} is a {lm.arch} model; only GPT models can be exported to TransformerLens")
    c = lm.model.config
    if c.hidden_token >= 0:
        raise UsageError(f"{lm.display_name} hides its masked tokens from attention (mlm-u --drop-masked), which a "
                         "HookedTransformer cannot express; export an mlm-u model trained without --drop-masked")
    if c.bst:
        raise UsageError(f"{lm.display_name} is a belief state transformer (a forward and a backward encoder with an MLP "
                         "head), which a HookedTransformer cannot express")
    return {
        "n_layers": c.n_layer,
        "d_model": c.n_embd,
        "n_ctx": c.block_size,
        "d_head": c.n_embd // c.n_head,
        "n_heads": c.n_head,
        "d_mlp": 4 * c.n_embd,
        "d_vocab": c.vocab_size,
        "act_fn": "gelu_new" if c.activation == "gelu_tanh" else "gelu",  # F.gelu exact (erf), or its tanh approximation
        "normalization_type": "LN",
        "eps": 1e-5,
        "positional_embedding_type": "standard",
        "attention_dir": "causal" if c.causal else "bidirectional",
        "default_prepend_bos": False,
        "model_name": lm.display_name,
    }


def hooked_state_dict(lm: LoadedModel) -> dict[str, torch.Tensor]:
    """Our GPT weights under TransformerLens names and shapes."""
    m, c = lm.model, lm.model.config
    C, H = c.n_embd, c.n_head
    hd = C // H

    def bias(lin: torch.nn.Linear, n: int) -> torch.Tensor:
        return lin.bias.detach() if lin.bias is not None else torch.zeros(n)

    def ln(mod: torch.nn.LayerNorm) -> tuple[torch.Tensor, torch.Tensor]:
        return mod.weight.detach(), (mod.bias.detach() if mod.bias is not None else torch.zeros(C))

    sd = {"embed.W_E": m.wte.weight.detach(), "pos_embed.W_pos": m.wpe.weight.detach()}
    for i, blk in enumerate(m.blocks):
        p = f"blocks.{i}."
        sd[p + "ln1.w"], sd[p + "ln1.b"] = ln(blk.ln_1)
        sd[p + "ln2.w"], sd[p + "ln2.b"] = ln(blk.ln_2)
        w = blk.attn.c_attn.weight.detach()  # [3C, C], rows q|k|v
        b = bias(blk.attn.c_attn, 3 * C)
        for j, name in enumerate("QKV"):
            sd[p + f"attn.W_{name}"] = w[j * C : (j + 1) * C].T.reshape(C, H, hd).permute(1, 0, 2)
            sd[p + f"attn.b_{name}"] = b[j * C : (j + 1) * C].reshape(H, hd)
        sd[p + "attn.W_O"] = blk.attn.c_proj.weight.detach().T.reshape(H, hd, C)
        sd[p + "attn.b_O"] = bias(blk.attn.c_proj, C)
        sd[p + "mlp.W_in"] = blk.mlp.c_fc.weight.detach().T
        sd[p + "mlp.b_in"] = bias(blk.mlp.c_fc, 4 * C)
        sd[p + "mlp.W_out"] = blk.mlp.c_proj.weight.detach().T
        sd[p + "mlp.b_out"] = bias(blk.mlp.c_proj, C)
    sd["ln_final.w"], sd["ln_final.b"] = ln(m.ln_f)
    sd["unembed.W_U"] = m.lm_head.weight.detach().T
    sd["unembed.b_U"] = torch.zeros(c.vocab_size)
    return {k: v.float().contiguous().cpu().clone() for k, v in sd.items()}


def _build(cfg_dict: dict, sd: dict[str, torch.Tensor]):
    HookedTransformer, HookedTransformerConfig = _require_tl()
    model = HookedTransformer(HookedTransformerConfig(**cfg_dict, device="cpu"))
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.endswith(("attn.mask", "attn.IGNORE"))]
    if missing or unexpected:
        raise ModelFileError(f"TransformerLens weights do not match (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model.eval()


def to_hooked_transformer(lm: LoadedModel):
    """A TransformerLens ``HookedTransformer`` with this model's weights (head 0 for multi-token models)."""
    return _build(tl_config_dict(lm), hooked_state_dict(lm))


def export(lm: LoadedModel, to: str, out: str | Path) -> Path:
    if to not in FORMATS:
        raise UsageError(f"--to {to}: choose one of {', '.join(FORMATS)}")
    cfg = tl_config_dict(lm)
    _require_tl()
    sd = hooked_state_dict(lm)
    _build(cfg, sd)  # check it builds before writing anything
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    from .checkpoint import META_KEY

    out = Path(out)
    meta = {TL_KEY: json.dumps(cfg), META_KEY: json.dumps(lm.meta)}
    try:
        atomic_write(out, lambda tmp: save_file(sd, tmp, metadata=meta))
    except SafetensorError as e:
        raise UsageError(f"--out {out}: cannot write ({as_os_error(e, str(out)).strerror})") from None
    except OSError as e:
        raise UsageError(f"--out {out}: cannot write ({e.strerror or e})") from None
    return out


def load_hooked(path: str | Path):
    """Rebuild the ``HookedTransformer`` from an exported file; ``model.cfg`` is its config."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            sd = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError) as e:
        raise ModelFileError(f"{path}: not a readable safetensors file ({e.__class__.__name__})") from None
    if TL_KEY not in header:
        raise ModelFileError(f"{path}: not a TransformerLens export of ntp-probe (no '{TL_KEY}' metadata)")
    return _build(json.loads(header[TL_KEY]), sd)
