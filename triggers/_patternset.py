"""``PatternSet``: many named patterns, matched against an event at once, by index.

The cost of ``match`` grows with the event's fields that some pattern names and with
the candidates its values select, not with the number of patterns (event-ruler's
``Machine`` is the model; this is a Python shape of the same idea).

Rules:
1. The event is walked only along a trie of the paths patterns name, collecting each
   path's leaves, so a large ``detail`` costs nothing beyond the keys patterns mention.
2. An alternative (``_pattern.compile_pattern``) with fields whose match values are
   all exact (``source``, ``detail-type``, an id...) is *anchored*: up to two such fields
   (``source`` and ``detail-type`` first) form its signature, and it is filed under each
   combination of their values. An event selects, per signature in use, the
   alternatives filed under its own values there; only those are checked in full.
3. The other alternatives are found through a ``ValueIndex`` per path: each match value
   is a *slot*, a leaf value gives the slots it satisfies, and an alternative is a
   candidate when each field has a hit or may be absent (``exists: false``) with no
   leaf on its path. Alternatives whose fields may all be absent are candidates always.
4. Every candidate is checked with the reference rule (``match_alternative``: array
   elements are not combined), so the answer equals matching each pattern alone; a
   property test holds the two together.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from triggers._eventpattern import EventPattern, match_alternative
from triggers._pattern import Alternative, Field, Path, PatternError, Trail, value_key
from triggers._valueindex import ValueIndex

__all__ = ["PatternSet"]

_MAX_COMBINATIONS = 64  # anchor keys an alternative or an event may have
_PREFERRED = (("source",), ("detail-type",))
Signature = tuple[Path, ...]
Leaves = dict[Path, list[tuple[Any, Trail]]]


def _anchor(fields: Alternative) -> Signature:
    exact = [f for f in fields if f.exact is not None]
    exact.sort(key=lambda f: (_PREFERRED.index(f.path) if f.path in _PREFERRED else 2, f.path))
    chosen: list[Field] = []
    combinations = 1
    for f in exact[:2]:
        if combinations * len(f.conditions) > _MAX_COMBINATIONS:
            break
        chosen.append(f)
        combinations *= len(f.conditions)
    return tuple(f.path for f in chosen)


@dataclass(slots=True)
class _Node:
    path: Path
    children: dict[str, _Node] = field(default_factory=dict)
    index: ValueIndex | None = None
    users: int = 0  # fields on this path or below
    fields: int = 0  # fields on this path


@dataclass(frozen=True, slots=True)
class _Alt:
    name: str
    fields: Alternative
    required: int  # fields that need a hit (not satisfied by absence)
    slots: tuple[tuple[int, ...], ...]  # each field's, one per match value (rule 3)
    signature: Signature = ()
    keys: tuple[tuple[Any, ...], ...] = ()  # where it is filed (rule 2)


class PatternSet:
    """Named patterns matched by index: ``match(event)`` answers the names that match."""

    def __init__(self, patterns: Mapping[str, object] | None = None) -> None:
        self._root = _Node(())
        self._alts: dict[int, _Alt] = {}
        self._slots: dict[int, tuple[int, int]] = {}  # slot -> (alternative, field)
        self._owned: dict[str, list[int]] = {}  # name -> its alternatives
        self._anchored: dict[Signature, dict[tuple[Any, ...], set[int]]] = {}
        self._absent_only: set[int] = set()  # alternatives that may match with no hit
        self._ids = itertools.count()
        for name, pattern in (patterns or {}).items():
            self.add(name, pattern)

    def __len__(self) -> int:
        return len(self._owned)

    def __contains__(self, name: object) -> bool:
        return name in self._owned

    def names(self) -> list[str]:
        return sorted(self._owned)

    def add(self, name: str, pattern: object) -> None:
        """Add (or replace) ``name``'s pattern (a dict or an ``EventPattern``); PatternError
        naming ``name`` if it is not valid (nothing changes then)."""
        compiled = pattern if isinstance(pattern, EventPattern) else EventPattern(pattern)  # type: ignore[arg-type]
        compiled.check(f"pattern {name!r}")
        self.remove(name)
        owned = self._owned[name] = []
        for fields in compiled.alternatives:
            alt_id = next(self._ids)
            owned.append(alt_id)
            for f in fields:
                self._path(f.path, +1)
            signature = _anchor(fields)
            if signature:
                by_path = {f.path: f for f in fields}
                values = [[value_key(c.value) for c in by_path[p].conditions] for p in signature]
                keys = tuple(dict.fromkeys(itertools.product(*values)))
                self._alts[alt_id] = _Alt(name, fields, 0, (), signature, keys)
                filed = self._anchored.setdefault(signature, {})
                for key in keys:
                    filed.setdefault(key, set()).add(alt_id)
                continue
            required = sum(1 for f in fields if not f.absent_ok)
            slots = tuple(tuple(next(self._ids) for _ in f.conditions) for f in fields)
            self._alts[alt_id] = _Alt(name, fields, required, slots)
            if required == 0:
                self._absent_only.add(alt_id)
            for i, (f, field_slots) in enumerate(zip(fields, slots, strict=True)):
                index = self._index(f.path)
                for cond, slot in zip(f.conditions, field_slots, strict=True):
                    self._slots[slot] = (alt_id, i)
                    index.change(cond, slot, add=True)

    def remove(self, name: str) -> None:
        """Forget ``name``'s pattern (nothing if it has none)."""
        for alt_id in self._owned.pop(name, ()):
            alt = self._alts.pop(alt_id)
            self._absent_only.discard(alt_id)
            filed = self._anchored.get(alt.signature, {})
            for key in alt.keys:
                filed[key].discard(alt_id)
                if not filed[key]:
                    del filed[key]
            if alt.signature and not filed:
                del self._anchored[alt.signature]
            for f, field_slots in zip(alt.fields, alt.slots, strict=False):  # none if anchored
                index = self._index(f.path)
                for cond, slot in zip(f.conditions, field_slots, strict=True):
                    del self._slots[slot]
                    index.change(cond, slot, add=False)
            for f in alt.fields:
                self._path(f.path, -1)
                self._prune(f.path)

    def _path(self, path: Path, users: int) -> _Node:
        node = self._root
        for i, key in enumerate(path):
            node.users += users
            node = node.children.setdefault(key, _Node(path[: i + 1]))
        node.users += users
        node.fields += users
        return node

    def _index(self, path: Path) -> ValueIndex:
        node = self._path(path, 0)
        if node.index is None:
            node.index = ValueIndex()
        return node.index

    def _prune(self, path: Path) -> None:
        node = self._root
        for key in path:
            child = node.children[key]
            if child.users == 0:
                del node.children[key]
                return
            node = child
        if node.index is not None and node.index.size == 0:
            node.index = None

    def may_match(self, path: Path, value: object) -> bool:
        """Whether some pattern may match an event whose ``path`` holds ``value`` (it names
        no condition on that path, or one that ``value`` satisfies)."""
        for alt in self._alts.values():
            fields = [f for f in alt.fields if f.path == path]
            if not fields or all(f.test(value) for f in fields):
                return True
        return False

    def match(self, event: Mapping[str, Any]) -> set[str]:
        """The names whose pattern ``event`` (a JSON object) matches."""
        if not isinstance(event, Mapping):
            raise PatternError(f"an event must be a JSON object, got {type(event).__name__}")
        leaves: Leaves = {}
        hits: dict[int, set[int]] = {}
        self._walk(event, self._root, (), leaves, hits, itertools.count())
        candidates = set(self._absent_only)
        for alt_id, found in hits.items():
            if len(found) >= self._alts[alt_id].required:
                candidates.add(alt_id)
        for signature, filed in self._anchored.items():
            candidates.update(self._selected(signature, filed, leaves))
        matched: set[str] = set()
        for alt_id in candidates:
            alt = self._alts[alt_id]
            if alt.name not in matched and match_alternative(alt.fields, leaves):
                matched.add(alt.name)
        return matched

    def _selected(
        self, signature: Signature, filed: dict[tuple[Any, ...], set[int]], leaves: Leaves
    ) -> set[int]:
        """The alternatives filed under the event's values at ``signature`` (rule 2)."""
        values: list[set[tuple[str, object]]] = []
        combinations = 1
        for path in signature:
            found = leaves.get(path)
            if not found:
                return set()
            values.append({value_key(v) for v, _ in found})
            combinations *= len(values[-1])
        if combinations > _MAX_COMBINATIONS:  # a huge event array: every one of them
            return set().union(*filed.values())
        selected: set[int] = set()
        for key in itertools.product(*values):
            selected.update(filed.get(key, ()))
        return selected

    def _walk(
        self,
        value: Any,
        node: _Node,
        trail: Trail,
        leaves: Leaves,
        hits: dict[int, set[int]],
        arrays: itertools.count[int],
    ) -> None:
        if isinstance(value, dict):
            children = node.children
            if len(children) <= len(value):
                for key, child in children.items():
                    if key in value:
                        self._walk(value[key], child, trail, leaves, hits, arrays)
            else:
                for key, item in value.items():
                    under = children.get(key)
                    if under is not None:
                        self._walk(item, under, trail, leaves, hits, arrays)
        elif isinstance(value, list):
            array = next(arrays)
            for i, item in enumerate(value):
                self._walk(item, node, (*trail, (array, i)), leaves, hits, arrays)
        elif node.fields:
            found = leaves.get(node.path)
            if found is None:
                leaves[node.path] = [(value, trail)]
            else:
                found.append((value, trail))
            if node.index is not None:
                slots: list[int] = []
                node.index.collect(value, slots)
                for slot in slots:
                    alt_id, i = self._slots[slot]
                    hit = hits.get(alt_id)
                    if hit is None:
                        hits[alt_id] = {i}
                    else:
                        hit.add(i)
