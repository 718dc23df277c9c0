"""A small GPT in the style of nanoGPT: one config dataclass, pre-LayerNorm blocks, learned positions,
causal ``scaled_dot_product_attention``, tied embeddings, optional dropout.

Decoding support lives here too: a KV cache (``KVCache``) for step-by-step decoding, the
per-layer/per-head attention weights of a step on request, the residual stream after every
layer (for the logit lens), and ``n_future`` extra output heads for multi-token prediction.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode


class _SkipInit(TorchFunctionMode):
    """Initialisers (``nn.init.*``, ``Tensor.normal_``/``uniform_``) do nothing: for a meta-device skeleton, whose
    values do not exist, where the first one would import torch._dynamo (about 1.2 s of CPU in every process that
    checks a model file or a training's size)."""

    INIT = frozenset({*(getattr(nn.init, n) for n in dir(nn.init) if n.endswith("_") and not n.startswith("_")),
                      torch.Tensor.normal_, torch.Tensor.uniform_})

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in self.INIT:
            return args[0] if args else (kwargs or {}).get("tensor")
        return func(*args, **(kwargs or {}))


@contextmanager
def skeleton() -> Iterator[None]:
    """Modules built inside are on the meta device (shapes and dtypes, no memory, no values) and skip their
    initialisers: what checking a model file's shapes or a training's parameter count needs."""
    with torch.device("meta"), _SkipInit():
        yield


@dataclass
class GPTConfig:
    vocab_size: int
    block_size: int
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = True
    n_future: int = 1  # output heads: head j predicts token t+1+j; decoding uses head 0
    arch: str = "gpt"
    causal: bool = True  # False: bidirectional attention (the mlm-u objective); no KV cache then
    hidden_token: int = -1  # mlm-u --drop-masked: this token id (the mask) is a query only, embedded as its
    # position alone and attended to by no other position, as if dropped from the encoder (-1: none)
    bst: bool = False  # the Belief State Transformer (bst.py): this GPT is its forward encoder, beside a backward
    # encoder and a next/previous-token head
    d_state: int = 16  # Mamba only: SSM state size per channel
    d_conv: int = 4  # Mamba only: causal depthwise conv width
    expand: int = 2  # Mamba only: inner width = expand * n_embd
    activation: str = "gelu"  # the MLP's GELU: "gelu" (exact, erf) or "gelu_tanh" (the tanh approximation of GPT-2
    # and of the paper's code, models imported from it: interop/ntf.py)

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["activation"] == "gelu":  # the default is not written: every header from before it stays as it was
            del d["activation"]
        return d

    @staticmethod
    def from_dict(d: dict) -> GPTConfig:
        known = GPTConfig.__dataclass_fields__
        return GPTConfig(**{k: v for k, v in d.items() if k in known})


@dataclass
class KVCache:
    """Keys and values per layer, [B, H, T, hd] each; grows as tokens are appended."""

    keys: list[torch.Tensor | None] = field(default_factory=list)
    values: list[torch.Tensor | None] = field(default_factory=list)
    pad: torch.Tensor | None = None  # [B, T] which cached positions are padding (None: a batch without padding)

    @property
    def length(self) -> int:
        return 0 if not self.keys or self.keys[0] is None else self.keys[0].shape[2]

    def select(self, index: torch.Tensor) -> KVCache:
        """Reorder/duplicate batch rows (beam search)."""
        return KVCache([k[index] for k in self.keys], [v[index] for v in self.values],
                       None if self.pad is None else self.pad[index])

    def truncate(self, length: int) -> KVCache:
        return KVCache([k[:, :, :length] for k in self.keys], [v[:, :, :length] for v in self.values],
                       None if self.pad is None else self.pad[:, :length])


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        assert cfg.n_embd % cfg.n_head == 0, "n_embd must be divisible by n_head"
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.resid_dropout = nn.Dropout(cfg.dropout)
        self.n_head, self.dropout = cfg.n_head, cfg.dropout
        self.causal = cfg.causal

    def forward(self, x, cache: KVCache | None = None, layer: int = 0, want_attn: bool = False,
                mask: torch.Tensor | None = None, parts: list | None = None):
        """``mask`` ([B, 1, T, T_total] bool, True = may attend) replaces the causal mask in padded batches.
        ``parts`` (a list): each head's output as it enters the residual stream ([B, T, C], ``c_proj``'s slice
        of the head, no bias) and the bias are appended to it, named ``head h`` (from 1) and ``attn bias``."""
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        past = 0
        if cache is not None:
            if len(cache.keys) <= layer:
                cache.keys.append(k)
                cache.values.append(v)
            else:
                past = cache.keys[layer].shape[2]
                k = cache.keys[layer] = torch.cat([cache.keys[layer], k], dim=2)
                v = cache.values[layer] = torch.cat([cache.values[layer], v], dim=2)
        attn = None
        if mask is not None:  # a padded batch: causal (or not) and no padding keys, the softmax in fp32
            scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))
            p = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1, dtype=torch.float32)
            if self.training and self.dropout:
                p = F.dropout(p, self.dropout)
            attn = p if want_attn else None
            y = p.to(v.dtype) @ v
        elif not self.causal:  # bidirectional (mlm-u): every position sees the whole sequence
            if want_attn:
                attn = ((q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])).softmax(dim=-1)
                y = attn.to(v.dtype) @ v
            else:
                y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        elif want_attn:
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
            mask = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(diagonal=past)
            attn = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)
            y = attn.to(v.dtype) @ v
        elif past == 0 and q.device.type == "cpu" and q.dtype == torch.bfloat16 and not (self.training and self.dropout):
            # CPU bf16 (autocast training): the fused kernel is slower than plain matmuls for these short
            # sequences (fwd+bwd per layer at B=256, T=31, 6 heads: 74 ms vs 21 ms; benchmarks/RESULTS.md)
            y = causal_attention(q, k, v)
        elif past == 0:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        elif T == 1:
            y = F.scaled_dot_product_attention(q, k, v)
        else:
            mask = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(diagonal=past)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        if parts is not None:
            w = self.c_proj.weight.view(C, self.n_head, C // self.n_head)  # [C_out, heads, head dim]
            per_head = torch.einsum("bhtd,chd->hbtc", y.to(w.dtype), w)
            parts += [(f"head {h + 1}", per_head[h]) for h in range(self.n_head)]
            if self.c_proj.bias is not None:
                parts.append(("attn bias", self.c_proj.bias.expand(B, T, C)))
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y)), attn


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal attention as plain matmuls, the softmax in fp32 (what SDPA computes, without its fused kernel)."""
    T = q.shape[-2]
    scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))
    mask = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    return scores.masked_fill(~mask, float("-inf")).softmax(dim=-1, dtype=torch.float32).to(v.dtype) @ v


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)
        self.approximate = "tanh" if cfg.activation == "gelu_tanh" else "none"

    def forward(self, x):
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate=self.approximate)))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x, cache=None, layer=0, want_attn=False, mask=None, parts=None):
        a, attn = self.attn(self.ln_1(x), cache, layer, want_attn, mask, parts)
        x = x + a
        m = self.mlp(self.ln_2(x))
        if parts is not None:
            parts.append(("mlp", m))
        return x + m, attn


@dataclass
class Output:
    logits: torch.Tensor  # [B, T, V] (head 0), or [B, T, H, V] with all_heads
    attentions: list[torch.Tensor] | None = None  # per layer [B, heads, T, T_total]
    hidden: list[torch.Tensor] | None = None  # residual stream: embeddings, then after each layer
    parts: list[tuple[str, torch.Tensor]] | None = None  # what each layer writes into the residual stream: (name,
    # [B, T, C]); with the embeddings (``hidden[0]``) they sum to the last layer's residual (want_parts)


class GPT(nn.Module):
    unpadded = False  # set by the training loop around a one-shape batch (``assume_unpadded``): _embed skips its check

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.config = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        # extra multi-token heads: one transformer block each, sharing ln_f and the unembedding
        self.future = nn.ModuleList(Block(cfg) for _ in range(cfg.n_future - 1))
        self.ln_f = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)

    def new_cache(self) -> KVCache:
        return KVCache()

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters()) - self.wpe.weight.numel()

    def forward(
        self,
        idx: torch.Tensor,
        cache: KVCache | None = None,
        want_attn: bool = False,
        want_hidden: bool = False,
        all_heads: bool = False,
        edit: Callable[[int, torch.Tensor], torch.Tensor] | None = None,
        knockout: torch.Tensor | None = None,
        want_parts: bool = False,
    ) -> Output:
        """The causal probes' hooks: ``edit(layer, x)`` reads the residual stream [B, T, C] after the embeddings
        (layer 0) and after each block (layer i + 1) and returns it, changed or not (activation patching);
        ``knockout`` ([B, T] bool) hides those positions as keys from every other position (each still sees
        itself); ``want_parts`` records each head's, attention bias's and MLP's output (``Output.parts``)."""
        parts = [] if want_parts else None
        x, mask, attns, hidden = self.trunk(idx, cache, want_attn, want_hidden, edit, knockout, parts)
        logits = self.readout(x)
        if all_heads:
            extra = [self.lm_head(self.ln_f(head(x, mask=mask)[0])) for head in self.future]
            logits = torch.stack([logits, *extra], dim=2)
        return Output(logits, attns, hidden, parts)

    def trunk(self, idx: torch.Tensor, cache: KVCache | None = None, want_attn: bool = False, want_hidden: bool = False,
              edit: Callable[[int, torch.Tensor], torch.Tensor] | None = None, knockout: torch.Tensor | None = None,
              parts: list | None = None):
        """The residual stream after the last block [B, T, C], the attention mask used (None: the plain causal
        one), and the attentions and residual streams asked for; ``edit``, ``knockout`` and ``parts`` as ``forward``'s
        hooks (``parts``: a list the parts are appended to)."""
        x, mask = self._embed(idx, cache)
        if knockout is not None:
            mask = self._knock_out(knockout, mask)
        if edit is not None:
            x = edit(0, x)
        attns, hidden = ([] if want_attn else None), ([x] if want_hidden else None)
        for i, block in enumerate(self.blocks):
            layer_parts = [] if parts is not None else None
            x, a = block(x, cache, i, want_attn, mask, layer_parts)
            if parts is not None:
                parts += [(f"block {i + 1} {name}", t) for name, t in layer_parts]
            if edit is not None:
                x = edit(i + 1, x)
            if want_attn:
                attns.append(a)
            if want_hidden:
                hidden.append(x)
        return x, mask, attns, hidden

    def resume(self, idx: torch.Tensor, x: torch.Tensor, layer: int, row: int) -> torch.Tensor:
        """Head-0 logits [B, V] at position ``row`` from a residual stream ``x`` taken after ``layer`` (0: the
        embeddings) for the input ``idx`` (its masks): the blocks after ``layer`` only, no cache, the last of them
        for ``row``'s query alone. Patching runs each layer's grid from the layer it patches."""
        _, mask = self._embed(idx, None)
        n = len(self.blocks)
        for i in range(layer, n - 1):
            x, _ = self.blocks[i](x, None, i, False, mask)
        if layer < n:
            x = self._block_at(self.blocks[n - 1], x, mask, row)
        else:
            x = x[:, row]
        return self.readout(x)

    def _block_at(self, block: Block, x: torch.Tensor, mask: torch.Tensor | None, row: int) -> torch.Tensor:
        """A block's output [B, C] at one position: every key and value, one query (what the readout needs)."""
        B, T, C = x.shape
        att = block.attn
        h = att.c_attn(block.ln_1(x))
        q, k, v = h[:, row:row + 1, :C], h[..., C:2 * C], h[..., 2 * C:]
        q, k, v = (t.view(B, t.shape[1], att.n_head, C // att.n_head).transpose(1, 2) for t in (q, k, v))
        if mask is None:
            keys = torch.arange(T, device=x.device)
            m = ((keys <= row) if self.config.causal else torch.ones(T, dtype=torch.bool, device=x.device))[None, None, None]
        else:
            m = mask[:, :, row:row + 1]
        scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))
        p = scores.masked_fill(~m, float("-inf")).softmax(dim=-1, dtype=torch.float32)
        y = (p.to(v.dtype) @ v).transpose(1, 2).reshape(B, C)
        xr = x[:, row] + att.c_proj(y)
        return xr + block.mlp(block.ln_2(xr))

    def _knock_out(self, keys: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """The attention mask with ``keys`` ([B, T] bool) seen by no position but itself."""
        B, T = keys.shape
        if mask is None:
            mask = torch.ones(T, T, dtype=torch.bool, device=keys.device)
            mask = (mask.tril() if self.config.causal else mask)[None, None]
        own = torch.eye(T, dtype=torch.bool, device=keys.device)
        return mask & (~keys[:, None, :] | own)[:, None]

    def _embed(self, idx: torch.Tensor, cache: KVCache | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The embeddings [B, T, C] (token + position) and the attention mask (None: the plain causal model)."""
        B, T = idx.shape
        past = cache.length if cache is not None else 0
        if past + T > self.config.block_size:
            raise ValueError(f"sequence of {past + T} tokens exceeds the model's context of {self.config.block_size}")
        pad = idx < 0  # PAD tokens (tokenizer.PAD): batches of graphs of several sizes
        mask = None
        # a training batch of one shape is known to have no padding (``unpadded``): no check, a host sync on CUDA
        if (cache is not None and cache.pad is not None) or (not (self.unpadded and cache is None) and bool(pad.any())):
            pos, mask = self._padding(pad, cache, past)
            tok = self.wte(idx.clamp_min(0))
        else:  # no padding: the plain causal model (its fast paths)
            pos = torch.arange(past, past + T, device=idx.device)
            tok = self.wte(idx)
        if self.config.hidden_token >= 0 and bool((hid := idx == self.config.hidden_token).any()):
            tok = tok.masked_fill(hid[..., None], 0.0)
            mask = self._hide(hid, mask, past)
        return self.drop(tok + self.wpe(pos)), mask

    def _padding(self, pad: torch.Tensor, cache: KVCache | None, past: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Positions [B, T] counted from each row's first real token, and the attention mask [B, 1, T, past+T]:
        a row's real tokens see exactly what they would see without its padding (a padding query sees itself)."""
        B, T = pad.shape
        dev = pad.device
        before = torch.zeros(B, 1, dtype=torch.long, device=dev)
        keys_pad = pad
        if cache is not None:
            old = cache.pad if cache.pad is not None else torch.zeros(B, past, dtype=torch.bool, device=dev)
            before = (~old).sum(1, keepdim=True)
            keys_pad = torch.cat([old, pad], dim=1)
            cache.pad = keys_pad
        real = (~pad).long()
        pos = (before + real.cumsum(1) - real).masked_fill(pad, 0)
        q = torch.arange(past, past + T, device=dev)[:, None]
        k = torch.arange(past + T, device=dev)[None, :]
        allowed = (k <= q) if self.config.causal else torch.ones(T, past + T, dtype=torch.bool, device=dev)
        mask = (allowed[None] & ~keys_pad[:, None, :]) | (k == q)[None]
        return pos, mask[:, None]

    def _hide(self, hidden: torch.Tensor, mask: torch.Tensor | None, past: int) -> torch.Tensor:
        """The attention mask with the ``hidden_token`` positions ([B, T] bool) seen by themselves only: every
        other position reads the sequence as if they were not there (they keep their position embedding alone)."""
        if past:
            raise ValueError("a model with a hidden token decodes without a KV cache")
        T = hidden.shape[1]
        own = torch.eye(T, dtype=torch.bool, device=hidden.device)
        visible = (~hidden[:, None, :] | own)[:, None]  # [B, 1, T, T]
        if mask is None:
            mask = torch.ones(T, T, dtype=torch.bool, device=hidden.device)
            mask = (mask.tril() if self.config.causal else mask)[None, None]
        return mask & visible

    def readout(self, h: torch.Tensor) -> torch.Tensor:
        """Logit lens: final LayerNorm + unembedding applied to a residual-stream state."""
        return self.lm_head(self.ln_f(h))

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token (forward + backward), PaLM-style estimate: 6N + 12·L·C·T."""
        cfg = self.config
        return 6 * self.num_params() + 12 * (cfg.n_layer + cfg.n_future - 1) * cfg.n_embd * seq_len


@contextlib.contextmanager
def assume_unpadded(model: nn.Module, on: bool = True):
    """Inside: ``model``'s forward passes without a cache take their input as unpadded (no ``pad.any()`` host sync per
    forward on CUDA). The training loop of a one-shape run uses it; its batches hold no padding."""
    old = getattr(model, "unpadded", False)
    model.unpadded = on
    try:
        yield
    finally:
        model.unpadded = old
