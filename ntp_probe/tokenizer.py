"""Token ids, the original repository's numbering: node i -> i, '|' -> N, '=' -> N+1, '/' -> N+2, '$' -> N+3.

Commas are dropped, so the question ``u,v|u,v/s,g=`` becomes ``u v | u v / s g =``. The query-first layout
(``train --query-first``, Frydenlund 2025) puts the query before the edge list: ``s g / u v | u v =``; the data
files keep the original format either way.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .task import Graph, GraphBatch


PAD = -1  # padding: no token; the model masks it out (keys), and position ids skip it


@dataclass(frozen=True)
class Tokenizer:
    nodes: int
    query_first: bool = False  # 's g / edges =' instead of 'edges / s g ='

    @property
    def pipe(self) -> int:
        return self.nodes

    @property
    def eq(self) -> int:
        return self.nodes + 1

    @property
    def slash(self) -> int:
        return self.nodes + 2

    @property
    def dollar(self) -> int:
        return self.nodes + 3

    @property
    def vocab_size(self) -> int:
        return self.nodes + 4

    @staticmethod
    def question_len(num_edges: int) -> int:
        return 3 * num_edges - 1 + 4

    @staticmethod
    def edge_node_mask(num_edges: int, query_first: bool = False) -> torch.Tensor:
        """[question_len] bool: the positions of the edges' node ids (not the '|' between edges, not the query)."""
        pos = torch.arange(Tokenizer.question_len(num_edges)) - (3 if query_first else 0)
        return (pos >= 0) & (pos < 3 * num_edges - 1) & (pos % 3 != 2)

    @property
    def edges_offset(self) -> int:
        """Where the edge list starts in a question: 0, or 3 after the query's 's g /'."""
        return 3 if self.query_first else 0

    def question(self, g: Graph) -> list[int]:
        ids: list[int] = []
        for i, (u, v) in enumerate(g.edges):
            if i:
                ids.append(self.pipe)
            ids += [u, v]
        if self.query_first:
            return [g.start, g.goal, self.slash] + ids + [self.eq]
        return ids + [self.slash, g.start, g.goal, self.eq]

    def questions(self, batch: GraphBatch) -> torch.Tensor:
        """[B, Q] question ids; a padded batch (graphs of several sizes) gives LEFT-padded questions (``PAD``), so
        every question ends with its '=' in the last column."""
        B, E, _ = batch.edges.shape
        dev = batch.edges.device
        body = torch.cat([batch.edges, torch.full((B, E, 1), self.pipe, device=dev)], dim=2)
        if E and bool((batch.edges[:, 0, 0] < 0).any()):  # a padded batch: pad edges give pad tokens, pipe included
            body = torch.where(batch.edges[..., :1] < 0, torch.full_like(body, PAD), body)
        body = body.view(B, 3 * E)[:, :-1]
        eq = torch.full_like(batch.start, self.eq)[:, None]
        if self.query_first:
            head = torch.stack([batch.start, batch.goal, torch.full_like(batch.start, self.slash)], dim=1)
            q = torch.cat([head, body, eq], dim=1)
            pads = (body == PAD).sum(1)  # a padded batch: move each row's pads (the body's first) to the very left
            if bool(pads.any()):
                col = torch.arange(q.shape[1], device=dev)[None, :]
                order = torch.where(col < pads[:, None], col + 3, torch.where(col < pads[:, None] + 3, col - pads[:, None], col))
                q = torch.gather(q, 1, order)
            return q
        tail = torch.stack([torch.full_like(batch.start, self.slash), batch.start, batch.goal], dim=1)
        return torch.cat([body, tail, eq], dim=1)

    def token_str(self, i: int) -> str:
        if 0 <= i < self.nodes:
            return str(i)
        return {self.pipe: "|", self.eq: "=", self.slash: "/", self.dollar: "$"}.get(i, f"<{i}>")

    def edge_of_position(self, g: Graph, pos: int) -> tuple[int, int] | None:
        """The edge (u, v) a question position belongs to (None for the query and the '=')."""
        pos -= self.edges_offset
        i = pos // 3
        return g.edges[i] if 0 <= pos and i < len(g.edges) and pos < 3 * len(g.edges) - 1 else None
