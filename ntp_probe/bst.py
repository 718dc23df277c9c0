"""The Belief State Transformer (Hu et al., "Learning to Achieve Goals with Belief State Transformers", ICLR 2025,
arXiv 2410.23506): a forward encoder F, a backward encoder B and an output head on their concatenation.

F reads a prefix x_{1:t} left to right; B reads a suffix x_{k:T} right to left; the head takes [f_t ; b_k] and
predicts the next token x_{t+1} (the *next* head) and the previous token x_{k-1} (the *prev* head). Training
(``objectives/bst.py``) covers every pair with at least one token between prefix and suffix.

How it is built here (one config flag, ``GPTConfig.bst``; ``checkpoint.build_model`` picks this class):

- **F is the ordinary GPT** (``wte``, ``wpe``, ``blocks``, ``ln_f``: the inherited modules, same names), so its
  KV cache, attention weights and residual stream (logit lens) work as for any GPT, and f_t = ``ln_f`` of its
  last residual stream. F reads the question and the answer prefix.
- **B is a separate encoder of the same size** (``back``: its own token and position embeddings, blocks and
  final LayerNorm; no weights shared with F), as in the paper's two encoders. It reads the **answer suffix only**,
  last token first: the goal is in the question, which F reads, and B never needs it.
- **The empty suffix** is B's state after reading a learned start vector alone (``back.start``, its input at
  position 0, before any suffix token): b_∅ is the same for every graph.
- **The head** is a small MLP on [f_t ; b_k] (2C → 2C → GELU → 2C), split into a next and a prev half, each
  read out through F's unembedding (tied to F's token embedding, as in the plain GPT).

The model's ordinary ``forward`` gives the **next head with the empty suffix** at every position of F: decoding
left to right with it is how the paper decodes star graphs, so greedy, sampling, beam search, the verifier, the
KV cache and the probes run this model unchanged. ``readout`` (the logit lens) is the same map from F's residual
stream. ``forward(seq, pairs_from=Q)`` gives the training pairs' logits instead (through ``forward``, so DDP
sees the pass).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from .model import GPT, Block, GPTConfig, KVCache, Output


def pairs(length: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The (prefix, suffix) pairs of an answer of ``length`` tokens, as two [P] long tensors (i, j), 0 ≤ i < j ≤ L:
    the prefix is the question plus ``answer[:i]``, the suffix ``answer[j:]`` (j = L: the empty suffix). The next head
    predicts ``answer[i]``, the prev head ``answer[j-1]``; P = L(L+1)/2, ordered by i, then j."""
    i, j = torch.triu_indices(length + 1, length + 1, offset=1, device=device)
    return i, j


class Backward(nn.Module):
    """The backward encoder: a causal transformer over ``[start] + suffix reversed``; row m of its output encodes
    the start vector and the last m tokens of the answer (row 0: the empty suffix)."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.start = nn.Parameter(torch.zeros(cfg.n_embd))
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)

    def forward(self, reversed_tokens: torch.Tensor) -> torch.Tensor:
        """[B, S] tokens, last answer token first -> [B, S+1, C] (``ln_f`` applied)."""
        B, S = reversed_tokens.shape
        x = torch.cat([self.start.expand(B, 1, -1), self.wte(reversed_tokens)], dim=1)
        x = self.drop(x + self.wpe(torch.arange(S + 1, device=x.device)))
        for block in self.blocks:
            x, _ = block(x)
        return self.ln_f(x)


class BST(GPT):
    """A GPT (the forward encoder) plus ``back`` (the backward encoder) and ``head`` (the next/prev MLP)."""

    def __init__(self, cfg: GPTConfig):
        if not cfg.causal or cfg.n_future != 1 or cfg.hidden_token >= 0:
            raise ValueError("a belief state transformer is causal, with one output head and no hidden token")
        super().__init__(cfg)
        C = cfg.n_embd
        self.back = Backward(cfg)
        self.head = nn.Sequential(nn.Linear(2 * C, 2 * C, bias=cfg.bias), nn.GELU(), nn.Linear(2 * C, 2 * C, bias=cfg.bias))
        for module in (self.back, self.head):
            module.apply(self._init_weights)
        nn.init.normal_(self.back.start, mean=0.0, std=0.02)
        for name, p in self.back.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    def forward(self, idx: torch.Tensor, cache: KVCache | None = None, want_attn: bool = False, want_hidden: bool = False,
                all_heads: bool = False, pairs_from: int | None = None, **hooks) -> Output:
        """As the GPT's (logits: the next head with the empty suffix); with ``pairs_from=Q``, ``idx`` is
        ``question + answer`` (the answer from column Q) and the logits are the training pairs' [B, P, 2, V]
        (``[..., 0, :]`` next, ``[..., 1, :]`` prev; the pairs as ``pairs`` orders them)."""
        if pairs_from is None:
            return super().forward(idx, cache, want_attn, want_hidden, all_heads, **hooks)  # the probes' hooks on F
        return Output(self.pair_logits(idx, pairs_from))

    def pair_logits(self, seq: torch.Tensor, Q: int) -> torch.Tensor:
        """F once over ``question + answer[:-1]`` (causal), B once over ``answer[1:]`` reversed, then every pair."""
        L = seq.shape[1] - Q
        f = self.ln_f(self.trunk(seq[:, :-1])[0])[:, Q - 1 :]  # [B, L, C]: row i read the question and answer[:i]
        b = self.back(seq[:, Q + 1 :].flip(1))  # [B, L, C]: row m read answer[L-m:], i.e. the suffix j = L - m
        i, j = pairs(L, seq.device)
        return self.both_heads(f[:, i], b[:, L - j])

    def both_heads(self, f: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """[..., C] forward and backward states -> [..., 2, V] logits of the next and the prev head."""
        h = self.head(torch.cat([f, b], dim=-1))
        return self.lm_head(torch.stack(h.chunk(2, dim=-1), dim=-2))

    def empty_suffix(self) -> torch.Tensor:
        """b_∅ [C]: the backward encoder's state for the empty suffix (the start vector alone)."""
        return self.back(torch.zeros(1, 0, dtype=torch.long, device=self.back.start.device))[0, 0]

    def readout(self, h: torch.Tensor) -> torch.Tensor:
        """F's residual stream -> the next head's logits with the empty suffix (the decoding distribution; the logit
        lens)."""
        f = self.ln_f(h)
        b = self.empty_suffix().to(f.dtype).expand_as(f)
        return self.both_heads(f, b)[..., 0, :]

    def num_params(self) -> int:
        return super().num_params() - self.back.wpe.weight.numel()

    def flops_per_token(self, seq_len: int) -> float:
        """As the GPT's, with the backward encoder's layers counted too (an estimate)."""
        cfg = self.config
        return 6 * self.num_params() + 12 * 2 * cfg.n_layer * cfg.n_embd * seq_len
