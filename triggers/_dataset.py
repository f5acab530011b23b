"""Datasets and the conditions built from them with ``&`` and ``|``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Dataset", "DatasetAll", "DatasetAny", "DatasetCondition", "as_condition"]

_MAX_URI = 3000


class DatasetCondition:
    """A boolean expression over datasets; ``&`` and ``|`` combine conditions."""

    def __and__(self, other: DatasetCondition) -> DatasetAll:
        return DatasetAll((self, _check_operand(other, "&")))

    def __or__(self, other: DatasetCondition) -> DatasetAny:
        return DatasetAny((self, _check_operand(other, "|")))

    def uris(self) -> frozenset[str]:
        raise NotImplementedError

    def evaluate(self, updated: Mapping[str, object] | frozenset[str] | set[str]) -> bool:
        """True when the datasets in ``updated`` satisfy the condition."""
        raise NotImplementedError


def _check_operand(other: object, op: str) -> DatasetCondition:
    if not isinstance(other, DatasetCondition):
        raise TypeError(f"cannot combine a dataset condition with {other!r} using {op!r}")
    return other


@dataclass(frozen=True, slots=True)
class Dataset(DatasetCondition):
    """A piece of data identified by ``uri``; tasks update it through ``outlets``."""

    uri: str
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.uri, str) or not self.uri.strip():
            raise ValueError(f"dataset uri must be a non-empty string, got {self.uri!r}")
        if self.uri != self.uri.strip() or any(ch.isspace() for ch in self.uri):
            raise ValueError(f"dataset uri {self.uri!r} contains whitespace")
        if len(self.uri) > _MAX_URI:
            raise ValueError(f"dataset uri is longer than {_MAX_URI} characters")

    def uris(self) -> frozenset[str]:
        return frozenset({self.uri})

    def evaluate(self, updated: Mapping[str, object] | frozenset[str] | set[str]) -> bool:
        return self.uri in updated

    def __str__(self) -> str:
        return f"Dataset({self.uri!r})"


@dataclass(frozen=True, slots=True)
class DatasetAll(DatasetCondition):
    conditions: tuple[DatasetCondition, ...]

    def uris(self) -> frozenset[str]:
        return frozenset().union(*(c.uris() for c in self.conditions))

    def evaluate(self, updated: Mapping[str, object] | frozenset[str] | set[str]) -> bool:
        return all(c.evaluate(updated) for c in self.conditions)

    def __str__(self) -> str:
        return "(" + " & ".join(str(c) for c in self.conditions) + ")"


@dataclass(frozen=True, slots=True)
class DatasetAny(DatasetCondition):
    conditions: tuple[DatasetCondition, ...]

    def uris(self) -> frozenset[str]:
        return frozenset().union(*(c.uris() for c in self.conditions))

    def evaluate(self, updated: Mapping[str, object] | frozenset[str] | set[str]) -> bool:
        return any(c.evaluate(updated) for c in self.conditions)

    def __str__(self) -> str:
        return "(" + " | ".join(str(c) for c in self.conditions) + ")"


def as_condition(value: DatasetCondition | Iterable[object]) -> DatasetCondition:
    """A condition from a condition or a non-empty list of datasets (all of them)."""
    if isinstance(value, DatasetCondition):
        return value
    items = list(value)
    if not items:
        raise ValueError("an empty list of datasets is not a schedule")
    datasets = [item for item in items if isinstance(item, Dataset)]
    if len(datasets) != len(items):
        bad = next(item for item in items if not isinstance(item, Dataset))
        raise ValueError(
            f"a schedule list may hold only Dataset objects, got {bad!r}; "
            "use DatasetOrTime/DatasetAndTime to combine datasets with a time schedule"
        )
    return datasets[0] if len(datasets) == 1 else DatasetAll(tuple(datasets))
