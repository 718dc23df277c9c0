"""The probing API: a session over (model, graph) that a UI drives without knowing model internals.

A ``ProbeSession`` holds a graph, a model, the forced tokens (answer position -> token, in the
model's answer order) and a cursor (how many answer tokens have been revealed). Every change
re-decodes the whole answer greedily with the forced tokens kept, and re-scores every position:
the full next-token distribution, top-k, entropy, the mass on legal moves, the correct token and
its rank. Stepping only moves the cursor over that result, so it costs nothing; a force or a new
graph costs one decode (a few milliseconds for the shipped models).

Mutation semantics: the session-changing methods (``step``, ``force``, ``set_graph``, …) change the
session in place and return None. ``then(change, *args)`` applies one of them to a copy and returns the
copy, the original untouched (a rescore builds new ``Step`` objects, never mutates old ones): a UI that
hands sessions to another thread queues ``then`` calls. ``mirror(other_model)`` is cached per decoded
state, and copies carry the cache, so moving the cursor never decodes the other model again.

Positions are 0-based in the API (``Step.position``); a UI names the one on show "answer token
``current + 1`` of ``length``" (see ``token_label``).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ..atomic import atomic_write_text
from ..checkpoint import LoadedModel, load
from ..decoding import Strategy, decode_with, greedy
from ..errors import GraphError, NtpProbeError
from ..task import Graph, GraphBatch, format_line
from .files import SESSION_FORMAT, SessionFileError, _pick, model_ref, read_session_file
from .fit import answer_length, check_fits, parse_for_model


@dataclass
class Step:
    """One answer position, in the model's order."""

    position: int
    path_index: int  # the same position in start->goal order
    token: int
    forced: bool
    probs: torch.Tensor  # [V]
    entropy: float  # nats
    legal: list[int]  # the legal tokens here: children (parents, for reverse) of the previous token
    legal_mass: float
    correct: int | None  # the true answer's token at this position
    correct_rank: int | None  # 1 = the model's top choice
    correct_prob: float | None

    def top(self, k: int) -> list[tuple[int, float]]:
        p, i = self.probs.topk(min(k, self.probs.numel()))
        return list(zip(i.tolist(), p.tolist()))


@dataclass
class AttentionView:
    """Attention of one answer step over its input, every layer and head."""

    position: int
    labels: list[str]  # input tokens as text
    weights: torch.Tensor  # [layers, heads, inputs]
    edge_scores: torch.Tensor  # [layers, heads, edges]: weight on the edge's two node tokens
    edges: list[tuple[int, int]]

    def top_edge(self, layer: int, head: int) -> tuple[tuple[int, int], float]:
        i = int(self.edge_scores[layer, head].argmax())
        return self.edges[i], float(self.edge_scores[layer, head, i])



class ProbeSession:
    def __init__(self, lm: LoadedModel, graph: Graph, forced: dict[int, int] | None = None, cursor: int | None = None,
                 strategy: Strategy | None = None):
        self.lm = lm
        self.strategy = strategy or Strategy()
        self.tries = 1  # candidates the verifier looked at (verify strategy)
        self.graph = graph
        check_fits(graph, lm)
        self.length = answer_length(lm, graph)
        self.forced: dict[int, int] = {}
        for pos, tok in (forced or {}).items():
            self._check_force(pos, tok)
            self.forced[pos] = tok
        self.cursor = self.length if cursor is None else max(0, min(cursor, self.length))
        self.steps: list[Step] = []
        self.notes: list[str] = []  # what loading a session file noticed (an off-graph forced node)
        self._mirrors: dict[int, tuple[tuple, ProbeSession]] = {}  # id(model) -> (state key, its mirror)
        self.rescore()

    # -- derived facts ------------------------------------------------------------------------------
    @property
    def objective(self):
        return self.lm.objective

    @property
    def answer_order(self) -> str:
        return self.objective.answer_order

    @property
    def tokens(self) -> list[int]:
        return [s.token for s in self.steps]

    @property
    def path(self) -> list[int]:
        """The decoded answer in start->goal order."""
        return self.objective.to_path_list(self.tokens)

    @property
    def true_path(self) -> list[int]:
        return list(self.graph.path)

    @property
    def true_answer(self) -> list[int]:
        return self.objective.to_path_list(self.true_path)  # reversing is its own inverse

    @property
    def correct(self) -> bool:
        return self.path == self.true_path

    @property
    def ood(self) -> list[str]:
        t = self.lm.task
        if t.mixed:
            return self.graph.ood_reasons(shapes=t.topologies)
        return self.graph.ood_reasons(t.degree, t.path_len)

    @property
    def decision_position(self) -> int:
        """Answer position (model order) of the arm choice: the node after the start."""
        return self.objective.path_index(1, self.length)

    @property
    def current(self) -> int:
        """The position whose distribution is on show: the next one to decode (the last when done)."""
        return min(self.cursor, self.length - 1)

    def token_str(self, t: int) -> str:
        return self.lm.tokenizer.token_str(t)

    def token_label(self, position: int | None = None) -> str:
        """The one way to name an answer position: "answer token 3 of 5" (1-based; the one on show by default)."""
        p = self.current if position is None else position
        return f"answer token {p + 1} of {self.length}"

    # -- changed copies ------------------------------------------------------------------------------
    def copy(self) -> ProbeSession:
        """An independent copy: changing it leaves this session as it is (the steps are shared, never mutated)."""
        c = copy.copy(self)
        c.forced = dict(self.forced)
        c.steps = list(self.steps)
        c.notes = list(self.notes)
        c._mirrors = dict(self._mirrors)
        return c

    def then(self, change: Callable[..., object], *args, **kwargs) -> ProbeSession:
        """A copy with ``change`` (an in-place method such as ``ProbeSession.force``) applied: ``s.then(ProbeSession.force,
        1, 3)``. Errors propagate and leave this session untouched."""
        c = self.copy()
        change(c, *args, **kwargs)
        return c

    # -- changing the state ----------------------------------------------------------------------
    def _check_force(self, position: int, token: int) -> None:
        if not 0 <= position < self.length:
            raise GraphError(f"answer token {position + 1} is outside the answer (tokens 1..{self.length})")
        if not 0 <= token < self.lm.task.nodes:
            raise GraphError(f"node {token} is out of range (the model knows ids 0..{self.lm.task.nodes - 1})")

    def set_graph(self, graph: Graph, keep_forced: bool = False, cursor: int | None = 0) -> None:
        """A new graph, decoded; ``cursor`` 0 reveals nothing yet, None the whole answer."""
        check_fits(graph, self.lm)
        self.graph = graph
        self.length = answer_length(self.lm, graph)
        if not keep_forced:
            self.forced = {}
        self.forced = {p: t for p, t in self.forced.items() if p < self.length}
        self.cursor = self.length if cursor is None else max(0, min(cursor, self.length))
        self.rescore()

    def set_graph_from_file(self, path: str | Path, line: int, cursor: int | None = None) -> None:
        """The graph on line ``line`` (from 1) of a data file, as ``set_graph``."""
        from ..task import read_lines  # here, not at the top: keeps this change apart from the import lines

        graphs = read_lines(path, self.lm.task.nodes)
        if not 1 <= line <= len(graphs):
            raise NtpProbeError(f"{path}: line {line} is out of range (the file has {len(graphs)} graphs)")
        self.set_graph(graphs[line - 1], cursor=cursor)

    def force(self, position: int, token: int) -> None:
        """Force ``token`` at ``position``; everything after it is re-decoded; the cursor moves past it."""
        self._check_force(position, token)
        self.forced[position] = token
        self.cursor = max(self.cursor, position + 1)
        self.rescore()

    def force_here(self, token: int) -> None:
        self.force(self.current, token)

    def unforce(self, position: int) -> None:
        if self.forced.pop(position, None) is not None:
            self.rescore()

    def undo_force(self) -> None:
        """Remove the forced token furthest along the answer (nothing if none is forced)."""
        if self.forced:
            self.unforce(max(self.forced))

    def clear_forced(self) -> None:
        if self.forced:
            self.forced = {}
            self.rescore()

    def set_forced_prefix(self, tokens: list[int]) -> None:
        for i, t in enumerate(tokens):
            self._check_force(i, t)
        self.forced = dict(enumerate(tokens))
        self.rescore()

    def step(self) -> None:
        self.cursor = min(self.length, self.cursor + 1)

    def back(self) -> None:
        self.cursor = max(0, self.cursor - 1)

    def run_to_end(self) -> None:
        self.cursor = self.length

    def reset(self) -> None:
        self.cursor = 0

    def wrong_arm_token(self) -> int | None:
        """For the Clever Hans demo: the first node of an arm that does not lead to the goal (forward order),
        or, for reverse models, a node that is not the goal's parent."""
        arms = self.graph.arms()
        goal_arm = self.graph.goal_arm()
        if self.objective.decision_step:
            current = self.steps[self.decision_position].token
            options = [a[0] for i, a in enumerate(arms) if i != goal_arm and a]
            if not options:
                return None
            # the next sibling after the one on show, so repeated presses cycle through the wrong arms
            return next((o for o in options if o != current), options[0])
        wrong = [x for i, a in enumerate(arms) if i != goal_arm for x in a[:-1]]
        return wrong[0] if wrong else None

    def force_wrong_arm(self, required: bool = False) -> int | None:
        """Force the start and a wrong arm's first node (forward models): the Clever Hans demo. None if the graph
        has no other arm (an error if ``required``)."""
        tok = self.wrong_arm_token()
        if tok is None:
            if required:
                raise NtpProbeError("this graph has no other arm to force")
            return None
        if self.objective.decision_step:
            self.forced[0] = self.graph.start
            self.forced[1] = tok
            self.cursor = max(self.cursor, 2)
            self.rescore()
        else:
            self.force(self.decision_position, tok)
        return tok

    def wrong_arm_walk(self) -> dict | None:
        """What the model did after a wrong arm was forced at the decision (forward order only; None otherwise):
        ``inner`` the arm's inner steps after the decision (0 on G(d,3): nothing to walk), ``followed`` how many of
        them it walked before leaving the arm (all: the Clever Hans cheat), ``min_p`` its lowest top probability
        there, and at the last token ``last``, ``goal_copied`` (the goal from the query: a second shortcut) or
        ``wrong_leaf`` (the forced arm's own leaf). Figures of the whole decoded answer, wherever the cursor is."""
        dp = self.decision_position
        dstep = self.steps[dp]
        if (not self.objective.decision_step or dp not in self.forced or dstep.correct is None
                or dstep.token == dstep.correct or dstep.token not in dstep.legal):  # not another arm's first node
            return None
        after = self.steps[dp + 1 :]
        inner, last = after[:-1], after[-1] if after else None
        followed = 0
        for st in inner:
            if st.token not in st.legal:
                break
            followed += 1
        walked = inner[:followed] + ([last] if last is not None and followed == len(inner) and last.token in last.legal else [])
        return {
            "wrong_node": dstep.token,
            "inner": len(inner),
            "followed": followed,
            "min_p": min((float(st.probs.max()) for st in inner[:followed]), default=None),
            "last": None if last is None else last.token,
            "goal_copied": last is not None and last.token == self.graph.goal,
            "wrong_leaf": last is not None and last in walked,
            "forced_inner": any(st.forced for st in after),  # a later token forced by hand: not the model's own walk
        }

    # -- scoring ---------------------------------------------------------------------------------
    def _forced_tensor(self) -> torch.Tensor:
        f = torch.full((1, self.length), -1, dtype=torch.long)
        for p, t in self.forced.items():
            f[0, p] = t
        return f

    def _question(self) -> torch.Tensor:
        dev = next(self.lm.model.parameters()).device
        return torch.tensor([self.lm.tokenizer.question(self.graph)], device=dev)

    def legal_moves(self, position: int, tokens: list[int]) -> list[int]:
        return self.objective.legal_moves(self.graph, position, tokens)

    def set_strategy(self, strategy: Strategy) -> None:
        self.strategy = strategy
        self.rescore()

    def next_strategy(self) -> None:
        """greedy → sampling → beam search → verifier → greedy (the verifier's tries from the model's degree)."""
        from ..decoding import STRATEGIES, default_tries

        name = STRATEGIES[(STRATEGIES.index(self.strategy.kind) + 1) % len(STRATEGIES)]
        self.set_strategy(Strategy(name, tries=default_tries(self.lm.task.degree)))

    def _probe_input(self, position: int) -> tuple[torch.Tensor, int]:
        """The model's input that gives answer position ``position`` of the decoded answer, and its output row."""
        return self.objective.probe_input(self._question(), self.tokens, self.forced, position, self.lm.tokenizer.dollar)

    @torch.no_grad()
    def rescore(self) -> None:
        q = self._question()
        forced = self._forced_tensor().to(q.device)
        lengths = torch.tensor([self.length], device=q.device) if self.lm.task.mixed else None
        if self.strategy.kind == "greedy":
            dec = greedy(self.lm, q, forced, lengths=lengths)
            tokens, logits = dec.tokens[0].tolist(), dec.logits[0]
        else:
            batch = GraphBatch.from_graphs([self.graph]).to(q.device) if self.strategy.kind == "verify" else None
            gen = torch.Generator().manual_seed(self.strategy.seed)
            chosen, tries = decode_with(self.lm, q, self.strategy, forced, batch=batch, generator=gen, lengths=lengths)
            tokens, self.tries = chosen[0].tolist(), int(tries[0])
            logits = self.objective.answer_logits(self.lm.model, q, tokens, self.forced, self.lm.tokenizer.dollar)
        probs = logits.float().softmax(-1).cpu()
        truth = self.true_answer
        steps = []
        for p in range(self.length):
            pr = probs[p]
            ent = float(-(pr * pr.clamp_min(1e-12).log()).sum())
            legal = self.legal_moves(p, tokens)
            correct = truth[p] if p < len(truth) else None
            rank = prob = None
            if correct is not None:
                prob = float(pr[correct])
                rank = int((pr > pr[correct]).sum()) + 1
            steps.append(Step(p, self.objective.path_index(p, self.length), tokens[p], p in self.forced, pr, ent,
                              legal, float(pr[legal].sum()) if legal else 0.0, correct, rank, prob))
        self.steps = steps

    @torch.no_grad()
    def layers(self, position: int | None = None) -> list[dict]:
        """Logit lens: the distribution read out of the residual stream after each layer (final norm + unembedding)
        at an answer step, with the correct token's probability, the best wrong alternative's and their gap.
        The best wrong alternative is the likeliest legal-but-wrong move (another arm at the decision), else
        the likeliest wrong token."""
        p = self.current if position is None else position
        st = self.steps[p]
        x, row = self._probe_input(p)
        out = self.lm.model(x, want_hidden=True)
        rows = []
        for i, h in enumerate(out.hidden[1:]):
            pr = self.lm.model.readout(h[0, row]).float().softmax(-1).cpu()
            wrong = [t for t in st.legal if t != st.correct] or [t for t in range(pr.numel()) if t != st.correct]
            best = max(wrong, key=lambda t: float(pr[t]))
            cp = float(pr[st.correct]) if st.correct is not None else None
            rows.append({
                "layer": i + 1,
                "top": self.token_str(int(pr.argmax())),
                "top_prob": round(float(pr.max()), 6),
                "correct_prob": None if cp is None else round(cp, 6),
                "best_wrong": self.token_str(best),
                "best_wrong_prob": round(float(pr[best]), 6),
                "gap": None if cp is None else round(cp - float(pr[best]), 6),
            })
        return rows

    @torch.no_grad()
    def attention(self, position: int | None = None) -> AttentionView | None:
        """Attention at an answer step over its input (None for models without attention, e.g. Mamba)."""
        if not self.objective.supports_attention:
            return None
        p = self.current if position is None else position
        x, row = self._probe_input(p)
        out = self.lm.model(x, want_attn=True)
        if out.attentions is None:  # no attention in this architecture (Mamba)
            return None
        w = torch.stack([a[0, :, row, : row + 1] for a in out.attentions]).float().cpu()  # [layers, heads, row+1]
        E = len(self.graph.edges)
        idx = torch.arange(E)
        edge_scores = w[:, :, 3 * idx] + w[:, :, 3 * idx + 1]
        labels = [self.token_str(t) for t in x[0, : row + 1].tolist()]
        return AttentionView(p, labels, w, edge_scores, list(self.graph.edges))

    # -- views -----------------------------------------------------------------------------------
    def _state(self) -> tuple:
        """What a decode depends on (not the cursor)."""
        return (tuple(self.graph.edges), self.graph.start, self.graph.goal, tuple(sorted(self.forced.items())),
                repr(self.strategy))

    def mirror(self, lm: LoadedModel) -> ProbeSession:
        """The same graph and forced tokens for another model, at the same cursor. Forced tokens are mapped by
        node: a model with the same answer order gets each at the same path position (the same prefix); a model
        with the other order (reverse beside forward) gets a forced node of the true path where that node stands
        in its own answer, and an off-path node (a wrong arm) is left out, said in ``notes``: it has no place
        there. Decoded once per state (graph, forced tokens, strategy); a cursor move reuses it."""
        state = self._state()
        hit = self._mirrors.get(id(lm))
        if hit is not None and hit[0] == state and hit[1].lm is lm:
            m = hit[1].copy()
            m.cursor = max(0, min(self.cursor, m.length))
            return m
        forced, left_out = {}, []
        length = answer_length(lm, self.graph)
        same_order = lm.objective.answer_order == self.answer_order
        path = list(self.graph.path)
        for p, t in sorted(self.forced.items()):
            if same_order:
                i = self.objective.path_index(p, self.length)
            elif t in path:
                i = path.index(t)
            else:
                left_out.append(t)
                continue
            forced[lm.objective.path_index(i, length)] = t
        m = ProbeSession(lm, self.graph, forced, self.cursor, self.strategy)
        if left_out:
            nodes = ", ".join(self.token_str(t) for t in left_out)
            m.notes.append(f"forced {nodes} not applied: off the path, it has no place in a "
                           f"{lm.objective.answer_order} answer")
        self._mirrors[id(lm)] = (state, m)
        return m.copy()

    def to_json(self, top_k: int = 5, layers: bool = False) -> dict:
        tok = self.token_str
        extra = {"decode": self.strategy.kind, "decode_options": self.strategy.to_json(), "tries": self.tries}
        obj = {
            "model": self.lm.display_name,
            "objective": self.objective.name,
            "graph": format_line(self.graph, with_answer=False),
            "answer_order": self.answer_order,
            "tokens": [tok(t) for t in self.tokens],
            "forced": [s.forced for s in self.steps],
            "steps": [
                {
                    "position": s.position + 1,  # answer token k, counted from 1 as everywhere it is shown
                    "path_index": s.path_index,
                    "token": tok(s.token),
                    "forced": s.forced,
                    "entropy": round(s.entropy, 6),
                    "top": [{"token": tok(t), "prob": round(p, 6)} for t, p in s.top(top_k)],
                    "correct_token": None if s.correct is None else tok(s.correct),
                    "correct_rank": s.correct_rank,
                    "correct_prob": None if s.correct_prob is None else round(s.correct_prob, 6),
                    "legal": [tok(t) for t in s.legal],
                    "legal_mass": round(s.legal_mass, 6),
                }
                for s in self.steps
            ],
            "path": [tok(t) for t in self.path],
            "true_path": self.true_path,
            "correct": self.correct,
            "ood": self.ood,
            **extra,
        }
        if layers:
            for i, st in enumerate(obj["steps"]):
                st["layers"] = self.layers(i)
        return obj

    # -- saving and loading ----------------------------------------------------------------------
    def model_ref(self) -> str:
        return model_ref(self.lm)

    def save(self, path: str | Path, plain_error: bool = False) -> None:
        """Write the session (model, graph, forced tokens, cursor, strategy) as a small JSON file, atomically.
        A write that fails: "cannot save the session to PATH: REASON" (``plain_error``: ``atomic.CannotWrite``)."""
        data = {
            "format": SESSION_FORMAT,
            "model": self.model_ref(),
            "graph": format_line(self.graph, with_answer=False),
            "forced": {str(p): t for p, t in sorted(self.forced.items())},
            "cursor": self.cursor,
            "strategy": {"kind": self.strategy.kind, "temperature": self.strategy.temperature, "top_k": self.strategy.top_k,
                         "beam": self.strategy.beam, "tries": self.strategy.tries, "seed": self.strategy.seed},
        }
        try:
            atomic_write_text(Path(path), json.dumps(data, indent=2) + "\n")
        except OSError as e:
            if plain_error:
                raise
            raise NtpProbeError(f"cannot save the session to {path}: {e.strerror or e}") from None


def load_session(path: str | Path, lm: LoadedModel | None = None,
                 candidates: Sequence[LoadedModel] = ()) -> ProbeSession:
    """Load a saved session. Its model is ``lm`` if given, else the one of ``candidates`` (already loaded models)
    that the file names, else loaded by the file's name/path. The whole file is checked against its schema
    first (``check_session_data``); malformed and stale files are clear errors naming the field.

    Forced nodes must be node ids of the model; one that is not in the graph is kept (the app lets you force any
    token the model proposes, an off-graph probe) and listed in the session's ``notes``."""
    p = Path(path)
    d = read_session_file(p)
    try:
        if lm is None:
            lm = _pick(d["model"], candidates) or load(d["model"])
        graph = parse_for_model(d["graph"], lm)
    except NtpProbeError as e:  # the model is gone, or the graph no longer fits it
        raise e.__class__(f"{p}: stale session: {e}") from None
    except (OSError, ValueError, RuntimeError) as e:  # a path the system refuses (too long, an unknown ~user)
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e).splitlines()[0][:80]
        raise SessionFileError(f"{p}: stale session: model {d['model']!r:.60} cannot be opened ({why})") from None
    L, N = lm.task.path_len, lm.task.nodes
    notes = []
    for pos, node in sorted(d["forced"].items()):
        if pos >= L:
            raise SessionFileError(f"{p}: bad session file: forced[{str(pos)!r}] is outside the answer (keys 0..{L - 1}: "
                                   f"the file keys answer token k as k-1)")
        if node >= N:
            raise SessionFileError(f"{p}: bad session file: forced[{str(pos)!r}] is node {node}, out of range "
                                   f"(the model knows ids 0..{N - 1})")
        if node not in graph.nodes:
            notes.append(f"{p}: forced node {node} at answer token {pos + 1} is not in the graph (kept: an off-graph probe)")
    cursor = L if d["cursor"] is None else d["cursor"]
    if cursor > L:
        raise SessionFileError(f"{p}: bad session file: cursor is {cursor}, past the answer's {L} positions")
    try:
        strategy = Strategy(**d["strategy"])
    except NtpProbeError as e:
        raise SessionFileError(f"{p}: bad session file: strategy: {e}") from None
    session = ProbeSession(lm, graph, d["forced"], cursor, strategy)
    session.notes = notes
    return session
