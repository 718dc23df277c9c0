"""The objective base class (plain teacher forcing, start→goal) and the steppers objectives plug into decoding.

Conventions every objective shares: the training sequence is ``question + answer``; an answer is a
[B, L] tensor in the objective's own order (``answer``/``to_path`` convert from and to start→goal);
``forced`` is a [B, L] tensor of token ids with -1 where the model decodes freely.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch
import torch.nn.functional as F

from ..errors import UsageError
from ._shared import IGNORE

if TYPE_CHECKING:
    from ..checkpoint import LoadedModel
    from ..task import Graph


# ------------------------------------------------------------------------------------------------
# Steppers: how an objective produces the next distribution for decoding's loop


class Stepper:
    """One decoding run over a batch of rows (graphs, or beams of graphs).

    ``next()`` gives, for every current row, the answer position it fills next ([N] long) and the
    distribution there ([N, V] float logits). ``feed(positions, tokens, parents)`` writes the chosen
    tokens; ``parents`` ([N'] or None) says which row of the previous step each new row continues
    (beam search reorders and duplicates rows). ``finish(tokens, logits)`` may revise the recorded
    logits once the whole answer is known."""

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def feed(self, positions: torch.Tensor, tokens: torch.Tensor, parents: torch.Tensor | None) -> None:
        raise NotImplementedError

    def finish(self, tokens: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        return logits


class LeftToRight(Stepper):
    """Autoregressive decoding, one answer token per step; with a KV cache (or recurrent state) by default,
    else recomputing the whole prefix each step. The next pass runs only when ``next`` asks for it, so the
    last token costs none."""

    def __init__(self, model: torch.nn.Module, questions: torch.Tensor, use_cache: bool = True):
        self.model, self.i = model, 0
        self.cache = model.new_cache() if use_cache else None
        self.seq = questions
        self.logits = model(questions, cache=self.cache).logits[:, -1].float()
        self.pending: tuple[torch.Tensor, torch.Tensor | None] | None = None

    def next(self):
        if self.pending is not None:
            tokens, parents = self.pending
            self.pending = None
            if self.cache is not None:
                if parents is not None:
                    self.cache = self.cache.select(parents)
                self.logits = self.model(tokens[:, None], cache=self.cache).logits[:, -1].float()
            else:
                seq = self.seq if parents is None else self.seq[parents]
                self.seq = torch.cat([seq, tokens[:, None]], dim=1)
                self.logits = self.model(self.seq).logits[:, -1].float()
        return torch.full((self.logits.shape[0],), self.i, dtype=torch.long, device=self.logits.device), self.logits

    def feed(self, positions, tokens, parents):
        self.i += 1
        self.pending = (tokens, parents)


class OnePass(Stepper):
    """Every answer position's distribution from one forward pass (teacherless ``$`` inputs): stepping only reads
    the next column."""

    def __init__(self, logits: torch.Tensor):
        self.all = logits  # [B, L, V]
        self.rows = torch.arange(logits.shape[0], device=logits.device)
        self.i = 0

    def next(self):
        return torch.full_like(self.rows, self.i), self.all[self.rows, self.i]

    def feed(self, positions, tokens, parents):
        self.i += 1
        if parents is not None:
            self.rows = self.rows[parents]


# ------------------------------------------------------------------------------------------------
# The base objective


class Objective:
    """Plain teacher forcing (``next-token``): the model reads ``question + answer[:-1]`` causally and predicts
    each answer token from the true prefix; the answer runs start→goal."""

    name: ClassVar[str] = "?"
    options: ClassVar[dict[str, object]] = {}  # option name -> default (set as attributes)
    answer_order: ClassVar[str] = "forward"
    answer_direction: ClassVar[str] = "start→goal"  # how the answer runs, for people
    causal: ClassVar[bool] = True  # False: the model attends both ways
    extra_context: ClassVar[int] = 0  # tokens beyond ``task.seq_len`` the model must hold
    strategies: ClassVar[tuple[str, ...]] = ("greedy", "sample", "beam", "verify")
    decision_step: ClassVar[bool] = True  # the answer has a step where the model chooses the arm
    no_decision: ClassVar[str] = ""  # why not, when it has none
    no_attention: ClassVar[str | None] = None  # why the attention view does not apply, when it does not
    coin_flip: ClassVar[str] = "the model has not learned to plan the arm. "  # the app's note on an unsure decision
    mixed_shapes: ClassVar[bool] = True  # trains and decodes padded batches of several shapes (topology sets)
    gpt_only: ClassVar[str | None] = None  # why it needs --arch gpt, when it does (beyond bidirectional attention)
    no_patching: ClassVar[str | None] = None  # why ``ntp-probe patch`` cannot run it, when it cannot (every shipped
    # objective runs one forward pass of its network at a step, so none sets it)

    def __init__(self, **options):
        for key, default in self.options.items():
            setattr(self, key, options.get(key, default))
        self.check()

    def check(self) -> None:
        """Validate the options (UsageError)."""

    @property
    def heads(self) -> int:
        """Output heads the model needs (head j predicts the token j+1 ahead); decoding uses head 0."""
        return 1

    def model_fields(self, dollar: int) -> dict:
        """Model config fields this objective sets beyond ``causal`` and the heads (``dollar``: the mask token's id)."""
        return {}

    @property
    def supports_attention(self) -> bool:
        return self.no_attention is None

    # -- the checkpoint header ---------------------------------------------------------------------
    def to_meta(self) -> dict:
        return {"name": self.name, "n_future": self.heads}

    @classmethod
    def from_meta(cls, meta: dict) -> Objective:
        return cls()

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.to_meta() == other.to_meta()

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.to_meta().items())))

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.options)
        return f"{type(self).__name__}({opts})"

    # -- answer order ------------------------------------------------------------------------------
    def answer(self, path: torch.Tensor) -> torch.Tensor:
        """Path(s) in start->goal order -> answer in the model's order (last dim)."""
        return path

    def to_path(self, answer: torch.Tensor) -> torch.Tensor:
        return answer

    def to_path_list(self, answer: list[int]) -> list[int]:
        return list(answer)

    def path_index(self, position: int, length: int) -> int:
        """Index in start->goal order of answer position ``position``."""
        return position

    def legal_moves(self, graph: Graph, position: int, tokens: list[int]) -> list[int]:
        """The legal tokens at an answer position given the answer so far: the start, then a child of the previous."""
        return [graph.start] if position == 0 else graph.children(tokens[position - 1])

    # -- training ----------------------------------------------------------------------------------
    def inputs(self, question: torch.Tensor, answer: torch.Tensor, dollar: int) -> torch.Tensor:
        """Model input for a whole answer: ``question + answer[:-1]``."""
        return torch.cat([question, answer[:, :-1]], dim=1)

    def targets(self, question: torch.Tensor, answer: torch.Tensor) -> torch.Tensor:
        """[B, T-1, heads]: target of head j at position t is seq[t+1+j], answer positions only."""
        seq = torch.cat([question, answer], dim=1)
        B, T = seq.shape
        Q = question.shape[1]
        y = torch.full((B, T - 1, self.heads), IGNORE, dtype=torch.long, device=seq.device)
        for j in range(self.heads):
            lo = max(Q - 1 - j, 0)  # first position whose target seq[t+1+j] lies in the answer
            hi = T - 1 - j
            if hi > lo:
                y[:, lo:hi, j] = seq[:, lo + 1 + j : hi + 1 + j]
        return y.masked_fill(y < 0, IGNORE)  # padding (answers shorter than the batch's longest) carries no loss

    def train_batch(self, question: torch.Tensor, answer: torch.Tensor, dollar: int,
                    generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """A training batch's (inputs, targets); ``generator`` seeds objectives that draw at random."""
        return self.inputs(question, answer, dollar), self.targets(question, answer)

    def train_logits(self, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The logits the loss is taken on: [B, T, V], or [B, T, heads, V] for several heads."""
        return model(x, all_heads=self.heads > 1).logits

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over heads; ``logits`` is [B, T, V] or [B, T, H, V]."""
        return cross_entropy(logits, targets)

    # -- decoding and scoring ----------------------------------------------------------------------
    def check_strategy(self, kind: str) -> None:
        if kind not in self.strategies:
            raise UsageError(f"{self.name} decodes with {', '.join(self.strategies)} only, not {kind}")

    def stepper(self, lm: LoadedModel, questions: torch.Tensor, forced: torch.Tensor | None,
                use_cache: bool = True) -> Stepper:
        return LeftToRight(lm.model, questions, use_cache)

    def teacher_forced(self, lm: LoadedModel, questions: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
        """[B, L, V] logits at each answer position with the true answer as input."""
        x = self.inputs(questions, answers, lm.tokenizer.dollar)
        return lm.model(x).logits[:, questions.shape[1] - 1 :].float()

    # -- probing -----------------------------------------------------------------------------------
    def probe_input(self, question: torch.Tensor, tokens: list[int], forced: dict[int, int], position: int,
                    dollar: int) -> tuple[torch.Tensor, int]:
        """The model input [1, T] that gives answer position ``position`` of a decoded answer (``forced``:
        position -> token), and the row of the output holding that position's distribution."""
        x = self.inputs(question, torch.tensor([tokens], device=question.device), dollar)
        return x, question.shape[1] - 1 + position

    def answer_logits(self, model: torch.nn.Module, question: torch.Tensor, tokens: list[int], forced: dict[int, int],
                      dollar: int) -> torch.Tensor:
        """[L, V]: every position's distribution for a given answer (one pass)."""
        x, row = self.probe_input(question, tokens, forced, 0, dollar)
        return model(x).logits[0, row:]


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over heads of the cross-entropy at non-ignored targets; ``logits`` [B, T, V] or [B, T, H, V],
    ``targets`` [B, T, H]."""
    if logits.dim() == 3:
        logits = logits.unsqueeze(2)
    heads = targets.shape[2]
    total = logits.new_zeros((), dtype=torch.float32)
    for j in range(heads):
        total = total + F.cross_entropy(
            logits[:, :, j].float().reshape(-1, logits.shape[-1]), targets[:, :, j].reshape(-1), ignore_index=IGNORE
        )
    return total / heads
