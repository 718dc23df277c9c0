"""``bst``: the Belief State Transformer (Hu et al., "Learning to Achieve Goals with Belief State Transformers",
ICLR 2025, arXiv 2410.23506), past the paper. The model (``ntp_probe/bst.py``) is a forward encoder over the prefix,
a backward encoder over the suffix and a head on both that predicts the token after the prefix (next) and the
token before the suffix (prev).

Training takes every (prefix, suffix) pair of an answer with at least one answer token between them: prefix
``question + answer[:i]`` (from the question's ``=`` through the answer), suffix ``answer[j:]`` (starting inside
the answer, or empty), 0 ≤ i < j ≤ L; targets ``answer[i]`` (next) and ``answer[j-1]`` (prev). That is L(L+1)/2
pairs, 15 for a 5-node path, in one batched pass: F once over the question and answer, B once over the reversed
answer, then the pairs gathered. The loss is the mean cross-entropy over all 2·P targets. The pairs with the empty
suffix (j = L) are exactly next-token teacher forcing; the rest are what the paper adds — the prev head has to
name the node before a suffix, i.e. walk back from the goal, and the gradient of that reaches F's states.

Decoding is the paper's for star graphs: left to right with the next head and the empty suffix — which is the
model's ordinary forward, so this objective decodes, scores teacher-forced and probes as next-token does (every
strategy, the KV cache, the logit lens and attention of F). The checkpoint header is ``{"name": "bst",
"n_future": 1}`` with ``"bst": true`` in the config.
"""

from __future__ import annotations

import torch

from ..bst import pairs
from ..errors import UsageError
from . import register
from .base import Objective


@register
class Bst(Objective):
    name = "bst"
    mixed_shapes = False  # one shape per model: the pairs are gathered by column
    gpt_only = "builds a forward and a backward transformer"
    coin_flip = "the belief state has not taught it to plan the arm. "

    def model_fields(self, dollar: int) -> dict:
        return {"bst": True}

    # -- training ----------------------------------------------------------------------------------
    def targets(self, question: torch.Tensor, answer: torch.Tensor) -> torch.Tensor:
        """[B, P, 2]: pair p = (i, j) of ``bst.pairs`` has the next target ``answer[i]`` and the prev ``answer[j-1]``."""
        i, j = pairs(answer.shape[1], answer.device)
        return torch.stack([answer[:, i], answer[:, j - 1]], dim=2)

    def train_batch(self, question, answer, dollar, generator=None):
        """``question + answer`` (the model reads prefixes and suffixes of it) and the pairs' targets."""
        if bool((question < 0).any()):
            raise UsageError("bst trains on one shape only (no padded batches)")
        return torch.cat([question, answer], dim=1), self.targets(question, answer)

    def train_logits(self, model, x):
        """[B, P, 2, V]: every pair's next and prev logits; the answer starts after the question's ``=``."""
        config = getattr(model, "module", model).config  # DDP wraps the model: its forward still runs
        return model(x, pairs_from=answer_start(x, config.vocab_size - 3)).logits


def answer_start(x: torch.Tensor, eq: int) -> int:
    """The first answer column of ``question + answer`` rows: after the question's one ``=`` (token id ``eq``)."""
    hits = (x[0] == eq).nonzero()
    if len(hits) != 1:
        raise ValueError(f"a bst training row holds {len(hits)} '=' tokens, not the question's one")
    return int(hits[0, 0]) + 1
