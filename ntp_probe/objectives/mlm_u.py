"""``mlm-u``: any-order masked training with a uniform masking rate (Kitouni et al. 2024, "The Factorization
Curse"), past the paper.

The model sees ``question + answer`` with bidirectional attention (no shift, so one token more context),
masked answer tokens written as ``$``, and predicts every answer position in place. Training masks a
uniformly random fraction of the answer (``--mask-question``: the edge list's node ids too, at the same
rate, i.e. the whole sequence as in Kitouni et al.), with the loss on the masked tokens.

``--drop-masked`` builds the model as the reference code does (facebookresearch/maze_navigation_MLMU): a
masked token is not an input but a query — embedded as its position alone, and no other position attends
to it, so the visible tokens are encoded as if the masked ones were dropped (the model's ``hidden_token``).
One stack of shared layers plays encoder and decoder: a query reads the visible tokens layer by layer
rather than cross-attending to a finished encoding, and queries do not see each other.

Decoding starts with the whole answer masked (forced tokens written in) and makes one pass per answer
token: among the positions still masked it fills **the most confident one** (highest top-1 probability)
with its argmax. So the model chooses its own order — typically the easy end first (the goal, then its
parent, …), which is how it avoids guessing at the decision node. Only greedy fill-in is defined.

The distribution recorded for a forced position is the model's there with that slot masked and every
other slot as finally decoded.
"""

from __future__ import annotations

import torch

from ..errors import UsageError
from ..tokenizer import Tokenizer
from . import register
from ._shared import IGNORE
from .base import Objective, Stepper


class FillIn(Stepper):
    """Each step fills the most confident masked position of each row. Forced positions hold their tokens from the
    start and are handed to the loop first (no pass needed for them), then the free ones in the model's order."""

    def __init__(self, model, questions: torch.Tensor, length: int, mask: int, forced: torch.Tensor | None):
        B, self.Q = questions.shape
        self.model, self.mask = model, mask
        self.x = torch.cat([questions, questions.new_full((B, length), mask)], dim=1)
        self.known = torch.zeros(B, length, dtype=torch.bool, device=questions.device)
        if forced is not None:
            self.known = forced >= 0
            self.x[:, self.Q :] = torch.where(self.known, forced, self.x[:, self.Q :])
        self.was_forced = self.known.clone()
        self.forced = self.known.clone()  # forced positions not yet handed out
        self.rows = torch.arange(B, device=questions.device)
        self.V = model.config.vocab_size

    def next(self):
        hand_forced = self.forced.any(1)
        if hand_forced.all():
            lg = self.x.new_zeros(*self.known.shape, self.V, dtype=torch.float32)
            pos = self.known.new_zeros(self.known.shape[0], dtype=torch.long)
        else:
            lg = self.model(self.x).logits[:, self.Q :].float()  # [B, L, V]
            conf = lg.softmax(-1).amax(-1).masked_fill(self.known, -1.0)
            pos = conf.argmax(1)
        pos = torch.where(hand_forced, self.forced.float().argmax(1), pos)
        return pos, lg[self.rows, pos]

    def feed(self, positions, tokens, parents):
        self.x[self.rows, self.Q + positions] = tokens
        self.known[self.rows, positions] = True
        self.forced[self.rows, positions] = False

    def finish(self, tokens, logits):
        f = self.was_forced
        if not f.any():
            return logits
        xm = self.x.clone()
        xm[:, self.Q :] = torch.where(f, torch.full_like(tokens, self.mask), self.x[:, self.Q :])
        lg = self.model(xm).logits[:, self.Q :].float()
        return torch.where(f[:, :, None], lg, logits)


@register
class MlmU(Objective):
    name = "mlm-u"
    mixed_shapes = False  # decodes a fixed answer length: one shape per model
    # mask_question is training only (not in the checkpoint header); drop_masked shapes the model (kept)
    options = {"mask_question": False, "drop_masked": False}
    causal = False
    extra_context = 1  # the unshifted sequence is one token longer
    strategies = ("greedy",)
    no_attention = "it fills positions in its own order"

    def to_meta(self) -> dict:
        return {**super().to_meta(), "drop_masked": True} if self.drop_masked else super().to_meta()

    @classmethod
    def from_meta(cls, meta):
        return cls(drop_masked=meta.get("drop_masked", False) is True)

    def model_fields(self, dollar: int) -> dict:
        return {"hidden_token": dollar if self.drop_masked else -1}

    def check_strategy(self, kind: str) -> None:
        if kind not in self.strategies:
            raise UsageError(f"{self.name} decodes by greedy fill-in only (no left-to-right sampling or beam search)")

    # -- training ----------------------------------------------------------------------------------
    def inputs(self, question: torch.Tensor, answer: torch.Tensor, dollar: int) -> torch.Tensor:
        """The first decoding pass's input: the whole answer masked."""
        return torch.cat([question, torch.full_like(answer, dollar)], dim=1)

    def targets(self, question: torch.Tensor, answer: torch.Tensor) -> torch.Tensor:
        """[B, T, 1], unshifted: position Q+i predicts answer[i]."""
        B, Q = question.shape
        y = torch.full((B, Q + answer.shape[1], 1), IGNORE, dtype=torch.long, device=question.device)
        y[:, Q:, 0] = answer
        return y

    def train_batch(self, question, answer, dollar, generator=None):
        return self.masked_batch(question, answer, dollar, generator, self._maskable(question, dollar))

    def _maskable(self, question: torch.Tensor, dollar: int) -> torch.Tensor | None:
        """With ``mask_question``: the question's edge-node positions (computed once per question length, layout and
        device; the query-first layout has its '/' at position 2, the tokenizer's id N+2 = dollar - 1)."""
        if not self.mask_question:
            return None
        query_first = question.shape[1] > 2 and bool((question[:, 2] == dollar - 1).all())
        key = (question.shape[1], query_first, question.device)
        if getattr(self, "_maskable_for", (None,))[0] != key:
            num_edges = (question.shape[1] - 3) // 3  # Tokenizer.question_len inverted
            self._maskable_for = (key, Tokenizer.edge_node_mask(num_edges, query_first).to(question.device))
        return self._maskable_for[1]

    def masked_batch(self, question: torch.Tensor, answer: torch.Tensor, mask: int,
                     generator: torch.Generator | None = None,
                     maskable: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """mlm-u training pair: per graph a masking rate r ~ U(0, 1), each answer token replaced by ``mask``
        with probability r (at least one), targets only at the masked positions. ``maskable`` ([Q] bool):
        question positions masked at the same rate too (the edge list's node ids: masking the whole
        sequence, as in Kitouni et al.); decoding always sees the whole question."""
        B, L = answer.shape
        dev = answer.device
        rate = torch.rand(B, 1, generator=generator, device=dev)
        m = torch.rand(B, L, generator=generator, device=dev) < rate
        m[torch.arange(B, device=dev), torch.randint(L, (B,), generator=generator, device=dev)] = True
        x = torch.cat([question, torch.where(m, torch.full_like(answer, mask), answer)], dim=1)
        y = torch.full((B, x.shape[1], 1), IGNORE, dtype=torch.long, device=dev)
        y[:, question.shape[1]:, 0] = torch.where(m, answer, torch.full_like(answer, IGNORE))
        if maskable is not None:
            Q = question.shape[1]
            mq = (torch.rand(B, Q, generator=generator, device=dev) < rate) & maskable.to(dev)
            x[:, :Q] = torch.where(mq, torch.full_like(question, mask), question)
            y[:, :Q, 0] = torch.where(mq, question, torch.full_like(question, IGNORE))
        return x, y

    # -- decoding and scoring ----------------------------------------------------------------------
    def stepper(self, lm, questions, forced, use_cache=True):
        return FillIn(lm.model, questions, lm.task.path_len, lm.tokenizer.dollar, forced)

    def teacher_forced(self, lm, questions, answers):
        """[B, L, V]: position i predicted with the true ``answer[:i]`` given and ``answer[i:]`` masked — the
        any-order analogue of teacher forcing (L graphs' worth of passes, batched)."""
        L, mask = answers.shape[1], lm.tokenizer.dollar
        B, Q = questions.shape
        idx = torch.arange(L, device=answers.device)
        keep = idx[None, :] < idx[:, None]  # [i, j]: j < i
        ans = torch.where(keep[None], answers[:, None, :], torch.full_like(answers[:, None, :], mask))  # [B, L, L]
        x = torch.cat([questions[:, None, :].expand(B, L, Q), ans], dim=2).reshape(B * L, Q + L)
        lg = lm.model(x).logits[:, Q:].float().view(B, L, L, -1)  # [B, i, pos, V]
        return lg[:, idx, idx]

    # -- probing -----------------------------------------------------------------------------------
    def probe_input(self, question, tokens, forced, position, dollar):
        """Slot ``position`` masked, the other slots as decoded; the output row is the slot itself (no shift)."""
        x = torch.cat([question, torch.tensor([tokens], device=question.device)], dim=1)
        x[0, question.shape[1] + position] = dollar
        return x, question.shape[1] + position

    def answer_logits(self, model, question, tokens, forced, dollar):
        rows = [model(x).logits[0, row] for x, row in (self.probe_input(question, tokens, forced, p, dollar)
                                                         for p in range(len(tokens)))]
        return torch.stack(rows)
