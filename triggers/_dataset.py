"""Datasets, the conditions built from them with ``&`` and ``|``, and dataset events.

A dataset is named by a URI. The URI is normalised when the ``Dataset`` is made,
so that two spellings of one dataset are one dataset: the scheme and the host are
lower-cased, trailing slashes of the path and the fragment dropped, query
parameters sorted. A name without a scheme (``"orders"``) is kept as written.

A URI that cannot name a dataset (empty, not ASCII, whitespace or control
characters, a user or password in it, the reserved scheme ``orchestrator``, over
3,000 characters) does not raise where the ``Dataset`` is made, usually inside
``DAG(schedule=...)``'s arguments before any DAG exists: ``Dataset.check`` raises,
and the DAG (for its schedule) and the task (for its outlets) call it with their
names, so the error names the DAG, the task and the URI.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

__all__ = [
    "Dataset",
    "DatasetAll",
    "DatasetAny",
    "DatasetCondition",
    "DatasetEvent",
    "as_condition",
    "normalize_uri",
]

MAX_URI = 3000
_RESERVED_SCHEMES = frozenset({"orchestrator", "airflow"})


def normalize_uri(uri: object) -> str:
    """The normal form of a dataset URI; ValueError saying what is wrong with it."""
    if not isinstance(uri, str):
        raise ValueError(f"a dataset URI must be a string, got {type(uri).__name__}")
    shown = repr(uri) if len(uri) <= 80 else repr(uri[:77] + "...")
    if not uri:
        raise ValueError("a dataset URI must not be empty")
    if len(uri) > MAX_URI:
        raise ValueError(f"dataset URI {shown} is longer than {MAX_URI} characters")
    if not uri.isascii():
        raise ValueError(f"dataset URI {shown} must be ASCII (percent-encode other characters)")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in uri):
        raise ValueError(f"dataset URI {shown} contains whitespace or control characters")
    try:
        parts = urllib.parse.urlsplit(uri)
    except ValueError as exc:
        raise ValueError(f"dataset URI {shown} is not a URI ({exc})") from None
    if not parts.scheme or "://" not in uri:
        return uri  # a plain name
    scheme = parts.scheme.lower()
    if scheme in _RESERVED_SCHEMES:
        raise ValueError(f"dataset URI {shown}: the scheme {scheme!r} is reserved")
    if "@" in parts.netloc:
        raise ValueError(
            f"dataset URI {shown} holds a user or password: name the data, not the credentials"
        )
    if not parts.netloc and scheme in ("s3", "gs", "gcs", "http", "https"):
        raise ValueError(f"dataset URI {shown} has no bucket or host")
    query = urllib.parse.urlencode(sorted(urllib.parse.parse_qsl(parts.query, True)))
    path = parts.path.rstrip("/") if parts.path.strip("/") else ""
    return urllib.parse.urlunsplit((scheme, parts.netloc.lower(), path, query, ""))


class DatasetCondition:
    """A boolean expression over datasets; ``&`` and ``|`` combine conditions."""

    def __and__(self, other: DatasetCondition) -> DatasetAll:
        return DatasetAll((self, _check_operand(other, "&")))

    def __or__(self, other: DatasetCondition) -> DatasetAny:
        return DatasetAny((self, _check_operand(other, "|")))

    def datasets(self) -> Iterator[Dataset]:
        """Every dataset the condition names (once per mention)."""
        raise NotImplementedError

    def uris(self) -> frozenset[str]:
        return frozenset(d.uri for d in self.datasets())

    def evaluate(self, updated: Collection[str]) -> bool:
        """True when the datasets in ``updated`` satisfy the condition."""
        raise NotImplementedError


def _check_operand(other: object, op: str) -> DatasetCondition:
    if not isinstance(other, DatasetCondition):
        raise TypeError(f"cannot combine a dataset condition with {other!r} using {op!r}")
    return other


@dataclass(frozen=True, slots=True)
class Dataset(DatasetCondition):
    """A piece of data identified by ``uri``; tasks update it through ``outlets``.

    ``extra`` describes the dataset itself; an update's own ``extra`` is set by the
    producing task through the context's ``outlet_events``.
    """

    uri: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)
    problem: str | None = field(default=None, init=False, compare=False, hash=False, repr=False)
    # Airflow 3's Asset names: ``Asset(uri=..., name=...)``; a name alone is its URI too.
    name: str | None = field(default=None, compare=False, hash=False)
    group: str = field(default="asset", compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        if not self.uri and self.name:
            object.__setattr__(self, "uri", self.name)
        if self.name is None:
            object.__setattr__(self, "name", self.uri)
        try:
            object.__setattr__(self, "uri", normalize_uri(self.uri))
        except ValueError as exc:
            object.__setattr__(self, "problem", str(exc))
        if not isinstance(self.extra, Mapping):
            object.__setattr__(self, "problem", f"dataset {self.uri!r}: extra must be a mapping")

    def check(self, where: str) -> Dataset:
        """This dataset; ValueError naming ``where`` if its URI is not valid."""
        if self.problem is not None:
            raise ValueError(f"{where}: {self.problem}")
        return self

    def datasets(self) -> Iterator[Dataset]:
        yield self

    def uris(self) -> frozenset[str]:
        return frozenset({self.uri})

    def evaluate(self, updated: Collection[str]) -> bool:
        return self.uri in updated

    def __str__(self) -> str:
        return f"Dataset({self.uri!r})"


@dataclass(frozen=True, slots=True, init=False)
class _Combination(DatasetCondition):
    """Conditions joined by one operator (``DatasetAll``: ``&``, ``DatasetAny``: ``|``)."""

    conditions: tuple[DatasetCondition, ...]
    _operator: ClassVar[str] = ""

    def __init__(self, *conditions: DatasetCondition | Iterable[DatasetCondition]) -> None:
        object.__setattr__(self, "conditions", _operands(conditions, type(self).__name__))

    def datasets(self) -> Iterator[Dataset]:
        for condition in self.conditions:
            yield from condition.datasets()

    def __str__(self) -> str:
        return "(" + f" {self._operator} ".join(str(c) for c in self.conditions) + ")"


@dataclass(frozen=True, slots=True, init=False)
class DatasetAll(_Combination):
    """Every condition holds (``a & b``; a schedule list of datasets)."""

    _operator: ClassVar[str] = "&"

    def evaluate(self, updated: Collection[str]) -> bool:
        return all(c.evaluate(updated) for c in self.conditions)


@dataclass(frozen=True, slots=True, init=False)
class DatasetAny(_Combination):
    """At least one condition holds (``a | b``)."""

    _operator: ClassVar[str] = "|"

    def evaluate(self, updated: Collection[str]) -> bool:
        return any(c.evaluate(updated) for c in self.conditions)


def _operands(
    given: tuple[DatasetCondition | Iterable[DatasetCondition], ...], name: str
) -> tuple[DatasetCondition, ...]:
    """``DatasetAll(a, b)`` and ``DatasetAll((a, b))`` alike (the operators use the latter)."""
    if len(given) == 1 and not isinstance(given[0], DatasetCondition):
        given = tuple(given[0])
    if not given:
        raise ValueError(f"{name} needs at least one dataset condition")
    for item in given:
        if not isinstance(item, DatasetCondition):
            raise TypeError(f"{name} takes datasets and dataset conditions, got {item!r}")
    return tuple(given)  # type: ignore[arg-type]


def as_condition(value: DatasetCondition | Iterable[object]) -> DatasetCondition:
    """A condition from a condition or a non-empty list of datasets (all of them)."""
    if isinstance(value, DatasetCondition):
        return value
    items = list(value)
    if not items:
        raise ValueError("an empty list of datasets is not a schedule")
    conditions = [item for item in items if isinstance(item, DatasetCondition)]
    if len(conditions) != len(items):
        bad = next(item for item in items if not isinstance(item, DatasetCondition))
        raise ValueError(
            f"a schedule list may hold only Dataset objects, got {bad!r}; "
            "use DatasetOrTime/DatasetAndTime to combine datasets with a time schedule"
        )
    return conditions[0] if len(conditions) == 1 else DatasetAll(tuple(conditions))


@dataclass(frozen=True, slots=True)
class DatasetEvent:
    """One update of a dataset: by a producing task's success, or from outside.

    ``id`` is unique and stable (a repeated write of one update is one event);
    ``source_*`` name the producing task instance, when there is one.
    """

    id: str
    uri: str
    timestamp: datetime
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)
    source_dag_id: str | None = None
    source_run_id: str | None = None
    source_task_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "uri": self.uri,
            "extra": dict(self.extra),
            "timestamp": self.timestamp.isoformat(),
            "source_dag_id": self.source_dag_id,
            "source_run_id": self.source_run_id,
            "source_task_id": self.source_task_id,
        }
