"""The value index of one path: which slots (match values of patterns) a leaf value
satisfies, found by dictionary lookups rather than by trying each match value.

Rules:
1. Dictionaries for exact values, case-folded values, prefixes and suffixes (by each
   length in use), sorted bounds for numeric ranges (the slots of each interval
   between two bounds computed once, when first met), an excluded-values dictionary
   for ``anything-but`` lists, wildcards by their literal start (only those whose
   start the value has are tried), CIDRs by each prefix length in use; the rarer
   anything-but forms (prefix, suffix, wildcard, ignoring case) are tried one by one.
2. ``exists: false`` adds nothing here: absence is the alternative's business.
"""

from __future__ import annotations

import bisect
import ipaddress
from typing import Any

from triggers._pattern import Condition, is_number

__all__ = ["ValueIndex"]

_Sets = dict[Any, set[int]]


def _put(table: _Sets, key: Any, slot: int) -> None:
    table.setdefault(key, set()).add(slot)


def _drop(table: _Sets, key: Any, slot: int) -> None:
    slots = table.get(key)
    if slots is not None:
        slots.discard(slot)
        if not slots:
            del table[key]


def _literal_start(wildcard: str) -> str:
    """The characters a value must start with to match ``wildcard`` (escapes undone)."""
    start: list[str] = []
    i = 0
    while i < len(wildcard) and wildcard[i] != "*":
        if wildcard[i] == "\\":
            i += 1
        start.append(wildcard[i])
        i += 1
    return "".join(start)


def _lengths(table: _Sets) -> tuple[int, ...]:
    return tuple(sorted({len(key) for key in table}))


class ValueIndex:
    """The slots of one path, by what a leaf value must be to satisfy them (rule 1)."""

    def __init__(self) -> None:
        self.exact_str: _Sets = {}
        self.exact_num: _Sets = {}
        self.exact_other: _Sets = {}  # True, False, None, keyed by repr
        self.lower: _Sets = {}
        self.prefix: _Sets = {}
        self.prefix_ci: _Sets = {}
        self.suffix: _Sets = {}
        self.suffix_ci: _Sets = {}
        self.lengths: dict[str, tuple[int, ...]] = {}
        self.present: set[int] = set()  # exists: true
        self.but_str: set[int] = set()  # anything-but a list of strings...
        self.but_str_out: _Sets = {}  # ...and the value each excludes
        self.but_num: set[int] = set()
        self.but_num_out: _Sets = {}
        self.ranges: dict[int, tuple[float | None, bool, float | None, bool]] = {}
        self.bounds: list[float] = []
        self.segments: dict[int, tuple[int, ...]] = {}
        self.wild: dict[str, dict[int, Condition]] = {}  # by the text before the first *
        self.wild_lengths: tuple[int, ...] = ()
        self.nets: _Sets = {}  # (version, prefix length, network) -> slots
        self.net_lengths: tuple[tuple[int, int], ...] = ()
        self.tested: dict[int, Condition] = {}  # other anything-buts
        self.size = 0

    def change(self, cond: Condition, slot: int, add: bool) -> None:
        self.size += 1 if add else -1
        edit = _put if add else _drop
        kind, value = cond.kind, cond.value
        if kind == "exact":
            if isinstance(value, str):
                edit(self.exact_str, value, slot)
            elif is_number(value):
                edit(self.exact_num, value, slot)
            else:
                edit(self.exact_other, repr(value), slot)
        elif kind == "equals-ignore-case":
            edit(self.lower, value, slot)
        elif kind in ("prefix", "suffix"):
            name = kind + ("_ci" if cond.option else "")
            table = getattr(self, name)
            edit(table, value, slot)
            self.lengths[name] = _lengths(table)
        elif kind == "exists" and value:
            (self.present.add if add else self.present.discard)(slot)
        elif kind == "exists":
            pass  # absence is the alternative's business (rule 3)
        elif kind == "anything-but" and cond.option in ("strings", "numbers"):
            every, out = (
                (self.but_str, self.but_str_out)
                if cond.option == "strings"
                else (self.but_num, self.but_num_out)
            )
            (every.add if add else every.discard)(slot)
            for excluded in value:
                edit(out, excluded, slot)
        elif kind == "numeric":
            if add:
                self.ranges[slot] = value
            else:
                self.ranges.pop(slot, None)
            self.bounds = sorted(
                {b for lo, _, hi, _ in self.ranges.values() for b in (lo, hi) if b is not None}
            )
            self.segments = {}
        elif kind == "wildcard":
            start = _literal_start(value)
            group = self.wild.setdefault(start, {})
            if add:
                group[slot] = cond
            else:
                group.pop(slot, None)
                if not group:
                    del self.wild[start]
            self.wild_lengths = tuple(sorted({len(k) for k in self.wild}))
        elif kind == "cidr":
            edit(self.nets, (value.version, value.prefixlen, int(value.network_address)), slot)
            self.net_lengths = tuple(sorted({(v, n) for v, n, _ in self.nets}))
        elif add:
            self.tested[slot] = cond
        else:
            self.tested.pop(slot, None)

    def collect(self, v: Any, out: list[int]) -> None:
        """Append the slots the leaf value ``v`` satisfies."""
        out.extend(self.present)
        if isinstance(v, str):
            self._string(v, out)
        elif is_number(v):
            self._number(v, out)
        else:
            found = self.exact_other.get(repr(v))
            if found:
                out.extend(found)
            out.extend(self.but_str)
            out.extend(self.but_num)
        for slot, cond in self.tested.items():
            if cond.test(v):
                out.append(slot)

    def _string(self, v: str, out: list[int]) -> None:
        found = self.exact_str.get(v)
        if found:
            out.extend(found)
        if self.but_str:
            out.extend(self.but_str - self.but_str_out.get(v, set()))
        out.extend(self.but_num)
        lengths = self.lengths
        for name, cut in (("prefix", False), ("suffix", True)):
            for n in lengths.get(name, ()):
                if n <= len(v):
                    found = getattr(self, name).get(v[len(v) - n :] if cut else v[:n])
                    if found:
                        out.extend(found)
        for n in self.wild_lengths:
            if n <= len(v):
                for slot, cond in self.wild.get(v[:n], {}).items():
                    if cond.test(v):
                        out.append(slot)
        if self.nets:
            self._networks(v, out)
        if self.lower or self.prefix_ci or self.suffix_ci:
            low = v.lower()
            found = self.lower.get(low)
            if found:
                out.extend(found)
            for n in lengths.get("prefix_ci", ()):
                if n <= len(low) and (found := self.prefix_ci.get(low[:n])):
                    out.extend(found)
            for n in lengths.get("suffix_ci", ()):
                if n <= len(low) and (found := self.suffix_ci.get(low[len(low) - n :])):
                    out.extend(found)

    def _networks(self, v: str, out: list[int]) -> None:
        try:
            address = ipaddress.ip_address(v)
        except ValueError:
            return
        bits = 32 if address.version == 4 else 128
        number = int(address)
        for version, length in self.net_lengths:
            if version == address.version:
                network = number >> (bits - length) << (bits - length)
                found = self.nets.get((version, length, network))
                if found:
                    out.extend(found)

    def _number(self, v: float, out: list[int]) -> None:
        try:
            number = float(v)
        except OverflowError:
            number = None
        found = self.exact_num.get(v)
        if found:
            out.extend(found)
        if self.but_num:
            out.extend(self.but_num - self.but_num_out.get(v, set()))
        out.extend(self.but_str)
        if self.ranges and number is not None:
            i = bisect.bisect_left(self.bounds, number)
            at = 2 * i + 1 if i < len(self.bounds) and self.bounds[i] == number else 2 * i
            segment = self.segments.get(at)
            if segment is None:  # every value of one segment satisfies the same ranges
                segment = self.segments[at] = tuple(
                    slot
                    for slot, bounds in self.ranges.items()
                    if Condition("numeric", bounds).test(number)
                )
            out.extend(segment)
