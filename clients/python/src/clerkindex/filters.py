"""Build filters in Python instead of formatting filter text.

    from clerkindex import field, all_of

    f = (field("public.plan_type") == "pro") & (field("created_at") > date("now-30d"))
    f = field("public.tier").is_in(["gold", "platinum"]) | ~(field("banned") == True)

A built filter is the structured form of the filter language (``Filter`` in the protos), so no
value ever needs quoting or escaping. Strings passed to ``count``, ``search`` and the others are
taken as filter text instead; both spellings answer the same.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, Iterable, Union

from .v1 import user_index_pb2 as pb

__all__ = ["Filter", "Path", "field", "all_of", "any_of", "not_", "date", "FilterLike", "to_spec"]

Op = pb.Operator


class date(str):
    """A date value as text: relative (``now-30d``), ``YYYY-MM-DD`` or RFC 3339.

    A plain ``str`` is a string value (a quoted string in the filter text), so relative dates
    need this: ``field("created_at") > date("now-30d")``.
    """


def _value(v: Any) -> pb.Value:
    # bool before int: True is an int in Python.
    if isinstance(v, bool):
        return pb.Value(boolean=v)
    if v is None:
        return pb.Value(null=True)
    if isinstance(v, int):
        return pb.Value(integer=v)
    if isinstance(v, float):
        return pb.Value(number=v)
    if isinstance(v, date):
        return pb.Value(date=str(v))
    if isinstance(v, str):
        return pb.Value(string=v)
    if isinstance(v, _dt.datetime):
        if v.tzinfo is None:
            raise ValueError("a datetime in a filter needs a time zone (e.g. tzinfo=timezone.utc)")
        return pb.Value(date_ms=int(v.timestamp() * 1000))
    if isinstance(v, _dt.date):
        return pb.Value(date=v.isoformat())
    raise TypeError(f"a filter value is a str, int, float, bool, None, date or datetime, not {type(v).__name__}")


class Filter:
    """A filter tree; combine with ``&`` (AND), ``|`` (OR) and ``~`` (NOT)."""

    __slots__ = ("proto",)

    def __init__(self, proto: pb.Filter):
        self.proto = proto

    def __and__(self, other: "Filter") -> "Filter":
        return all_of(self, other)

    def __or__(self, other: "Filter") -> "Filter":
        return any_of(self, other)

    def __invert__(self) -> "Filter":
        return not_(self)

    def __bool__(self) -> bool:
        raise TypeError("use &, | and ~ to combine filters, not and/or/not")

    def __repr__(self) -> str:
        return f"Filter({self.proto})"


def _flatten(kind: str, filters: Iterable[Filter]) -> list:
    out = []
    for f in filters:
        if not isinstance(f, Filter):
            raise TypeError(f"expected a Filter, got {type(f).__name__}")
        if f.proto.WhichOneof("node") == kind:
            out.extend(getattr(f.proto, kind).filters)
        else:
            out.append(f.proto)
    return out


def all_of(*filters: Filter) -> Filter:
    """AND of the filters."""
    return Filter(pb.Filter(all=pb.FilterList(filters=_flatten("all", filters))))


def any_of(*filters: Filter) -> Filter:
    """OR of the filters."""
    return Filter(pb.Filter(any=pb.FilterList(filters=_flatten("any", filters))))


def not_(f: Filter) -> Filter:
    """NOT of the filter (the proto field is ``negate``)."""
    return Filter(pb.Filter(negate=f.proto))


def org(f: Filter) -> Filter:
    """``org[...]``: one and the same organization membership satisfies ``f``, whose paths are
    a membership's (``field("role") == "org:admin"``, ``field("public.plan")``)."""
    return Filter(pb.Filter(org=f.proto))


def in_segment(name: str) -> Filter:
    """``IN SEGMENT "name"``: the user is in that saved segment (its filter in place of this)."""
    return Filter(pb.Filter(segment=name))


class Path:
    """A core field (``email``, ``created_at``) or metadata path (``public.prefs.theme``)."""

    __slots__ = ("path",)

    def __init__(self, path: str):
        if not path:
            raise ValueError("a path is not empty")
        self.path = path

    def _predicate(self, op: int, *values: Any) -> Filter:
        return Filter(
            pb.Filter(predicate=pb.Predicate(path=self.path, op=op, values=[_value(v) for v in values]))
        )

    def __eq__(self, value: Any) -> Filter:  # type: ignore[override]
        return self._predicate(Op.OPERATOR_EQ, value)

    def __ne__(self, value: Any) -> Filter:  # type: ignore[override]
        return self._predicate(Op.OPERATOR_NE, value)

    def __lt__(self, value: Any) -> Filter:
        return self._predicate(Op.OPERATOR_LT, value)

    def __le__(self, value: Any) -> Filter:
        return self._predicate(Op.OPERATOR_LTE, value)

    def __gt__(self, value: Any) -> Filter:
        return self._predicate(Op.OPERATOR_GT, value)

    def __ge__(self, value: Any) -> Filter:
        return self._predicate(Op.OPERATOR_GTE, value)

    __hash__ = None  # type: ignore[assignment]

    def is_in(self, values: Iterable[Any]) -> Filter:
        return self._predicate(Op.OPERATOR_IN, *list(values))

    def between(self, low: Any, high: Any) -> Filter:
        """``low <= value <= high``."""
        return self._predicate(Op.OPERATOR_BETWEEN, low, high)

    def exists(self) -> Filter:
        return self._predicate(Op.OPERATOR_EXISTS)

    def starts_with(self, prefix: str) -> Filter:
        return self._predicate(Op.OPERATOR_STARTS_WITH, prefix)

    def matches(self, text: str) -> Filter:
        """Full-text match on a text field (names, emails)."""
        return self._predicate(Op.OPERATOR_MATCHES, text)

    def __repr__(self) -> str:
        return f"field({self.path!r})"


def field(path: str) -> Path:
    return Path(path)


FilterLike = Union[Filter, str, None]


def to_spec(f: FilterLike) -> "pb.FilterSpec | None":
    """The request's ``FilterSpec``: text for a str, the tree for a Filter, none for None."""
    if f is None:
        return None
    if isinstance(f, str):
        return pb.FilterSpec(expression=f)
    if isinstance(f, Filter):
        return pb.FilterSpec(tree=f.proto)
    raise TypeError(f"a filter is a str or a Filter, not {type(f).__name__}")
