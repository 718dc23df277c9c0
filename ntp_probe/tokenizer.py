"""Token ids, the original repository's numbering: node i -> i, '|' -> N, '=' -> N+1, '/' -> N+2, '$' -> N+3.

Commas are dropped, so the question ``u,v|u,v/s,g=`` becomes ``u v | u v / s g =``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .task import Graph, GraphBatch


PAD = -1  # padding: no token; the model masks it out (keys), and position ids skip it


@dataclass(frozen=True)
class Tokenizer:
    nodes: int

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
    def edge_node_mask(num_edges: int) -> torch.Tensor:
        """[question_len] bool: the positions of the edges' node ids (not the '|' between edges, not the query)."""
        pos = torch.arange(Tokenizer.question_len(num_edges))
        return (pos < 3 * num_edges - 1) & (pos % 3 != 2)

    def question(self, g: Graph) -> list[int]:
        ids: list[int] = []
        for i, (u, v) in enumerate(g.edges):
            if i:
                ids.append(self.pipe)
            ids += [u, v]
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
        tail = torch.stack(
            [torch.full_like(batch.start, self.slash), batch.start, batch.goal, torch.full_like(batch.start, self.eq)],
            dim=1,
        )
        return torch.cat([body, tail], dim=1)

    def token_str(self, i: int) -> str:
        if 0 <= i < self.nodes:
            return str(i)
        return {self.pipe: "|", self.eq: "=", self.slash: "/", self.dollar: "$"}.get(i, f"<{i}>")

    def edge_of_position(self, g: Graph, pos: int) -> tuple[int, int] | None:
        """The edge (u, v) a question position belongs to (None for the '/s g =' tail)."""
        i = pos // 3
        return g.edges[i] if i < len(g.edges) and pos < 3 * len(g.edges) - 1 else None
