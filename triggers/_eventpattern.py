"""``EventPattern``: one pattern, and the reference rule of matching an event.

How an event is read (its leaves, and the arrays each is in) and when an alternative
holds are stated once here; ``PatternSet`` finds its candidates by index and then
applies the same ``choose`` to leaves under arrays (rules 3 and 4 of ``_pattern``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from triggers._pattern import Alternative, Leaf, Path, PatternError, Trail, compile_pattern

__all__ = ["EventPattern", "choose", "consistent", "event_leaves", "match_alternative"]


def event_leaves(event: Mapping[str, Any]) -> list[Leaf]:
    """Every scalar of ``event`` with its path and the array elements it is in (rule 3)."""
    found: list[Leaf] = []
    arrays = iter(range(1 << 62))

    def walk(node: object, path: Path, trail: Trail) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                walk(value, (*path, str(key)), trail)
        elif isinstance(node, list):
            array = next(arrays)
            for i, item in enumerate(node):
                walk(item, path, (*trail, (array, i)))
        else:
            found.append((path, node, trail))

    walk(event, (), ())
    return found


def consistent(a: Trail, b: Trail) -> bool:
    """Two leaves may combine: under each array both are in, they are in one element."""
    if not a or not b:
        return True
    positions = dict(a)
    return all(positions.get(array, index) == index for array, index in b)


def choose(options: list[list[Trail]]) -> bool:
    """Whether one trail can be picked from each option, all pairwise consistent."""

    def pick(i: int, chosen: list[Trail]) -> bool:
        if i == len(options):
            return True
        return any(
            pick(i + 1, [*chosen, t]) for t in options[i] if all(consistent(t, c) for c in chosen)
        )

    return pick(0, [])


def match_alternative(
    alternative: Alternative, by_path: Mapping[Path, list[tuple[Any, Trail]]]
) -> bool:
    """The reference rule: each field has a matching leaf (or may be absent), and the
    chosen leaves are consistent (rule 3)."""
    options: list[list[Trail]] = []
    for f in alternative:
        leaves = by_path.get(f.path, [])
        if not leaves:
            if f.absent_ok:
                continue
            return False
        trails = [trail for value, trail in leaves if f.test(value)]
        if not trails:
            return False
        options.append(trails)
    if all(not t for option in options for t in option):
        return True
    return choose(options)


def _by_path(event: Mapping[str, Any]) -> dict[Path, list[tuple[Any, Trail]]]:
    by_path: dict[Path, list[tuple[Any, Trail]]] = {}
    for path, value, trail in event_leaves(event):
        by_path.setdefault(path, []).append((value, trail))
    return by_path


class EventPattern:
    """An EventBridge-style pattern (``schedule=EventPattern({...})``).

    An invalid pattern does not raise here, usually inside ``DAG(...)``'s arguments:
    ``check`` raises, and the DAG calls it with its name, so the error names the DAG
    and the offending part. ``matches`` raises PatternError too.
    """

    __slots__ = ("alternatives", "pattern", "problem")

    def __init__(self, pattern: Mapping[str, Any]) -> None:
        self.pattern = pattern
        self.problem: str | None = None
        self.alternatives: tuple[Alternative, ...] = ()
        try:
            self.alternatives = compile_pattern(pattern)
        except PatternError as exc:
            self.problem = str(exc)

    def check(self, where: str = "event pattern") -> EventPattern:
        """This pattern; PatternError naming ``where`` if it is not valid."""
        if self.problem is not None:
            raise PatternError(f"{where}: {self.problem}")
        return self

    def matches(self, event: Mapping[str, Any]) -> bool:
        """Whether ``event`` (a JSON object) matches, like EventBridge's TestEventPattern."""
        self.check()
        if not isinstance(event, Mapping):
            raise PatternError(f"an event must be a JSON object, got {type(event).__name__}")
        by_path = _by_path(event)
        return any(match_alternative(alt, by_path) for alt in self.alternatives)

    def paths(self) -> Iterator[Path]:
        for alt in self.alternatives:
            for f in alt:
                yield f.path

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EventPattern) and self.pattern == other.pattern

    def __hash__(self) -> int:
        return hash(json.dumps(self.pattern, sort_keys=True, default=str))

    def __repr__(self) -> str:
        return f"EventPattern({json.dumps(self.pattern, sort_keys=True, default=str)})"

    __str__ = __repr__
