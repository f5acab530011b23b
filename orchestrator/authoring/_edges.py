"""Edge labels: ``a >> Label("on success") >> b``, as Airflow's ``Label`` (shown in a
graph view; they change nothing about when tasks run)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from orchestrator.authoring._baseoperator import BaseOperator, DependencyMixin, _as_list

__all__ = ["Label"]


class Label(DependencyMixin):
    """A label for the edges from the tasks before it to the tasks after it."""

    def __init__(self, label: str) -> None:
        self.label = str(label)
        self._upstreams: list[BaseOperator] = []

    def _takes_upstreams(self, leaves: list[BaseOperator]) -> bool:
        self._upstreams += [t for t in leaves if t not in self._upstreams]
        return True

    def _roots(self) -> list[BaseOperator]:
        return []

    def _leaves(self) -> list[BaseOperator]:
        return list(self._upstreams)

    def set_downstream(self, other: DependencyMixin | Sequence[DependencyMixin]) -> None:
        super().set_downstream(other)
        for item in _as_list(other):
            for up in self._upstreams:
                for down in item._roots():
                    edges: dict[tuple[str, str], dict[str, Any]] | None = getattr(
                        up.dag, "edge_info", None
                    )
                    if edges is not None:
                        edges[(up.task_id, down.task_id)] = {"label": self.label}

    def __repr__(self) -> str:
        return f"Label({self.label!r})"
