"""Mamba: a selective state-space language model (Gu & Dao 2023) in plain PyTorch.

No CUDA kernels: the selective scan is the readable sequential recurrence

    h_t = exp(Δ_t A) ⊙ h_{t-1} + (Δ_t x_t) B_t          (per channel, a d_state-dim state)
    y_t = C_t · h_t + D x_t

with Δ_t, B_t, C_t computed from the input (that is the "selective" part). Sequences here are ~30
tokens, so a Python loop over time is fast enough and easy to read.

The model takes the same ``GPTConfig`` as the GPT (``arch="mamba"``; ``n_embd``, ``n_layer``,
``d_state``, ``d_conv``, ``expand``) and offers the same interface: ``forward(idx, cache, want_attn,
want_hidden, all_heads) -> Output``, ``new_cache()``, ``readout(h)``, ``num_params()``,
``flops_per_token(seq_len)``. Its cache is a recurrent state (the last ``d_conv - 1`` conv inputs and
the SSM state per layer), so ``decoding.greedy`` runs it unchanged: a chunk first, then one token at a time.
There is no attention: ``want_attn`` gives ``attentions=None``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from .model import GPTConfig, Output


@dataclass
class MambaCache:
    """Recurrent state per layer: conv inputs [B, d_inner, d_conv-1] and SSM state [B, d_inner, d_state]."""

    conv: list[torch.Tensor] = field(default_factory=list)
    ssm: list[torch.Tensor] = field(default_factory=list)
    length: int = 0  # tokens consumed so far

    def select(self, index: torch.Tensor) -> MambaCache:
        """Reorder/duplicate batch rows (beam search)."""
        return MambaCache([c[index] for c in self.conv], [s[index] for s in self.ssm], self.length)


class MambaMixer(nn.Module):
    """The selective SSM block: in-projection, causal depthwise conv, selective scan, gated out-projection."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        d, di, n = cfg.n_embd, cfg.expand * cfg.n_embd, cfg.d_state
        self.d_inner, self.d_state, self.d_conv = di, n, cfg.d_conv
        self.dt_rank = math.ceil(d / 16)
        self.in_proj = nn.Linear(d, 2 * di, bias=False)
        self.conv1d = nn.Conv1d(di, di, kernel_size=cfg.d_conv, groups=di, bias=True)
        self.x_proj = nn.Linear(di, self.dt_rank + 2 * n, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, di, bias=True)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, n + 1, dtype=torch.float32)).repeat(di, 1))  # A = -exp(A_log)
        self.D = nn.Parameter(torch.ones(di))
        self.out_proj = nn.Linear(di, d, bias=False)
        self.dropout = nn.Dropout(cfg.dropout)

    def reset_dt(self, dt_min: float = 1e-3, dt_max: float = 1e-1) -> None:
        """Mamba's Δ initialisation: softplus(bias) log-uniform in [dt_min, dt_max]."""
        with torch.no_grad():
            dt = torch.exp(torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
            nn.init.uniform_(self.dt_proj.weight, -self.dt_rank**-0.5, self.dt_rank**-0.5)

    def forward(self, u: torch.Tensor, cache: MambaCache | None = None, layer: int = 0) -> torch.Tensor:
        B, T, _ = u.shape
        x, z = self.in_proj(u).chunk(2, dim=-1)  # [B, T, di] each
        x = x.transpose(1, 2)  # [B, di, T]
        # causal depthwise conv: left context is the cached inputs (zeros at the start of a sequence)
        if cache is not None and len(cache.conv) > layer:
            past = cache.conv[layer]
        else:
            past = x.new_zeros(B, self.d_inner, self.d_conv - 1)
        xc = torch.cat([past, x], dim=2)
        x = F.silu(self.conv1d(xc)).transpose(1, 2)  # [B, T, di]
        dt, Bm, Cm = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.softplus(self.dt_proj(dt))  # [B, T, di]
        A = -torch.exp(self.A_log.float())  # [di, n]
        h = cache.ssm[layer] if cache is not None and len(cache.ssm) > layer else x.new_zeros(B, self.d_inner, self.d_state)
        y, h = selective_scan(x, dt, A, Bm, Cm, self.D, h)
        if cache is not None:
            new_conv = xc[:, :, xc.shape[2] - (self.d_conv - 1):]
            if len(cache.conv) > layer:
                cache.conv[layer], cache.ssm[layer] = new_conv, h
            else:
                cache.conv.append(new_conv)
                cache.ssm.append(h)
        return self.dropout(self.out_proj(y * F.silu(z)))


def selective_scan(x, dt, A, Bm, Cm, D, h):
    """The recurrence, one step per token. x, dt: [B, T, di]; A: [di, n]; Bm, Cm: [B, T, n]; h: [B, di, n].
    Returns y [B, T, di] and the final state. The decay and input terms are built one step at a time:
    a [B, T, di, n] tensor of them would be gigabytes for an evaluation batch."""
    ys = []
    # unbind once (indexing [:, t] in the loop would make backward build a full-size gradient per step)
    for dt_t, x_t, b_t, c_t in zip(dt.unbind(1), x.unbind(1), Bm.unbind(1), Cm.unbind(1)):
        h = torch.exp(dt_t.unsqueeze(-1) * A) * h + (dt_t * x_t).unsqueeze(-1) * b_t.unsqueeze(1)
        ys.append(torch.bmm(h, c_t.unsqueeze(-1)).squeeze(-1))
    y = torch.stack(ys, dim=1) + x * D
    return y, h


class ResidualBlock(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.norm = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.mixer = MambaMixer(cfg)

    def forward(self, x, cache=None, layer=0):
        return x + self.mixer(self.norm(x), cache, layer)


class Mamba(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.config = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(ResidualBlock(cfg) for _ in range(cfg.n_layer))
        self.future = nn.ModuleList(ResidualBlock(cfg) for _ in range(cfg.n_future - 1))  # multi-token heads
        self.ln_f = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, mean=0.0, std=0.02)
        for blk in [*self.blocks, *self.future]:
            blk.mixer.reset_dt()
            nn.init.normal_(blk.mixer.out_proj.weight, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    def new_cache(self) -> MambaCache:
        return MambaCache()

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(
        self,
        idx: torch.Tensor,
        cache: MambaCache | None = None,
        want_attn: bool = False,
        want_hidden: bool = False,
        all_heads: bool = False,
        edit: Callable[[int, torch.Tensor], torch.Tensor] | None = None,
        knockout: torch.Tensor | None = None,
        want_parts: bool = False,
    ) -> Output:
        """The causal probes' hooks, as the GPT's: ``edit(layer, x)`` reads and may replace the residual stream
        after the embeddings (0) and each block; ``want_parts`` records each block's mixer output
        (``block i mixer``). ``knockout`` has no meaning without attention keys: a ValueError."""
        B, T = idx.shape
        past = cache.length if cache is not None else 0
        if past + T > self.config.block_size:
            raise ValueError(f"sequence of {past + T} tokens exceeds the model's context of {self.config.block_size}")
        if knockout is not None:
            raise ValueError("a Mamba model has no attention keys to knock out")
        x = self.drop(self.wte(idx))
        if edit is not None:
            x = edit(0, x)
        hidden = [x] if want_hidden else None
        parts = [] if want_parts else None
        for i, block in enumerate(self.blocks):
            if want_parts:
                m = block.mixer(block.norm(x), cache, i)
                parts.append((f"block {i + 1} mixer", m))
                x = x + m
            else:
                x = block(x, cache, i)
            if edit is not None:
                x = edit(i + 1, x)
            if want_hidden:
                hidden.append(x)
        if cache is not None:
            cache.length += T
        logits = self.lm_head(self.ln_f(x))
        if all_heads:
            extra = [self.lm_head(self.ln_f(head(x))) for head in self.future]  # heads see the whole sequence, no cache
            logits = torch.stack([logits, *extra], dim=2)
        return Output(logits, None, hidden, parts)

    def resume(self, idx: torch.Tensor, x: torch.Tensor, layer: int, row: int) -> torch.Tensor:
        """Head-0 logits [B, V] at ``row`` from a residual stream ``x`` taken after ``layer`` (0: the embeddings):
        the later blocks only (all positions up to ``row``: the scan is causal)."""
        x = x[:, : row + 1]
        for i in range(layer, len(self.blocks)):
            x = self.blocks[i](x, None, i)
        return self.lm_head(self.ln_f(x[:, row]))

    def readout(self, h: torch.Tensor) -> torch.Tensor:
        """Logit lens: final LayerNorm + unembedding applied to a residual-stream state."""
        return self.lm_head(self.ln_f(h))

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token (forward + backward): 6N for the matmuls plus the scan,
        ~9 flops per (channel, state) element per layer forward (decay, input, readout), ×3 for backward."""
        cfg = self.config
        return 6 * self.num_params() + 3 * 9 * (cfg.n_layer + cfg.n_future - 1) * cfg.expand * cfg.n_embd * cfg.d_state
