"""The path-star task G(d, l) of Bachmann & Nagarajan (2024): generation, parsing, formatting.

A path-star graph has a start node ``s`` with ``d`` arms; each arm is a chain of ``l - 1`` further
nodes, so the path from ``s`` to any leaf has ``l`` nodes. Node ids are drawn at random from
``0..N-1``; the goal is the leaf of a random arm; edges are listed parent->child, shuffled.

Two text formats are read (and written):

* the original repository's line format, byte-compatible with its data files::

      32,3|16,12|3,19|32,34|34,6|6,16|19,47|47,28/32,12=32,34,6,16,12

* a human format for typing::

      2→1, 0→10, 9→3, 5→4 || find(9 → 7)
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .errors import GraphError

# ------------------------------------------------------------------------------------------------
# The graph


@dataclass(frozen=True)
class Graph:
    """One problem instance: edges (parent, child), the query (start, goal) and, if known, the answer."""

    edges: tuple[tuple[int, int], ...]
    start: int
    goal: int
    answer: tuple[int, ...] | None = None  # the path as given in the input (line format only)
    _children: dict[int, list[int]] = field(default=None, repr=False, compare=False, hash=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        children: dict[int, list[int]] = {}
        for u, v in self.edges:
            children.setdefault(u, []).append(v)
        object.__setattr__(self, "_children", children)

    # -- structure --------------------------------------------------------------------------------
    @property
    def nodes(self) -> set[int]:
        return {x for e in self.edges for x in e}

    def children(self, node: int) -> list[int]:
        return list(self._children.get(node, ()))

    def parents(self, node: int) -> list[int]:
        return [u for u, v in self.edges if v == node]

    def find_path(self) -> tuple[int, ...] | None:
        """The start->goal path by breadth-first search over the edges (None if unreachable)."""
        prev: dict[int, int] = {self.start: self.start}
        frontier = [self.start]
        while frontier:
            nxt = []
            for u in frontier:
                for v in self._children.get(u, ()):
                    if v not in prev:
                        prev[v] = u
                        nxt.append(v)
            frontier = nxt
        if self.goal not in prev:
            return None
        path = [self.goal]
        while path[-1] != self.start:
            path.append(prev[path[-1]])
        return tuple(reversed(path))

    @property
    def path(self) -> tuple[int, ...]:
        """The true start->goal path (the given answer if any, else found in the graph)."""
        if self.answer is not None:
            return self.answer
        found = self.find_path()
        if found is None:  # parse() rejects these, so only hand-built graphs get here
            raise GraphError(f"no path from start {self.start} to goal {self.goal}")
        return found

    def arms(self) -> list[list[int]]:
        """Each arm as the list of nodes after the start, following the first child at each step."""
        arms = []
        for first in self.children(self.start):
            arm, node, seen = [first], first, {self.start, first}
            while (kids := self._children.get(node)) and kids[0] not in seen:
                node = kids[0]
                seen.add(node)
                arm.append(node)
            arms.append(arm)
        return arms

    def topology(self) -> tuple[int, int]:
        """(degree, path_len) as seen from the start: number of arms, nodes on the longest path."""
        arms = self.arms()
        return len(arms), 1 + max((len(a) for a in arms), default=0)

    def ood_reasons(self, degree: int | None = None, path_len: int | None = None, shapes: Topologies | None = None) -> list[str]:
        """Why this graph is not an in-distribution path-star G(degree, path_len), or not of one of ``shapes`` (a
        topology set's model), (empty if it is)."""
        reasons = []
        arms = self.arms()
        d, l = len(arms), 1 + max((len(a) for a in arms), default=0)
        lengths = {len(a) for a in arms}
        if len(lengths) > 1:
            reasons.append(f"arms have unequal lengths {sorted(len(a) for a in arms)}")
        on_arms = {self.start, *(x for a in arms for x in a)}
        if len(on_arms) != sum(len(a) for a in arms) + 1 or self.nodes - on_arms:
            reasons.append("not a star: some nodes are shared by arms or not on any arm")
        if any(len(k) > 1 for n, k in self._children.items() if n != self.start):
            reasons.append("a node other than the start has more than one child")
        if any(len(self.parents(n)) > 1 for n in self.nodes):
            reasons.append("a node has more than one parent (a cycle or a merge)")
        if self.parents(self.start):
            reasons.append("the start has a parent (a cycle through the start)")
        if self.goal not in {a[-1] for a in arms if a}:
            reasons.append("the goal is not the leaf of an arm")
        if degree is not None and d != degree:
            reasons.append(f"degree {d}, the model was trained on degree {degree}")
        if path_len is not None and l != path_len:
            reasons.append(f"path length {l}, the model was trained on path length {path_len}")
        if shapes is not None and (d, l) not in shapes:
            reasons.append(f"shape G({d},{l}), the model was trained on {shapes.label()}")
        return reasons

    def goal_arm(self) -> int | None:
        """Index (in ``arms()``) of the arm holding the goal."""
        for i, arm in enumerate(self.arms()):
            if self.goal in arm:
                return i
        return None


# ------------------------------------------------------------------------------------------------
# Formatting


def format_line(g: Graph, with_answer: bool = True) -> str:
    """The original repository's line format: ``u,v|u,v/s,g=s,...,g``."""
    text = "|".join(f"{u},{v}" for u, v in g.edges) + f"/{g.start},{g.goal}"
    if with_answer:
        text += "=" + ",".join(map(str, g.path))
    return text


def format_human(g: Graph) -> str:
    """The human format: ``a→b, c→d || find(s → g)``."""
    return ", ".join(f"{u}→{v}" for u, v in g.edges) + f" || find({g.start} → {g.goal})"


# ------------------------------------------------------------------------------------------------
# Parsing

_ARROWS = r"→|->|⟶|⇒|=>"  # split on these bare (no \s* around them: that is quadratic on long blanks)
_ARROW = re.compile(_ARROWS)
_QUERY_SEP = re.compile(_ARROWS + "|,")
_INT = re.compile(r"-?[0-9]+")  # ASCII digits only: '٣' or '²' are not node ids
_FIND = re.compile(r"find\s*\((.*)\)", re.IGNORECASE | re.DOTALL)
MAX_TEXT = 100_000  # characters; anything longer is not a graph a person typed
MAX_ID = 2**63 - 1  # node ids become torch.long tokens


def _shown(text: str, limit: int = 40) -> str:
    """``text`` quoted for an error message, cut short if long."""
    text = text.strip()
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"… ({len(text):,} characters)"


def parse_node_id(text: str, what: str, nodes: int | None) -> int:
    """One node id: ASCII digits, 0 <= id <= MAX_ID (< ``nodes`` when given); else a GraphError naming ``what``."""
    digits = text.strip()
    if not _INT.fullmatch(digits):
        shown = _shown(text) if digits else "(empty)"
        hint = " (node ids are written with ASCII digits 0-9)" if any(c.isdigit() for c in digits) else ""
        raise GraphError(f"{what}: {shown} is not a node id{hint}")
    if digits.startswith("-") and digits.strip("-0"):
        raise GraphError(f"{what}: node id {_shown(digits, 20)[1:-1]} is negative")
    if len(digits.lstrip("-0")) > 19:  # checked before int(), which refuses > 4300 digits with a ValueError
        raise GraphError(f"{what}: node id {_shown(digits, 20)} is too large")
    value = int(digits)
    if value > MAX_ID:
        raise GraphError(f"{what}: node id {value} is too large (at most {MAX_ID})")
    if nodes is not None and value >= nodes:
        raise GraphError(f"{what}: node id {value} is out of range (the model knows ids 0..{nodes - 1})")
    return value


def _validate(edges: list[tuple[int, int]], start: int, goal: int, where: list[str]) -> None:
    seen: dict[tuple[int, int], int] = {}
    for i, (u, v) in enumerate(edges):
        if u == v:
            raise GraphError(f"{where[i]}: self-loop {u}→{v}")
        if (u, v) in seen:
            raise GraphError(f"{where[i]}: duplicate edge {u}→{v} (first at edge {seen[(u, v)] + 1})")
        seen[(u, v)] = i
    nodes = {x for e in edges for x in e}
    if not edges:
        raise GraphError("the graph has no edges")
    if start not in nodes:
        raise GraphError(f"query: start {start} is not in the graph")
    if goal not in nodes:
        raise GraphError(f"query: goal {goal} is not in the graph")
    if start == goal:
        raise GraphError(f"query: start and goal are the same node {start}")


def parse_line(text: str, nodes: int | None = None) -> Graph:
    """Parse the original line format ``u,v|u,v|…/s,g[=s,…,g]``."""
    text = text.strip()
    if "/" not in text:
        raise GraphError("line format: missing '/' between the edges and the query 's,g'")
    if text.count("/") > 1:
        raise GraphError("line format: more than one '/'")
    edge_text, rest = text.split("/")
    query, _, answer_text = rest.partition("=")
    if "=" in answer_text:
        raise GraphError("line format: more than one '='")
    edges, where = [], []
    for i, item in enumerate(edge_text.split("|")):
        label = f"edge {i + 1} ({_shown(item)})"
        parts = item.split(",")
        if len(parts) != 2:
            raise GraphError(f"{label}: expected 'u,v'")
        edges.append((parse_node_id(parts[0], label, nodes), parse_node_id(parts[1], label, nodes)))
        where.append(label)
    q = query.split(",")
    if len(q) != 2:
        raise GraphError(f"query {_shown(query)}: expected 's,g' after '/'")
    start, goal = parse_node_id(q[0], "query start", nodes), parse_node_id(q[1], "query goal", nodes)
    _validate(edges, start, goal, where)
    answer = None
    if answer_text.strip():
        answer = tuple(parse_node_id(x, f"answer token {j + 1}", nodes) for j, x in enumerate(answer_text.split(",")))
    g = Graph(tuple(edges), start, goal, answer)
    if answer is None and g.find_path() is None:
        raise GraphError(f"query: goal {goal} is not reachable from start {start}")
    if answer is not None:
        _check_answer(g)
    return g


def _check_answer(g: Graph) -> None:
    """The given answer must be a path from the start to the goal along the graph's edges."""
    a = g.answer or ()
    if a[0] != g.start:
        raise GraphError(f"answer: begins at {a[0]}, not at the start {g.start}")
    if a[-1] != g.goal:
        raise GraphError(f"answer: ends at {a[-1]}, not at the goal {g.goal}")
    edges = set(g.edges)
    for j, (u, v) in enumerate(zip(a, a[1:])):
        if (u, v) not in edges:
            raise GraphError(f"answer: {u}→{v} (tokens {j + 1} and {j + 2}) is not an edge of the graph")
    if len(set(a)) != len(a):
        raise GraphError("answer: visits a node twice (not a path)")


def parse_human(text: str, nodes: int | None = None) -> Graph:
    """Parse ``a→b, c->d … || find(s → g)``; newlines may separate edges and the query."""
    if "||" in text:
        if text.count("||") > 1:
            raise GraphError("more than one '||'")
        edge_text, query = text.split("||")
    else:
        lines = [ln for ln in text.strip().splitlines() if ln.strip()]
        if len(lines) < 2:
            raise GraphError("missing the query: end with '|| find(s → g)' or put 'find(s → g)' on its own line")
        edge_text, query = "\n".join(lines[:-1]), lines[-1]
    edges, where = [], []
    items = [x for x in re.split(r"[,\n;]", edge_text) if x.strip()]
    for i, item in enumerate(items):
        label = f"edge {i + 1} ({_shown(item)})"
        parts = _ARROW.split(item)
        if len(parts) != 2:
            raise GraphError(f"{label}: expected 'a→b' or 'a->b'")
        edges.append((parse_node_id(parts[0], label, nodes), parse_node_id(parts[1], label, nodes)))
        where.append(label)
    m = _FIND.fullmatch(query.strip())
    inner = m.group(1) if m else query
    q = _QUERY_SEP.sub(" ", inner).split()
    if len(q) != 2:
        raise GraphError(f"query {_shown(query)}: expected 'find(s → g)' or 's g'")
    start, goal = parse_node_id(q[0], "query start", nodes), parse_node_id(q[1], "query goal", nodes)
    _validate(edges, start, goal, where)
    g = Graph(tuple(edges), start, goal)
    if g.find_path() is None:
        raise GraphError(f"query: goal {goal} is not reachable from start {start}")
    return g


def parse(text: str, nodes: int | None = None) -> Graph:
    """Parse either format; ``nodes`` (the model's N) bounds the ids when given."""
    if len(text) > MAX_TEXT:
        raise GraphError(f"input is {len(text):,} characters long; a graph is at most {MAX_TEXT:,}")
    if not text.strip():
        raise GraphError("the graph is empty")
    if "→" in text or "->" in text or "||" in text or "find" in text.lower() or "⟶" in text or "=>" in text:
        return parse_human(text, nodes)
    if "/" in text or "|" in text or re.fullmatch(r"\s*[0-9]+\s*,\s*[0-9]+\s*", text):
        return parse_line(text, nodes)
    return parse_human(text, nodes)


class GraphList(list):
    """The graphs of a data file, each remembering its line: ``where(i)`` is ``FILE:LINE`` for messages about
    graph i (``graph i+1`` for a plain list; see ``where``)."""

    def __init__(self, graphs=(), source: str | Path | None = None, lines: list[int] | None = None):
        super().__init__(graphs)
        self.source = source
        self.lines = lines if lines is not None else list(range(1, len(self) + 1))

    def where(self, i: int) -> str:
        return f"{self.source}:{self.lines[i]}" if self.source is not None else f"graph {i + 1}"


def where(graphs, i: int) -> str:
    """How a message names graph ``i`` of ``graphs``: ``FILE:LINE`` for a data file's graphs, else ``graph i+1``."""
    return graphs.where(i) if isinstance(graphs, GraphList) else f"graph {i + 1}"


def shape_of(g: Graph) -> tuple[int, int] | None:
    """(d, l) of a graph whose edge count is d(l−1) for its path of l nodes (a path-star's shape), else None."""
    l = len(g.path)
    if l < 2 or len(g.edges) % (l - 1):
        return None
    return len(g.edges) // (l - 1), l


DATA_DIR = Path(__file__).resolve().parent / "data"  # the original repository's test files, shipped (data/README.md)


def shipped_data() -> list[str]:
    """The names of the shipped test files (``ntp_probe/data/*.txt``), sorted."""
    return sorted(p.name for p in DATA_DIR.glob("*.txt")) if DATA_DIR.is_dir() else []


def data_path(path: str | Path) -> Path:
    """Where a data file argument is read from: the path as given, except that a bare file name (no directory, as
    the README and the model cards write ``deg_2_path_5_nodes_50_test_20000.txt``) that names nothing in the current
    directory but one of the shipped test files is that shipped copy. A file of that name here wins."""
    p = Path(path)
    bare = str(path) == p.name and p.name not in ("", ".", "..")
    if bare and not os.path.lexists(p) and (DATA_DIR / p.name).is_file():
        return DATA_DIR / p.name
    return p


def read_lines(path: str | Path, nodes: int | None = None) -> list[Graph]:
    """Read a data file, one graph a line (original format, answers optional): a ``GraphList`` (lines kept).

    ``path`` goes through ``data_path``: a bare name of a shipped test file is found without a copy here.
    Only a regular file is read (a FIFO or a device is refused: it may block or never end), of at most
    ``limits.MAX_DATA_BYTES``, lines of at most ``MAX_LINE_CHARS`` and at most ``MAX_GRAPHS`` graphs."""
    from .limits import MAX_DATA_BYTES, MAX_GRAPHS, MAX_LINE_CHARS, open_regular

    given, p = Path(path), data_path(path)
    graphs, lines = [], []
    try:
        f = open_regular(p, "graphs", MAX_DATA_BYTES)
    except GraphError as e:
        names = shipped_data()
        if str(path) == given.name and not os.path.lexists(given) and names and str(e).endswith("no such file"):
            raise GraphError(f"{e}, here or among the shipped test files ({', '.join(names)})") from None
        raise
    with f:
        i = 0
        while True:
            try:
                raw = f.readline(MAX_LINE_CHARS + 1)
            except UnicodeDecodeError:
                raise GraphError(f"{p}: not a text file (not UTF-8); expected graphs, one a line") from None
            except OSError as e:
                raise GraphError(f"{p}: cannot read graphs ({e.strerror or e.__class__.__name__})") from None
            if not raw:
                break
            i += 1
            if len(raw) > MAX_LINE_CHARS:
                raise GraphError(f"{p}:{i}: line longer than {MAX_LINE_CHARS:,} characters; not a graph")
            # lines as editors count them: only \n ends a line (a U+2028 inside a line is part of it)
            if not raw.strip():
                continue
            try:
                graphs.append(parse_line(raw, nodes))
                lines.append(i)
            except GraphError as e:
                raise GraphError(f"{p}:{i}: {e}") from None
            if len(graphs) > MAX_GRAPHS:
                raise GraphError(f"{p}: more than {MAX_GRAPHS:,} graphs; split the file")
    if not graphs:
        raise GraphError(f"{p}: no graphs in file")
    return GraphList(graphs, p, lines)


# ------------------------------------------------------------------------------------------------
# Generation (vectorised)


@dataclass
class GraphBatch:
    """A batch of path-star graphs as tensors: edges [B, E, 2], start [B], goal [B], path [B, l]."""

    edges: torch.Tensor
    start: torch.Tensor
    goal: torch.Tensor
    path: torch.Tensor

    def __len__(self) -> int:
        return self.start.shape[0]

    # A batch of several shapes is padded with -1: edges on the LEFT (pad edges first, so every question ends at
    # the same column), paths on the RIGHT. A batch of one shape has no padding (the tensors as they always were).
    @property
    def padded(self) -> bool:
        return bool((self.path < 0).any()) or bool((self.edges[:, :1] < 0).any())

    def lengths(self) -> torch.Tensor:
        """[B] nodes on each graph's start→goal path (l)."""
        return (self.path >= 0).sum(1)

    def num_edges(self) -> torch.Tensor:
        """[B] real edges of each graph."""
        return (self.edges[..., 0] >= 0).sum(1)

    def shapes(self) -> list[tuple[int, int]]:
        """(degree, path_len) of each graph, read from its tensors (path-star graphs: degree = edges / (l - 1))."""
        e, l = self.num_edges().tolist(), self.lengths().tolist()
        return [(ei // max(li - 1, 1), li) for ei, li in zip(e, l)]

    def by_shape(self) -> dict[tuple[int, int], GraphBatch]:
        """The graphs of each shape as an unpadded batch, shapes in sorted order (row order kept within a shape)."""
        shapes = self.shapes()
        out = {}
        for shape in sorted(set(shapes)):
            idx = torch.tensor([i for i, s in enumerate(shapes) if s == shape], dtype=torch.long, device=self.start.device)
            sub = self[idx]
            d, l = shape
            E = d * (l - 1)
            out[shape] = GraphBatch(sub.edges[:, sub.edges.shape[1] - E :], sub.start, sub.goal, sub.path[:, :l])
        return out

    def __getitem__(self, index) -> GraphBatch:
        """The graphs at ``index`` (a slice, or a tensor of indices) as a batch."""
        return GraphBatch(self.edges[index], self.start[index], self.goal[index], self.path[index])

    def to(self, device, non_blocking: bool = False) -> GraphBatch:
        return GraphBatch(*(t.to(device, non_blocking=non_blocking) for t in (self.edges, self.start, self.goal, self.path)))

    def pin(self) -> GraphBatch:
        """The batch in page-locked memory (CUDA only): copies from it to the GPU can run asynchronously."""
        return GraphBatch(*(t.pin_memory() for t in (self.edges, self.start, self.goal, self.path)))

    def graphs(self) -> Iterator[Graph]:
        edges, start, goal, path = (t.tolist() for t in (self.edges, self.start, self.goal, self.path))
        for e, s, g, p in zip(edges, start, goal, path):
            yield Graph(tuple(tuple(x) for x in e if x[0] >= 0), s, g, tuple(x for x in p if x >= 0))

    @staticmethod
    def from_graphs(graphs: Iterable[Graph]) -> GraphBatch:
        """Batch graphs; graphs of different sizes are padded (see ``padded``)."""
        graphs = list(graphs)
        E = max(len(g.edges) for g in graphs)
        L = max(len(g.path) for g in graphs)
        return GraphBatch(
            edges=torch.tensor([[(-1, -1)] * (E - len(g.edges)) + list(g.edges) for g in graphs], dtype=torch.long),
            start=torch.tensor([g.start for g in graphs], dtype=torch.long),
            goal=torch.tensor([g.goal for g in graphs], dtype=torch.long),
            path=torch.tensor([list(g.path) + [-1] * (L - len(g.path)) for g in graphs], dtype=torch.long),
        )

    @staticmethod
    def stack(parts: list[tuple[torch.Tensor, GraphBatch]], count: int) -> GraphBatch:
        """Scatter unpadded batches into one padded batch of ``count`` rows: ``parts`` is [(rows, batch)]."""
        dev = parts[0][1].start.device
        E = max(b.edges.shape[1] for _, b in parts)
        L = max(b.path.shape[1] for _, b in parts)
        edges = torch.full((count, E, 2), -1, dtype=torch.long, device=dev)
        path = torch.full((count, L), -1, dtype=torch.long, device=dev)
        start = torch.empty(count, dtype=torch.long, device=dev)
        goal = torch.empty(count, dtype=torch.long, device=dev)
        for rows, b in parts:
            edges[rows, E - b.edges.shape[1] :] = b.edges
            path[rows, : b.path.shape[1]] = b.path
            start[rows], goal[rows] = b.start, b.goal
        return GraphBatch(edges, start, goal, path)


def with_goals(batch: GraphBatch, k: int, generator: torch.Generator | None = None) -> GraphBatch:
    """Structured samples (Frydenlund 2025): each graph of a one-shape batch ``k`` times in a row, with ``k``
    different goals — the leaves of ``k`` distinct arms drawn at random (seeded); the edges, in their order, kept."""
    B, E, _ = batch.edges.shape
    l = batch.path.shape[1]
    d = E // max(l - 1, 1)
    if batch.padded or not 1 <= k <= d:
        raise ValueError(f"with_goals: {k} goals need a one-shape batch of degree ≥ {k}")
    dev = batch.start.device
    u, v = batch.edges[..., 0], batch.edges[..., 1]
    from_start = u == batch.start[:, None]
    arm = [v[from_start].view(B, d)]  # each arm's first node, in edge order
    child = torch.full((B, int(batch.edges.max()) + 1), -1, dtype=torch.long, device=dev)
    rows = torch.arange(B, device=dev)[:, None].expand(B, E)
    child[rows[~from_start], u[~from_start]] = v[~from_start]  # off the start every node has one child
    for _ in range(l - 2):
        arm.append(child[torch.arange(B, device=dev)[:, None], arm[-1]])
    arms = torch.stack(arm, dim=2)  # [B, d, l-1]
    pick = torch.rand(B, d, generator=generator, device=dev).argsort(dim=1)[:, :k]
    chosen = torch.gather(arms, 1, pick[:, :, None].expand(B, k, l - 1))
    path = torch.cat([batch.start[:, None, None].expand(B, k, 1), chosen], dim=2).reshape(B * k, l)
    return GraphBatch(batch.edges.repeat_interleave(k, 0), batch.start.repeat_interleave(k, 0), path[:, -1].clone(), path)


# ------------------------------------------------------------------------------------------------
# Topology sets: the shapes a model is trained on


MAX_SHAPES = 1024  # a set of more shapes than this is a typo, not a curriculum


def parse_values(text: str | int, what: str, least: int) -> tuple[int, ...]:
    """``5``, ``2-5`` (a range) or ``2,3,5`` (a list) -> sorted distinct values ≥ ``least``; else a UsageError."""
    from .errors import UsageError

    if isinstance(text, int):
        text = str(text)
    raw = str(text).strip()
    values: set[int] = set()
    for item in raw.split(","):
        item = item.strip()
        m = re.fullmatch(r"(\d{1,6})(?:\s*-\s*(\d{1,6}))?", item)
        if not m:
            raise UsageError(f"{what} {raw!r}: expected a number (5), a range (2-5) or a list (2,3,5)")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise UsageError(f"{what} {item}: the range runs backwards (write {hi}-{lo})")
        if lo < least:
            raise UsageError(f"{what} {raw}: every value must be ≥ {least} ({lo} is not)")
        if hi - lo >= MAX_SHAPES:
            raise UsageError(f"{what} {item}: more than {MAX_SHAPES} values")
        values.update(range(lo, hi + 1))
    return tuple(sorted(values))


def format_values(values: Iterable[int]) -> str:
    """(2, 3, 4, 5) -> '2-5'; (2, 3, 5) -> '2,3,5'; (4,) -> '4' (what ``parse_values`` reads back)."""
    v = sorted(values)
    if len(v) > 2 and v == list(range(v[0], v[-1] + 1)):
        return f"{v[0]}-{v[-1]}"
    return ",".join(map(str, v))


@dataclass(frozen=True)
class Topologies:
    """The shapes G(d, l) of a model or a data set: every degree with every path length (one value each: one shape)."""

    degrees: tuple[int, ...]
    path_lens: tuple[int, ...]

    @staticmethod
    def parse(degree: str | int | Iterable[int], path_len: str | int | Iterable[int], nodes: int) -> Topologies:
        """From ``--degree``/``--path-len`` text (or ints, or lists); the biggest shape must fit ``nodes`` ids."""
        from .errors import UsageError

        def values(v, what, least):
            if isinstance(v, int):
                return (v,)  # one shape as always: check_topology below says what is wrong with it
            if isinstance(v, (list, tuple)):
                return tuple(sorted(set(int(x) for x in v)))
            return parse_values(v, what, least)

        d, l = values(degree, "--degree", 1), values(path_len, "--path-len", 2)
        if len(d) * len(l) == 1:
            check_topology(d[0], l[0], nodes)
            return Topologies(d, l)
        if min(d) < 1 or min(l) < 2:
            raise UsageError(f"--degree {format_values(d)} --path-len {format_values(l)}: need degrees ≥ 1 and path "
                             "lengths ≥ 2")
        if len(d) * len(l) > MAX_SHAPES:
            raise UsageError(f"--degree {format_values(d)} --path-len {format_values(l)}: {len(d) * len(l)} shapes, "
                             f"at most {MAX_SHAPES}")
        t = Topologies(d, l)
        needed = t.max_degree * (t.max_path_len - 1) + 1
        if needed > nodes:
            raise UsageError(f"the set's biggest shape G({t.max_degree},{t.max_path_len}) needs {needed} distinct nodes but --nodes is "
                             f"{nodes}: use --nodes {needed} or more, or smaller shapes")
        return t

    @property
    def shapes(self) -> list[tuple[int, int]]:
        return [(d, l) for d in self.degrees for l in self.path_lens]

    @property
    def mixed(self) -> bool:
        return len(self.degrees) * len(self.path_lens) > 1

    @property
    def max_degree(self) -> int:
        return max(self.degrees)

    @property
    def max_path_len(self) -> int:
        return max(self.path_lens)

    def __contains__(self, shape) -> bool:
        return shape[0] in self.degrees and shape[1] in self.path_lens

    def label(self) -> str:
        """'G(3,4)' for one shape, 'G(d∈2..5, l∈{3,4,6})' or 'G(d∈{2,3}, l=5)' for a set."""
        if not self.mixed:
            return f"G({self.degrees[0]},{self.path_lens[0]})"

        def one(v):
            text = format_values(v)
            return f"={text}" if len(v) == 1 else "∈" + (text.replace("-", "..") if "-" in text else "{" + text + "}")
        return f"G(d{one(self.degrees)}, l{one(self.path_lens)})"

    def to_option(self) -> tuple[int | list[int], int | list[int]]:
        """(degree, path_len) as TrainConfig holds them: an int for one value (as always), else a list."""
        def one(v):
            return v[0] if len(v) == 1 else list(v)
        return one(self.degrees), one(self.path_lens)


def _seeded(generator: torch.Generator | None, seed: int | None, device) -> torch.Generator:
    """The caller's generator, or a new one seeded with ``seed`` (0 when None)."""
    if generator is None:
        generator = torch.Generator(device=device)
        generator.manual_seed(0 if seed is None else seed)
    return generator


def generate_set(
    topologies: Topologies,
    nodes: int,
    count: int,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    device: str | torch.device = "cpu",
) -> GraphBatch:
    """``count`` random graphs, each of a shape drawn uniformly from ``topologies`` (seeded).

    One shape: exactly ``generate`` (the same graphs from the same seed). Several: the shapes of the rows are
    drawn first, then each shape's graphs in shape order from the same generator; the batch is padded."""
    if not topologies.mixed:
        return generate(topologies.degrees[0], topologies.path_lens[0], nodes, count, seed, generator, device)
    generator = _seeded(generator, seed, device)
    shapes = topologies.shapes
    pick = torch.randint(len(shapes), (count,), generator=generator, device=device)
    parts = []
    for i, (d, l) in enumerate(shapes):
        rows = (pick == i).nonzero().squeeze(1)
        if len(rows):
            parts.append((rows, generate(d, l, nodes, len(rows), generator=generator, device=device)))
    return GraphBatch.stack(parts, count)


def check_topology(degree: int, path_len: int, nodes: int) -> None:
    if degree < 1 or path_len < 2:
        raise GraphError(f"G({degree},{path_len}): need degree ≥ 1 and path length ≥ 2")
    needed = degree * (path_len - 1) + 1
    if needed > nodes:
        raise GraphError(f"G({degree},{path_len}) needs {needed} distinct nodes but only {nodes} ids exist")


def generate(
    degree: int,
    path_len: int,
    nodes: int,
    count: int,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    device: str | torch.device = "cpu",
) -> GraphBatch:
    """``count`` random G(degree, path_len) graphs over ids 0..nodes-1, seeded and vectorised."""
    check_topology(degree, path_len, nodes)
    generator = _seeded(generator, seed, device)
    k = degree * (path_len - 1) + 1
    # k distinct ids per graph: the first k entries of a random permutation of 0..N-1
    ids = torch.rand(count, nodes, generator=generator, device=device).argsort(dim=1)[:, :k]
    start = ids[:, 0]
    arms = ids[:, 1:].view(count, degree, path_len - 1)
    parents = torch.cat([start[:, None, None].expand(count, degree, 1), arms[:, :, :-1]], dim=2)
    edges = torch.stack([parents, arms], dim=-1).view(count, degree * (path_len - 1), 2)
    order = torch.rand(count, edges.shape[1], generator=generator, device=device).argsort(dim=1)
    edges = torch.gather(edges, 1, order[:, :, None].expand_as(edges))
    goal_arm = torch.randint(degree, (count,), generator=generator, device=device)
    arm = arms[torch.arange(count, device=device), goal_arm]
    path = torch.cat([start[:, None], arm], dim=1)
    return GraphBatch(edges=edges, start=start, goal=arm[:, -1], path=path)


STREAM_CELLS = 2**22  # random numbers drawn per chunk of a stream (count × N): a few tens of MB at any size


def stream_chunk_size(nodes: int) -> int:
    """Graphs per chunk of ``generate_stream``: at most 4,096, fewer when N is large (bounded memory)."""
    return max(1, min(4096, STREAM_CELLS // max(1, nodes)))


def _chunk_seed(seed: int, k: int) -> int:
    import hashlib

    digest = hashlib.blake2b(f"ntp-probe/generate:{seed}:{k}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1  # a 63-bit torch seed


def generate_stream(degree: int, path_len: int, nodes: int, seed: int = 0,
                    shapes: Topologies | None = None) -> Iterator[GraphBatch]:
    """An endless seeded stream of G(degree, path_len) graphs, in chunks of ``stream_chunk_size(nodes)``.

    Chunk k is drawn from its own generator, seeded by (seed, k): the first n graphs are the same whatever
    count is asked for, so a seed names one infinite sequence (``ntp-probe generate``). ``generate`` (one
    batch, one generator) stays as it is: training batches and ``eval --count`` graphs do not change.
    ``shapes``, a topology set: each graph's shape drawn from it (``generate_set`` per chunk)."""
    if shapes is not None and shapes.mixed:
        size = stream_chunk_size(nodes)
        for k in itertools.count():
            yield generate_set(shapes, nodes, size, seed=_chunk_seed(seed, k))
    check_topology(degree, path_len, nodes)
    size = stream_chunk_size(nodes)
    k = 0
    while True:
        yield generate(degree, path_len, nodes, size, seed=_chunk_seed(seed, k))
        k += 1


def generate_text(degree: int, path_len: int, nodes: int, count: int, seed: int = 0,
                  with_answer: bool = True, shapes: Topologies | None = None) -> Iterator[str]:
    """The first ``count`` graphs of ``generate_stream`` as text in the line format, a chunk at a time."""
    left = count
    for batch in generate_stream(degree, path_len, nodes, seed, shapes):
        if left <= 0:
            return
        lines = format_lines(batch, with_answer=with_answer)[:left]
        left -= len(lines)
        yield "\n".join(lines) + "\n"


def format_lines(batch: GraphBatch, with_answer: bool = True) -> list[str]:
    """Original line format for a whole batch: one C-level ``%`` format per line over one flat row."""
    if batch.padded:  # several shapes: each shape's rows formatted as one unpadded batch, lines back in row order
        l = batch.lengths()
        if not bool((batch.num_edges() % (l - 1).clamp_min(1) == 0).all()):  # not all path-star shapes: one by one
            return [format_line(g, with_answer) for g in batch.graphs()]
        shapes = batch.shapes()
        lines: list[str] = [""] * len(shapes)
        for shape, sub in batch.by_shape().items():
            rows = [i for i, s in enumerate(shapes) if s == shape]
            for i, line in zip(rows, format_lines(sub, with_answer)):
                lines[i] = line
        return lines
    B, E, _ = batch.edges.shape
    L = batch.path.shape[1]
    fmt = "|".join(["%d,%d"] * E) + "/%d,%d"
    cols = [batch.edges.reshape(B, 2 * E), batch.start[:, None], batch.goal[:, None]]
    if with_answer:
        fmt += "=" + ",".join(["%d"] * L)
        cols.append(batch.path)
    rows = torch.cat(cols, dim=1).tolist()
    return [fmt % tuple(r) for r in rows]
