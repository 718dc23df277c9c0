"""Training objectives: how a (question, path) pair becomes inputs and targets, and the answer order.

Each objective is a small frozen dataclass. All share one convention: the training sequence is
``question + answer``, the model reads ``seq[:-1]`` and is scored only at answer positions.

* ``next-token``  — teacher forcing, answer ``s, n1, …, g``.
* ``reverse``     — teacher forcing, answer reversed ``g, …, n1, s``.
* ``teacherless`` — the answer's inputs are ``$`` dummies, so every answer token is predicted
  from the question alone (one forward pass at inference).
* ``multi-token`` — ``k`` output heads predict t+1 … t+k (Gloeckle et al. 2024); decoding uses head 0.
* ``hybrid``      — teacherless loss plus next-token loss on the same graphs (Nagarajan et al. 2025):
  ``mix · L_teacherless + (1 − mix) · L_next-token``, two passes over one batch; decoded like teacherless.
* ``mlm-u``       — any-order masked training with a uniform masking rate (Kitouni et al. 2024), past
  the paper: bidirectional attention over ``question + answer`` (no shift), a uniformly random
  fraction of the answer replaced by ``$``, loss on the masked tokens; decoded by filling in the most
  confident masked position one pass at a time (``ntp_probe.anyorder``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .errors import UsageError

IGNORE = -100


@dataclass(frozen=True)
class Objective:
    name: str
    reverse: bool = False
    teacherless: bool = False
    n_future: int = 1
    masked: bool = False  # mlm-u: bidirectional, unshifted, inputs with a random fraction of $ masks
    mix: float | None = None  # hybrid: weight of the teacherless loss; the next-token loss gets 1 - mix

    @property
    def extra_context(self) -> int:
        """Tokens beyond ``task.seq_len`` the model must hold: the unshifted mlm-u sequence is one longer."""
        return 1 if self.masked else 0

    @property
    def answer_order(self) -> str:
        return "reverse" if self.reverse else "forward"

    def answer(self, path: torch.Tensor) -> torch.Tensor:
        """Path(s) in start->goal order -> answer in the model's order (last dim)."""
        return path.flip(-1) if self.reverse else path

    def to_path(self, answer: torch.Tensor) -> torch.Tensor:
        return self.answer(answer)  # reversing is its own inverse

    def to_path_list(self, answer: list[int]) -> list[int]:
        return answer[::-1] if self.reverse else list(answer)

    def path_index(self, position: int, length: int) -> int:
        """Index in start->goal order of answer position ``position``."""
        return length - 1 - position if self.reverse else position

    def inputs(self, question: torch.Tensor, answer: torch.Tensor, dollar: int) -> torch.Tensor:
        """Model input ``question + answer[:-1]``, with ``$`` in the answer part for teacherless."""
        if self.masked:  # the first decoding pass: the whole answer masked
            return torch.cat([question, torch.full_like(answer, dollar)], dim=1)
        x = torch.cat([question, answer[:, :-1]], dim=1)
        if self.teacherless:
            x[:, question.shape[1] :] = dollar
        return x

    def targets(self, question: torch.Tensor, answer: torch.Tensor) -> torch.Tensor:
        """[B, T-1, n_future]: target of head j at position t is seq[t+1+j], answer positions only."""
        seq = torch.cat([question, answer], dim=1)
        B, T = seq.shape
        Q = question.shape[1]
        if self.masked:  # unshifted: position Q+i predicts answer[i]
            y = torch.full((B, T, 1), IGNORE, dtype=torch.long, device=seq.device)
            y[:, Q:, 0] = answer
            return y
        y = torch.full((B, T - 1, self.n_future), IGNORE, dtype=torch.long, device=seq.device)
        for j in range(self.n_future):
            lo = max(Q - 1 - j, 0)  # first position whose target seq[t+1+j] lies in the answer
            hi = T - 1 - j
            if hi > lo:
                y[:, lo:hi, j] = seq[:, lo + 1 + j : hi + 1 + j]
        return y

    def train_batch(self, question: torch.Tensor, answer: torch.Tensor, dollar: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Training inputs and targets. Hybrid stacks the teacherless inputs of the batch on top of its
        teacher-forced inputs (targets repeated): rows [:B] get weight ``mix`` in the loss, rows [B:] ``1 - mix``."""
        x, y = self.inputs(question, answer, dollar), self.targets(question, answer)
        if self.mix is None:
            return x, y
        forced = torch.cat([question, answer[:, :-1]], dim=1)
        return torch.cat([x, forced]), torch.cat([y, y])

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

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over heads; ``logits`` is [B, T, V] or [B, T, H, V]. Hybrid: the mix of the
        two halves of ``train_batch``."""
        if self.mix is not None:
            B = logits.shape[0] // 2
            plain = Objective(self.name)
            return self.mix * plain.loss(logits[:B], targets[:B]) + (1 - self.mix) * plain.loss(logits[B:], targets[B:])
        if logits.dim() == 3:
            logits = logits.unsqueeze(2)
        total = logits.new_zeros((), dtype=torch.float32)
        for j in range(self.n_future):
            total = total + F.cross_entropy(
                logits[:, :, j].float().reshape(-1, logits.shape[-1]), targets[:, :, j].reshape(-1), ignore_index=IGNORE
            )
        return total / self.n_future

    def to_meta(self) -> dict:
        meta = {"name": self.name, "n_future": self.n_future}
        if self.mix is not None:
            meta["mix"] = self.mix
        return meta


OBJECTIVES = ("next-token", "reverse", "teacherless", "multi-token", "hybrid", "mlm-u")


def make_objective(name: str, n_future: int = 4, mix: float = 0.5) -> Objective:
    if name == "next-token":
        return Objective(name)
    if name == "reverse":
        return Objective(name, reverse=True)
    if name == "teacherless":
        return Objective(name, teacherless=True)
    if name == "multi-token":
        if n_future < 2:
            raise UsageError("multi-token needs --future ≥ 2 heads")
        return Objective(name, n_future=n_future)
    if name == "hybrid":
        if not 0.0 <= mix <= 1.0:  # also false for NaN
            raise UsageError(f"--mix {mix}: the teacherless loss's weight must lie in [0, 1]")
        return Objective(name, teacherless=True, mix=float(mix))
    if name == "mlm-u":
        return Objective(name, masked=True)
    raise UsageError(f"unknown objective {name!r}; choose one of {', '.join(OBJECTIVES)}")


def objective_from_meta(meta: dict) -> Objective:
    return make_objective(meta["name"], meta.get("n_future", 4), meta.get("mix", 0.5))
