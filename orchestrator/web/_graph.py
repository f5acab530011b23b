"""Laying out a DAG for the graph views: nodes in columns by depth, edges as curves.

Rules:
1. A node's column is its longest path from a root, so every edge points right.
2. Within a column, nodes are ordered by the mean position of their neighbours (a few
   sweeps left to right and back), which keeps most edges short and uncrossed.
3. A layout depends only on the nodes and edges: it is cached by them, so a DAG's graph
   is laid out once per structure, not per request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["Layout", "NodeBox", "layout", "ranks"]

NODE_W = 180
NODE_H = 34
GAP_X = 60
GAP_Y = 14
_SWEEPS = 4


@dataclass(frozen=True, slots=True)
class NodeBox:
    id: str
    x: int
    y: int


@dataclass(frozen=True, slots=True)
class Layout:
    nodes: tuple[NodeBox, ...]
    edges: tuple[tuple[str, str, str], ...]  # (from, to, SVG path)
    width: int
    height: int


def layout(nodes: Sequence[str], edges: Sequence[tuple[str, str]]) -> Layout:
    """The layout of ``nodes`` (in a stable order) and ``edges`` between them."""
    return _layout(tuple(nodes), tuple(sorted(set(edges))))


@lru_cache(maxsize=256)
def _layout(nodes: tuple[str, ...], edges: tuple[tuple[str, str], ...]) -> Layout:
    ups, downs = _neighbours(nodes, edges)
    rank = _ranks(nodes, ups, downs)
    columns: list[list[str]] = [[] for _ in range(max(rank.values(), default=-1) + 1)]
    for node in nodes:
        columns[rank[node]].append(node)
    position = {n: float(i) for column in columns for i, n in enumerate(column)}
    for sweep in range(_SWEEPS):
        order = columns[1:] if sweep % 2 == 0 else columns[-2::-1]
        neighbours = ups if sweep % 2 == 0 else downs
        for column in order:
            for node in column:
                near = neighbours[node]
                if near:
                    position[node] = sum(position[m] for m in near) / len(near)
            column.sort(key=lambda n: position[n])
            for i, node in enumerate(column):
                position[node] = float(i)
    boxes = {
        node: NodeBox(node, 10 + c * (NODE_W + GAP_X), 10 + i * (NODE_H + GAP_Y))
        for c, column in enumerate(columns)
        for i, node in enumerate(column)
    }
    paths = []
    for a, b in edges:
        x1, y1 = boxes[a].x + NODE_W, boxes[a].y + NODE_H // 2
        x2, y2 = boxes[b].x, boxes[b].y + NODE_H // 2
        mid = (x1 + x2) // 2
        paths.append((a, b, f"M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}"))
    tallest = max((len(c) for c in columns), default=0)
    return Layout(
        nodes=tuple(boxes[n] for n in nodes),
        edges=tuple(paths),
        width=20 + len(columns) * (NODE_W + GAP_X) - GAP_X,
        height=20 + tallest * (NODE_H + GAP_Y) - GAP_Y,
    )


def _neighbours(
    nodes: Sequence[str], edges: Sequence[tuple[str, str]]
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    ups: dict[str, list[str]] = {n: [] for n in nodes}
    downs: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in edges:
        downs[a].append(b)
        ups[b].append(a)
    return ups, downs


def ranks(nodes: Sequence[str], edges: Sequence[tuple[str, str]]) -> dict[str, int]:
    """Each node's longest path from a root (rule 1)."""
    return _ranks(nodes, *_neighbours(nodes, edges))


def _ranks(
    nodes: Sequence[str], ups: dict[str, list[str]], downs: dict[str, list[str]]
) -> dict[str, int]:
    """Rule 1, in topological order (Kahn's)."""
    waiting = {n: len(ups[n]) for n in nodes}
    ready = [n for n in nodes if waiting[n] == 0]
    rank = dict.fromkeys(nodes, 0)
    while ready:
        node = ready.pop()
        for down in downs[node]:
            rank[down] = max(rank[down], rank[node] + 1)
            waiting[down] -= 1
            if waiting[down] == 0:
                ready.append(down)
    return rank
