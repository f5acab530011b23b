"""EventBridge-style event patterns: the language, checked and compiled into conditions.

A pattern is a JSON object whose leaves are arrays of match values; an event (a JSON
object, the EventBridge envelope) matches when every field the pattern names matches.

Rules (EventBridge's content filtering, as its open-source matcher event-ruler reads it):
1. A leaf array is an OR of match values: a string, a number, ``true``, ``false`` or
   ``null`` (exact, typed: ``"5"`` is not ``5``; numbers compare as numbers, so ``5``,
   ``5.0`` and ``5e0`` are one value), or an object with one operator: ``prefix``,
   ``suffix`` (each also ``{"equals-ignore-case": s}``), ``equals-ignore-case``,
   ``wildcard`` (``*`` any run of characters, ``\\*`` and ``\\\\`` escaped; ``**`` is
   an error), ``anything-but`` (a string, a number, a list of all strings or all
   numbers, or ``{"prefix"|"suffix"|"wildcard"|"equals-ignore-case": s or [s...]}``),
   ``numeric`` (``["=", n]``, one bound, or a lower bound then an upper one), ``exists``
   (``true``/``false``), ``cidr`` (IPv4 or IPv6, one ``/``).
2. String operators match strings only; ``numeric`` numbers only; ``anything-but``
   matches any value present that it does not exclude (a number is not excluded by a
   string list, nor a string by a number list).
3. An event is read as its leaves: each scalar with the path of keys to it. An array
   in the event gives one leaf per element, so a field matches if any element does;
   leaves under different elements of one array never combine into one match.
4. ``exists: false`` matches when the path has no leaf (absent, an empty array, or an
   object); ``exists: true`` when it has one, ``null`` included.
5. ``$or`` (an array of at least two objects, at any level) expands the pattern into
   alternatives, at most ``MAX_ALTERNATIVES`` of them; operator names cannot be field
   names inside it.
6. Rejected, naming the offending part: a pattern that is not an object, an empty
   object or array, a leaf that is not an array, an unknown operator, an operand of the
   wrong type, a malformed numeric range (its lower bound must be below its upper),
   a number that is not finite, a malformed CIDR or wildcard, over
   ``MAX_PATTERN_CHARS`` characters of JSON.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "MAX_ALTERNATIVES",
    "MAX_PATTERN_CHARS",
    "Alternative",
    "Condition",
    "Field",
    "Leaf",
    "Path",
    "PatternError",
    "Trail",
    "compile_pattern",
    "is_number",
    "value_key",
]

MAX_PATTERN_CHARS = 2048
MAX_ALTERNATIVES = 1024
_OPERATORS = frozenset(
    {
        "prefix",
        "suffix",
        "equals-ignore-case",
        "wildcard",
        "anything-but",
        "numeric",
        "exists",
        "cidr",
    }
)
_RESERVED_IN_OR = _OPERATORS | {"=", "<", "<=", ">", ">=", "exactly"}
_LOWER = (">", ">=")
_UPPER = ("<", "<=")

Path = tuple[str, ...]
Trail = tuple[tuple[int, int], ...]  # (array, element index) of each array a leaf is in
Leaf = tuple[Path, Any, Trail]


class PatternError(ValueError):
    """A pattern that is not valid; the message names the offending part."""


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _shown(path: Path) -> str:
    return ".".join(path) if path else "(top level)"


# -- conditions: one match value each --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Condition:
    """One match value of a leaf array. ``kind`` names the operator (``exact`` for a
    plain value); ``value`` is its operand, normalised (lower-cased where case is
    ignored, a frozenset for lists, a tuple ``(lo, lo_open, hi, hi_open)`` for numeric,
    a network for cidr); ``option`` qualifies it (``ci`` for prefix/suffix ignoring
    case, the anything-but flavour)."""

    kind: str
    value: Any
    option: str = ""

    def test(self, v: object) -> bool:
        """Whether the leaf value ``v`` (present) matches."""
        kind, value = self.kind, self.value
        if kind == "exact":
            return value_key(v) == value_key(value)
        if kind == "exists":
            return bool(value)
        if kind == "numeric":
            return is_number(v) and _in_range(v, value)  # type: ignore[arg-type]
        if kind == "anything-but":
            return not _excluded(self.option, value, v)
        if not isinstance(v, str):
            return False
        text = v.lower() if self.option or kind == "equals-ignore-case" else v
        if kind == "prefix":
            return text.startswith(str(value))
        if kind == "suffix":
            return text.endswith(str(value))
        if kind == "equals-ignore-case":
            return bool(text == value)
        if kind == "wildcard":
            return _wildcard_regex(value).fullmatch(v) is not None
        assert kind == "cidr"
        return _in_network(v, value)


def _in_range(v: float, bounds: tuple[float | None, bool, float | None, bool]) -> bool:
    """Whether ``v`` lies in the bounds; a number beyond floats is in none (event-ruler
    cannot compare it either)."""
    try:
        v = float(v)
    except OverflowError:
        return False
    lo, lo_open, hi, hi_open = bounds
    if lo is not None and (v <= lo if lo_open else v < lo):
        return False
    return hi is None or (v < hi if hi_open else v <= hi)


def _excluded(flavour: str, values: frozenset[Any], v: object) -> bool:
    if flavour == "numbers":
        return is_number(v) and v in values
    if not isinstance(v, str):
        return False
    if flavour == "strings":
        return v in values
    if flavour == "equals-ignore-case":
        return v.lower() in values
    if flavour == "prefix":
        return any(v.startswith(p) for p in values)
    if flavour == "suffix":
        return any(v.endswith(s) for s in values)
    assert flavour == "wildcard"
    return any(_wildcard_regex(w).fullmatch(v) for w in values)


_REGEXES: dict[str, re.Pattern[str]] = {}


def _wildcard_regex(text: str) -> re.Pattern[str]:
    """``text`` (checked by ``_check_wildcard``) as an anchored regular expression."""
    found = _REGEXES.get(text)
    if found is None:
        parts: list[str] = []
        i = 0
        while i < len(text):
            char = text[i]
            if char == "*":
                parts.append(".*")
            elif char == "\\":
                i += 1
                parts.append(re.escape(text[i]))
            else:
                parts.append(re.escape(char))
            i += 1
        found = _REGEXES[text] = re.compile("".join(parts), re.DOTALL)
    return found


def _in_network(v: str, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    try:
        address = ipaddress.ip_address(v)
    except ValueError:
        return False
    return address.version == network.version and address in network


# -- compiling -------------------------------------------------------------------------------


def value_key(value: object) -> tuple[str, object]:
    """A leaf value as a dictionary key: typed, so ``True``, ``1`` and ``"1"`` differ and
    ``1`` and ``1.0`` do not."""
    if value is None or isinstance(value, bool):
        return ("c", value)
    if is_number(value):
        try:
            return ("n", float(value))  # type: ignore[arg-type]
        except OverflowError:  # an integer beyond floats: equal only to itself
            return ("n", value)
    if isinstance(value, str):
        return ("s", value)
    return ("?", id(value))  # not a scalar: equal to no match value


@dataclass(frozen=True, slots=True)
class Field:
    """One path of an alternative and its match values (an OR). ``exact`` holds the keys
    of its values when all of them are exact (a set lookup then tests a leaf)."""

    path: Path
    conditions: tuple[Condition, ...]
    exact: frozenset[tuple[str, object]] | None = field(default=None, init=False, compare=False)

    def __post_init__(self) -> None:
        if all(c.kind == "exact" for c in self.conditions):
            keys = frozenset(value_key(c.value) for c in self.conditions)
            object.__setattr__(self, "exact", keys)

    @property
    def absent_ok(self) -> bool:
        """Whether the path having no leaf satisfies this field (``exists: false``)."""
        return any(c.kind == "exists" and not c.value for c in self.conditions)

    def test(self, v: object) -> bool:
        if self.exact is not None:
            return value_key(v) in self.exact
        return any(c.test(v) for c in self.conditions)


Alternative = tuple[Field, ...]  # every field must match


def compile_pattern(pattern: object) -> tuple[Alternative, ...]:
    """The alternatives of ``pattern`` (rule 5); PatternError naming what is wrong."""
    if not isinstance(pattern, Mapping):
        raise PatternError(f"a pattern must be a JSON object, got {type(pattern).__name__}")
    try:
        size = len(json.dumps(pattern, separators=(",", ":"), allow_nan=True))
    except (TypeError, ValueError) as exc:
        raise PatternError(f"a pattern must be JSON: {exc}") from None
    if size > MAX_PATTERN_CHARS:
        raise PatternError(f"the pattern is {size} characters of JSON; at most {MAX_PATTERN_CHARS}")
    alternatives = _object(pattern, (), [{}], in_or=False)
    return tuple(tuple(Field(path, conds) for path, conds in alt.items()) for alt in alternatives)


_Alt = dict[Path, tuple[Condition, ...]]


def _object(node: Mapping[Any, Any], path: Path, alts: list[_Alt], *, in_or: bool) -> list[_Alt]:
    if not node:
        raise PatternError(f"{_shown(path)}: empty objects are not allowed")
    for key, value in node.items():
        if not isinstance(key, str):
            raise PatternError(f"{_shown(path)}: field names must be strings, got {key!r}")
        if key == "$or":
            alts = _or(value, path, alts)
            continue
        if in_or and key in _RESERVED_IN_OR:
            raise PatternError(f"{_shown((*path, key))}: {key!r} cannot be a field name inside $or")
        here = (*path, key)
        if isinstance(value, Mapping):
            alts = _object(value, here, alts, in_or=in_or)
        elif isinstance(value, list):
            conditions = tuple(_match_value(item, here) for item in value)
            if not conditions:
                raise PatternError(f"{_shown(here)}: empty arrays are not allowed")
            alts = [{**alt, here: conditions} for alt in alts]
        else:
            raise PatternError(
                f"{_shown(here)}: must be an object or an array of match values, "
                f"got {json.dumps(value)[:60]}"
            )
    return alts


def _or(value: object, path: Path, alts: list[_Alt]) -> list[_Alt]:
    where = f"{_shown(path)}: $or"
    if not isinstance(value, list) or len(value) < 2:
        raise PatternError(f"{where}: must be an array of at least 2 objects")
    expanded: list[_Alt] = []
    for i, branch in enumerate(value):
        if not isinstance(branch, Mapping):
            raise PatternError(f"{where}[{i}]: must be an object")
        expanded += _object(branch, path, [dict(a) for a in alts], in_or=True)
        if len(expanded) > MAX_ALTERNATIVES:
            raise PatternError(f"{where}: expands to over {MAX_ALTERNATIVES} alternatives")
    return expanded


def _number(value: object, where: str) -> float:
    if not is_number(value):
        raise PatternError(f"{where}: must be a number, got {json.dumps(value)[:60]}")
    try:
        number = float(value)  # type: ignore[arg-type]
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise PatternError(f"{where}: numbers must be finite, got {value!r}")
    return number


def _string(value: object, where: str, *, empty: bool = True) -> str:
    if not isinstance(value, str):
        raise PatternError(f"{where}: must be a string, got {json.dumps(value)[:60]}")
    if not empty and not value:
        raise PatternError(f"{where}: must not be empty")
    return value


def _match_value(item: object, path: Path) -> Condition:
    where = _shown(path)
    if item is None or isinstance(item, bool | str):
        return Condition("exact", item)
    if is_number(item):
        return Condition("exact", _number(item, where))
    if not isinstance(item, Mapping):
        raise PatternError(
            f"{where}: match values must be strings, numbers, true, false, null or objects"
        )
    if len(item) != 1:
        raise PatternError(f"{where}: a match object has exactly one operator, got {sorted(item)}")
    ((op, operand),) = item.items()
    where = f"{where}: {op}"
    if op in ("prefix", "suffix"):
        if isinstance(operand, Mapping):
            text = _ignore_case(operand, where)
            return Condition(op, text.lower(), "ci")
        return Condition(op, _string(operand, where))
    if op == "equals-ignore-case":
        return Condition(op, _string(operand, where).lower())
    if op == "wildcard":
        return Condition(op, _check_wildcard(_string(operand, where), where))
    if op == "anything-but":
        return _anything_but(operand, where)
    if op == "numeric":
        return Condition(op, _numeric(operand, where))
    if op == "exists":
        if not isinstance(operand, bool):
            raise PatternError(f"{where}: must be true or false")
        return Condition(op, operand)
    if op == "cidr":
        return Condition(op, _cidr(_string(operand, where), where))
    raise PatternError(f"{_shown(path)}: unknown operator {op!r}")


def _ignore_case(operand: Mapping[Any, Any], where: str) -> str:
    if list(operand) != ["equals-ignore-case"]:
        raise PatternError(
            f"{where}: the only operator inside is equals-ignore-case, got {sorted(operand)}"
        )
    return _string(operand["equals-ignore-case"], f"{where}: equals-ignore-case")


def _check_wildcard(text: str, where: str) -> str:
    i = 0
    while i < len(text):
        if text[i] == "*" and text[i + 1 : i + 2] == "*":
            raise PatternError(f"{where}: consecutive wildcard characters at position {i}")
        if text[i] == "\\":
            if text[i + 1 : i + 2] not in ("*", "\\"):
                raise PatternError(f"{where}: invalid escape at position {i} (only \\* and \\\\)")
            i += 1
        i += 1
    return text


def _anything_but(operand: object, where: str) -> Condition:
    if isinstance(operand, Mapping):
        if len(operand) != 1:
            raise PatternError(f"{where}: one operator inside, got {sorted(operand)}")
        ((flavour, inner),) = operand.items()
        if flavour not in ("prefix", "suffix", "wildcard", "equals-ignore-case"):
            raise PatternError(f"{where}: unsupported operator {flavour!r} inside")
        inside = f"{where}: {flavour}"
        items = inner if isinstance(inner, list) else [inner]
        if not items:
            raise PatternError(f"{inside}: empty arrays are not allowed")
        texts = [_string(t, inside, empty=flavour not in ("prefix", "suffix")) for t in items]
        if flavour == "wildcard":
            texts = [_check_wildcard(t, inside) for t in texts]
        if flavour == "equals-ignore-case":
            texts = [t.lower() for t in texts]
        return Condition("anything-but", frozenset(texts), flavour)
    items = operand if isinstance(operand, list) else [operand]
    if not items:
        raise PatternError(f"{where}: empty arrays are not allowed")
    if all(isinstance(i, str) for i in items):
        return Condition("anything-but", frozenset(items), "strings")
    if all(is_number(i) for i in items):
        return Condition("anything-but", frozenset(_number(i, where) for i in items), "numbers")
    raise PatternError(
        f"{where}: must be a string, a number, or a list of all strings or all numbers"
    )


def _numeric(operand: object, where: str) -> tuple[float | None, bool, float | None, bool]:
    if not isinstance(operand, list) or len(operand) not in (2, 4):
        raise PatternError(f"{where}: must be [op, n] or [>|>=, n, <|<=, m]")
    op = operand[0]
    value = _number(operand[1], f"{where}: {op}")
    if len(operand) == 2:
        if op == "=":
            return (value, False, value, False)
        if op in _LOWER:
            return (value, op == ">", None, False)
        if op in _UPPER:
            return (None, False, value, op == "<")
        raise PatternError(f"{where}: unknown comparison {op!r}")
    top_op = operand[2]
    if op not in _LOWER or top_op not in _UPPER:
        raise PatternError(f"{where}: a range is a lower bound (> or >=) then an upper (< or <=)")
    top = _number(operand[3], f"{where}: {top_op}")
    if not value < top:
        raise PatternError(
            f"{where}: the lower bound {operand[1]!r} must be below the upper {operand[3]!r}"
        )
    return (value, op == ">", top, top_op == "<")


def _cidr(text: str, where: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if text.count("/") != 1:
        raise PatternError(f"{where}: malformed CIDR {text!r}: one '/' required")
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError as exc:
        raise PatternError(f"{where}: malformed CIDR {text!r}: {exc}") from None
