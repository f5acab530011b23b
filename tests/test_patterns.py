"""Event patterns, pure: the language (EventBridge's content filtering), its errors, and
the indexed ``PatternSet`` held equal to matching each pattern alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator import DAG
from orchestrator.dagfiles._loader import load_dags
from triggers import EventPattern, PatternError, PatternSet

EC2 = {
    "version": "0",
    "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
    "detail-type": "EC2 Instance State-change Notification",
    "source": "aws.ec2",
    "account": "111122223333",
    "time": "2017-12-22T18:43:48Z",
    "region": "us-west-1",
    "resources": ["arn:aws:ec2:us-west-1:123456789012:instance/i-1234567890abcdef0"],
    "detail": {
        "instance-id": "i-1234567890abcdef0",
        "state": "terminated",
        "c-count": 5,
        "d-count": 3,
        "x-limit": 301.8,
        "source-ip": "10.0.0.123",
        "source-ip6": "2001:db8::ff00:42:8329",
        "eventVersion": "",
        "responseElements": None,
        "flag": True,
        "location": "eu-west-1",
        "filename": "image.PNG",
        "tags": ["prod", "web"],
        "sizes": [1, 20, 300],
        "nested": {"deep": {"value": "here"}},
    },
}

# (pattern, does it match EC2) — cases from EventBridge's documentation of each operator
# and from event-ruler's rules; each operator on its own and in combination.
CASES: list[tuple[dict[str, Any], bool]] = [
    ({"source": ["aws.ec2"]}, True),
    ({"source": ["aws.s3"]}, False),
    ({"source": ["aws.s3", "aws.ec2"]}, True),  # arrays are OR
    ({"source": ["aws.ec2"], "detail-type": ["EC2 Instance State-change Notification"]}, True),
    ({"source": ["aws.ec2"], "detail": {"state": ["running"]}}, False),  # every field must match
    ({"detail": {"state": ["terminated"]}}, True),
    ({"detail": {"nested": {"deep": {"value": ["here"]}}}}, True),
    ({"detail": {"nested": {"deep": ["here"]}}}, False),  # an object is not a leaf
    ({"detail": {"eventVersion": [""]}}, True),  # empty strings
    ({"detail": {"eventVersion": [None]}}, False),  # "" is not null
    ({"detail": {"responseElements": [None]}}, True),
    ({"detail": {"responseElements": [""]}}, False),
    ({"detail": {"flag": [True]}}, True),
    ({"detail": {"flag": [False]}}, False),
    ({"detail": {"flag": [1]}}, False),  # booleans are not numbers
    ({"detail": {"c-count": [5]}}, True),
    ({"detail": {"c-count": [5.0]}}, True),  # numbers compare as numbers
    ({"detail": {"c-count": [5e0]}}, True),
    ({"detail": {"c-count": ["5"]}}, False),  # a string is not a number
    ({"detail": {"x-limit": [3.018e2]}}, True),
    ({"account": [111122223333]}, False),  # the account is a string in the envelope
    ({"detail": {"missing": ["x"]}}, False),
    # prefix, suffix, equals-ignore-case
    ({"detail": {"instance-id": [{"prefix": "i-1234"}]}}, True),
    ({"detail": {"instance-id": [{"prefix": "I-1234"}]}}, False),
    ({"detail": {"instance-id": [{"prefix": {"equals-ignore-case": "I-1234"}}]}}, True),
    ({"detail": {"instance-id": [{"prefix": ""}]}}, True),
    ({"detail": {"c-count": [{"prefix": "5"}]}}, False),  # string operators match strings only
    ({"detail": {"filename": [{"suffix": ".png"}]}}, False),
    ({"detail": {"filename": [{"suffix": {"equals-ignore-case": ".png"}}]}}, True),
    ({"detail": {"filename": [{"suffix": ".PNG"}]}}, True),
    ({"detail": {"state": [{"equals-ignore-case": "TERMINATED"}]}}, True),
    ({"detail": {"state": [{"equals-ignore-case": "terminate"}]}}, False),
    # wildcard
    ({"detail": {"location": [{"wildcard": "eu-*-1"}]}}, True),
    ({"detail": {"location": [{"wildcard": "eu-*"}]}}, True),
    ({"detail": {"location": [{"wildcard": "*-2"}]}}, False),
    ({"detail": {"location": [{"wildcard": "eu-west-1"}]}}, True),
    ({"detail": {"location": [{"wildcard": "eu\\*"}]}}, False),  # an escaped star is a star
    ({"detail": {"filename": [{"wildcard": "*.*"}]}}, True),
    # anything-but
    ({"detail": {"state": [{"anything-but": "initializing"}]}}, True),
    ({"detail": {"state": [{"anything-but": "terminated"}]}}, False),
    ({"detail": {"state": [{"anything-but": ["stopped", "terminated"]}]}}, False),
    ({"detail": {"c-count": [{"anything-but": 5}]}}, False),
    ({"detail": {"c-count": [{"anything-but": [100, 200]}]}}, True),
    ({"detail": {"c-count": [{"anything-but": "5"}]}}, True),  # a string list excludes no number
    ({"detail": {"state": [{"anything-but": {"prefix": "term"}}]}}, False),
    ({"detail": {"state": [{"anything-but": {"prefix": ["init", "run"]}}]}}, True),
    ({"detail": {"instance-id": [{"anything-but": {"suffix": "cdef0"}}]}}, False),
    ({"detail": {"instance-id": [{"anything-but": {"suffix": ["1234"]}}]}}, True),
    ({"detail": {"state": [{"anything-but": {"equals-ignore-case": "TERMINATED"}}]}}, False),
    ({"detail": {"state": [{"anything-but": {"equals-ignore-case": ["Stopped"]}}]}}, True),
    ({"detail": {"location": [{"anything-but": {"wildcard": "eu-*"}}]}}, False),
    ({"detail": {"location": [{"anything-but": {"wildcard": ["us-*", "ap-*"]}}]}}, True),
    ({"detail": {"missing": [{"anything-but": "x"}]}}, False),  # needs the field present
    # numeric
    ({"detail": {"c-count": [{"numeric": [">", 0, "<=", 5]}]}}, True),
    ({"detail": {"c-count": [{"numeric": [">", 0, "<", 5]}]}}, False),
    ({"detail": {"c-count": [{"numeric": [">=", 5]}]}}, True),
    ({"detail": {"c-count": [{"numeric": [">", 5]}]}}, False),
    ({"detail": {"c-count": [{"numeric": ["<", 5.000001]}]}}, True),
    ({"detail": {"c-count": [{"numeric": ["<=", 4.999]}]}}, False),
    ({"detail": {"x-limit": [{"numeric": ["=", 3.018e2]}]}}, True),
    ({"detail": {"x-limit": [{"numeric": ["=", 301.80]}]}}, True),
    ({"detail": {"state": [{"numeric": [">", 0]}]}}, False),  # numeric matches numbers only
    ({"detail": {"c-count": [{"numeric": [">=", -1e9, "<", 1e9]}]}}, True),
    # exists
    ({"detail": {"state": [{"exists": True}]}}, True),
    ({"detail": {"responseElements": [{"exists": True}]}}, True),  # null is present
    ({"detail": {"missing": [{"exists": True}]}}, False),
    ({"detail": {"missing": [{"exists": False}]}}, True),
    ({"detail": {"state": [{"exists": False}]}}, False),
    ({"detail": {"nested": [{"exists": True}]}}, False),  # only leaves exist
    ({"detail": {"nested": [{"exists": False}]}}, True),
    ({"resources": [{"exists": True}]}, True),
    # cidr
    ({"detail": {"source-ip": [{"cidr": "10.0.0.0/24"}]}}, True),
    ({"detail": {"source-ip": [{"cidr": "10.0.1.0/24"}]}}, False),
    ({"detail": {"source-ip": [{"cidr": "10.0.0.123/32"}]}}, True),
    ({"detail": {"source-ip6": [{"cidr": "2001:db8::/32"}]}}, True),
    ({"detail": {"source-ip6": [{"cidr": "2001:db9::/32"}]}}, False),
    ({"detail": {"source-ip": [{"cidr": "::/0"}]}}, False),  # an IPv4 address is not in IPv6
    ({"detail": {"state": [{"cidr": "10.0.0.0/8"}]}}, False),
    # event arrays: a field matches if any element does
    ({"detail": {"tags": ["web"]}}, True),
    ({"detail": {"tags": ["dev"]}}, False),
    ({"detail": {"tags": [{"prefix": "pr"}]}}, True),
    ({"detail": {"sizes": [{"numeric": [">", 100]}]}}, True),
    ({"detail": {"sizes": [{"numeric": [">", 1000]}]}}, False),
    ({"resources": [{"prefix": "arn:aws:ec2:us-west-1"}]}, True),
    # $or
    ({"$or": [{"source": ["aws.s3"]}, {"detail": {"state": ["terminated"]}}]}, True),
    ({"$or": [{"source": ["aws.s3"]}, {"detail": {"state": ["running"]}}]}, False),
    (
        {
            "detail": {
                "$or": [
                    {"c-count": [{"numeric": [">", 0, "<=", 5]}]},
                    {"d-count": [{"numeric": ["<", 10]}]},
                    {"x-limit": [{"numeric": ["=", 3.018e2]}]},
                ]
            }
        },
        True,
    ),
    (
        {
            "source": ["aws.ec2"],
            "$or": [
                {"detail": {"state": ["running"]}},
                {"$or": [{"region": ["us-east-1"]}, {"detail": {"c-count": [5]}}]},
            ],
        },
        True,
    ),
    (
        {"source": ["aws.s3"], "$or": [{"region": ["us-west-1"]}, {"account": ["111122223333"]}]},
        False,
    ),
    # mixed match values in one array (OR)
    ({"detail": {"state": ["running", {"prefix": "term"}]}}, True),
    ({"detail": {"state": [{"exists": False}, "terminated"]}}, True),
    ({"detail": {"missing": [{"exists": False}, "terminated"]}}, True),
]


@pytest.mark.parametrize(("pattern", "expected"), CASES)
def test_the_language_matches_as_eventbridge_does(pattern: dict[str, Any], expected: bool) -> None:
    """Each case of EventBridge's documentation and event-ruler's rules gives their answer,
    alone and through the index."""
    assert EventPattern(pattern).matches(EC2) is expected
    assert PatternSet({"p": pattern}).match(EC2) == ({"p"} if expected else set())


ARRAY_EVENT = {
    "detail": {
        "items": [
            {"name": "a", "size": 1, "tags": ["x"]},
            {"name": "b", "size": 2, "tags": ["y", "z"]},
        ]
    }
}


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ({"detail": {"items": {"name": ["a"], "size": [1]}}}, True),
        ({"detail": {"items": {"name": ["b"], "size": [2]}}}, True),
        ({"detail": {"items": {"name": ["a"], "size": [2]}}}, False),
        ({"detail": {"items": {"name": ["b"], "tags": ["z"]}}}, True),
        ({"detail": {"items": {"name": ["a"], "tags": ["z"]}}}, False),
        ({"detail": {"items": {"name": ["a", "b"], "size": [2]}}}, True),
        ({"detail": {"items": {"name": ["a"], "size": [{"numeric": [">", 1]}]}}}, False),
        ({"detail": {"items": {"name": ["a"], "missing": [{"exists": False}]}}}, True),
    ],
)
def test_fields_of_different_elements_of_one_array_never_combine(
    pattern: dict[str, Any], expected: bool
) -> None:
    """Leaves under different elements of one event array do not make one match together."""
    assert EventPattern(pattern).matches(ARRAY_EVENT) is expected
    assert bool(PatternSet({"p": pattern}).match(ARRAY_EVENT)) is expected


@pytest.mark.parametrize(
    ("pattern", "part"),
    [
        ([], "must be a JSON object"),
        ({}, "empty objects are not allowed"),
        ({"source": "aws.ec2"}, "source: must be an object or an array"),
        ({"source": []}, "source: empty arrays are not allowed"),
        ({"detail": {}}, "detail: empty objects"),
        ({"detail": {"x": [[1]]}}, "detail.x: match values must be"),
        ({"detail": {"x": [{"regex": "a.*"}]}}, "detail.x: unknown operator 'regex'"),
        ({"detail": {"x": [{"prefix": "a", "suffix": "b"}]}}, "exactly one operator"),
        ({"detail": {"x": [{"prefix": 1}]}}, "detail.x: prefix: must be a string"),
        (
            {"detail": {"x": [{"prefix": {"wildcard": "a"}}]}},
            "only operator inside is equals-ignore-case",
        ),
        (
            {"detail": {"x": [{"equals-ignore-case": ["a"]}]}},
            "equals-ignore-case: must be a string",
        ),
        ({"detail": {"x": [{"wildcard": "a**b"}]}}, "consecutive wildcard characters"),
        ({"detail": {"x": [{"wildcard": "a\\b"}]}}, "invalid escape"),
        ({"detail": {"x": [{"anything-but": []}]}}, "anything-but: empty arrays"),
        ({"detail": {"x": [{"anything-but": ["a", 1]}]}}, "all strings or all numbers"),
        ({"detail": {"x": [{"anything-but": [None]}]}}, "all strings or all numbers"),
        ({"detail": {"x": [{"anything-but": {"exists": True}}]}}, "unsupported operator 'exists'"),
        ({"detail": {"x": [{"anything-but": {"prefix": ""}}]}}, "prefix: must not be empty"),
        ({"detail": {"x": [{"anything-but": {"suffix": [1]}}]}}, "suffix: must be a string"),
        ({"detail": {"x": [{"anything-but": {"wildcard": "**"}}]}}, "consecutive wildcard"),
        ({"detail": {"x": [{"numeric": [">", "a"]}]}}, "numeric: >: must be a number"),
        ({"detail": {"x": [{"numeric": ["!=", 1]}]}}, "unknown comparison '!='"),
        (
            {"detail": {"x": [{"numeric": ["<", 1, ">", 0]}]}},
            "a lower bound (> or >=) then an upper",
        ),
        ({"detail": {"x": [{"numeric": [">", 5, "<", 5]}]}}, "must be below the upper"),
        ({"detail": {"x": [{"numeric": [">", 0, "<"]}]}}, "numeric: must be"),
        ({"detail": {"x": [{"numeric": 5}]}}, "numeric: must be"),
        ({"detail": {"x": [{"numeric": [">", float("inf")]}]}}, "numbers must be finite"),
        ({"detail": {"x": [float("nan")]}}, "numbers must be finite"),
        ({"detail": {"x": [10**400]}}, "numbers must be finite"),
        ({"detail": {"x": [{"exists": "yes"}]}}, "exists: must be true or false"),
        ({"detail": {"x": [{"cidr": "10.0.0.0"}]}}, "one '/' required"),
        ({"detail": {"x": [{"cidr": "10.0.0.300/24"}]}}, "malformed CIDR"),
        ({"$or": [{"source": ["a"]}]}, "$or: must be an array of at least 2 objects"),
        ({"$or": [{"source": ["a"]}, "b"]}, "$or[1]: must be an object"),
        ({"$or": [{"prefix": ["a"]}, {"b": ["c"]}]}, "'prefix' cannot be a field name inside $or"),
        ({"source": ["x" * 2100]}, "at most 2048"),
    ],
)
def test_an_invalid_pattern_is_rejected_naming_the_part(pattern: Any, part: str) -> None:
    """Each kind of invalid pattern is refused, and the message names what is wrong."""
    with pytest.raises(PatternError) as caught:
        EventPattern(pattern).check("DAG 'd': schedule")
    assert part in str(caught.value)
    assert str(caught.value).startswith("DAG 'd': schedule: ")
    with pytest.raises(PatternError):
        PatternSet({"p": pattern})


def test_or_expansion_is_bounded() -> None:
    """Eleven $or of two branches (2,048 alternatives) is refused rather than expanded."""
    detail = {f"k{i}": {"$or": [{"a": ["x"]}, {"b": ["y"]}]} for i in range(11)}
    pattern = {"detail": detail}
    with pytest.raises(PatternError, match="over 1024 alternatives"):
        EventPattern(pattern).check()


def test_an_integer_beyond_floats_in_an_event_is_compared_not_a_crash() -> None:
    """An event integer too large for a float matches no finite pattern number."""
    event = {"source": "s", "detail": {"n": 10**400}}
    for pattern in ({"detail": {"n": [5]}}, {"detail": {"n": [{"numeric": [">", 5]}]}}):
        assert EventPattern({"source": ["s"], **pattern}).matches(event) is False
        assert PatternSet({"p": {"source": ["s"], **pattern}}).match(event) == set()


def test_matches_refuses_an_event_that_is_not_an_object() -> None:
    """An event must be a JSON object."""
    with pytest.raises(PatternError, match="an event must be a JSON object"):
        EventPattern({"source": ["a"]}).matches(["a"])  # type: ignore[arg-type]


def test_a_pattern_set_adds_replaces_and_removes_by_name() -> None:
    """``add`` replaces a name's pattern, ``remove`` forgets it, and the index is left empty."""
    patterns = PatternSet(
        {"a": {"source": ["aws.ec2"]}, "b": {"detail": {"state": ["terminated"]}}}
    )
    assert patterns.match(EC2) == {"a", "b"}
    patterns.add("a", {"source": ["aws.s3"]})
    assert patterns.match(EC2) == {"b"}
    patterns.remove("b")
    patterns.remove("never")
    assert patterns.match(EC2) == set()
    patterns.remove("a")
    assert len(patterns) == 0
    assert not patterns._root.children


def test_an_invalid_pattern_leaves_the_set_unchanged() -> None:
    """Adding an invalid pattern raises, naming it, and keeps the name's previous pattern."""
    patterns = PatternSet({"a": {"source": ["aws.ec2"]}})
    with pytest.raises(PatternError, match="pattern 'a': source: empty arrays"):
        patterns.add("a", {"source": []})
    assert patterns.match(EC2) == {"a"}


# -- properties: the index answers what each pattern alone answers -----------------------

_KEYS = st.sampled_from(["a", "b", "c"])
_STRINGS = st.sampled_from(["", "x", "xy", "Xy", "yx", "10.0.0.1", "x*y", "x\\y"])
_NUMBERS = st.sampled_from([-1, 0, 0.5, 1, 2, 2.0, 10])
_SCALARS = st.one_of(_STRINGS, _NUMBERS, st.sampled_from([None, True, False]))
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEYS, inner, max_size=3),
    max_leaves=8,
)
_EVENTS = st.dictionaries(_KEYS, _VALUES, max_size=3)

_TEXT = st.sampled_from(["", "x", "X", "y", "xy"])
_MATCH = st.one_of(
    _STRINGS,
    _NUMBERS,
    st.sampled_from([None, True, False]),
    _TEXT.map(lambda t: {"prefix": t}),
    _TEXT.map(lambda t: {"suffix": {"equals-ignore-case": t}}),
    _TEXT.map(lambda t: {"equals-ignore-case": t}),
    st.sampled_from(["x*", "*y", "*", "x*y", "x\\*y"]).map(lambda t: {"wildcard": t}),
    st.lists(_STRINGS, min_size=1, max_size=2).map(lambda v: {"anything-but": v}),
    st.lists(_NUMBERS, min_size=1, max_size=2).map(lambda v: {"anything-but": v}),
    st.sampled_from(["x", "X"]).map(lambda t: {"anything-but": {"prefix": t}}),
    st.sampled_from([[">", 0], ["<=", 1], [">=", 0, "<", 2], ["=", 2]]).map(
        lambda r: {"numeric": r}
    ),
    st.booleans().map(lambda b: {"exists": b}),
    st.just({"cidr": "10.0.0.0/8"}),
)
_LEAVES = st.lists(_MATCH, min_size=1, max_size=3)
_PATTERNS = st.recursive(
    st.dictionaries(_KEYS, _LEAVES, min_size=1, max_size=2),
    lambda inner: (
        st.dictionaries(_KEYS, inner | _LEAVES, min_size=1, max_size=2)
        | st.lists(inner, min_size=2, max_size=2).map(lambda alts: {"$or": alts})
    ),
    max_leaves=4,
)


@settings(max_examples=400)
@given(st.lists(_PATTERNS, min_size=1, max_size=6), st.lists(_EVENTS, min_size=1, max_size=4))
def test_the_index_answers_what_each_pattern_alone_answers(
    patterns: list[dict[str, Any]], events: list[dict[str, Any]]
) -> None:
    """For any patterns and events, ``PatternSet.match`` is the set of names whose
    ``EventPattern.matches`` holds, before and after some of them are removed."""
    named = {f"p{i}": p for i, p in enumerate(patterns)}
    valid = {}
    for name, pattern in named.items():
        compiled = EventPattern(pattern)
        if compiled.problem is None:
            valid[name] = compiled
    index = PatternSet(valid)
    for event in events:
        assert index.match(event) == {n for n, p in valid.items() if p.matches(event)}
    for name in list(valid)[::2]:  # and after removals
        index.remove(name)
        del valid[name]
    for event in events:
        assert index.match(event) == {n for n, p in valid.items() if p.matches(event)}


@given(_PATTERNS, _EVENTS)
def test_or_is_the_union_of_its_branches(pattern: dict[str, Any], event: dict[str, Any]) -> None:
    """``{"$or": [p, q]}`` matches exactly when p or q does."""
    other = {"a": ["x"]}
    both = EventPattern({"$or": [pattern, other]})
    if both.problem is not None:
        return
    assert both.matches(event) == (
        EventPattern(pattern).matches(event) or EventPattern(other).matches(event)
    )


@given(_EVENTS)
def test_anything_but_is_the_complement_of_exact_over_present_strings(
    event: dict[str, Any],
) -> None:
    """For a field holding one string, anything-but [v] matches iff [v] does not."""
    value = event.get("a")
    if not isinstance(value, str):
        return
    assert EventPattern({"a": [{"anything-but": ["x"]}]}).matches(event) != EventPattern(
        {"a": ["x"]}
    ).matches(event)


def test_a_dag_file_with_an_invalid_pattern_fails_to_load_naming_file_dag_and_part(
    tmp_path: Path,
) -> None:
    """The import error names the file, the DAG and the offending part of the pattern."""
    (tmp_path / "bad_pattern.py").write_text(
        "from orchestrator import DAG, EventPattern\n"
        "with DAG('on_orders', schedule=EventPattern("
        "{'source': ['shop'], 'detail': {'total': [{'numeric': ['>', 'ten']}]}})):\n"
        "    pass\n"
    )
    bag = load_dags(tmp_path)
    assert not bag.dags
    (error,) = bag.import_errors
    assert error.file.endswith("bad_pattern.py")
    assert "DAG 'on_orders'" in error.message
    assert 'detail.total: numeric: >: must be a number, got "ten"' in error.message


def test_an_event_pattern_schedule_is_neither_manual_nor_timed() -> None:
    """``schedule=EventPattern(...)`` gives a DAG that runs on events only."""
    pattern = EventPattern({"source": ["shop"]})
    with DAG("on_shop", schedule=pattern) as dag:
        pass
    assert dag.schedule.event is pattern
    assert not dag.schedule.is_manual
    assert dag.timetable is None
    assert dag.schedule.text == 'EventPattern({"source": ["shop"]})'
