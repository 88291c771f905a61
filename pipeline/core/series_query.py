"""The series ops of the request topic (SPEC section 8): ``series_count`` and ``series_define``.

Validation raises ``AuditError`` with the first applicable code in the series precedence:
``invalid_request``, ``unknown_op``, ``unknown_series``, ``series_conflict``, ``invalid_range``,
``window_out_of_range``, ``missing_node``, ``missing_ip``, ``invalid_key``. (The first two are
decided by ``query.parse_request`` before it hands a series op over.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.core.cidr import Block, resolve_cidr
from pipeline.core.series import MAX_SERIES_KEY_CHARS, SeriesCatalog, SeriesDef
from pipeline.core.series_counts import SeriesCounts
from pipeline.errors import AuditError

__all__ = [
    "SERIES_COUNT",
    "SERIES_DEFINE",
    "SERIES_OPS",
    "SERIES_FIELD_TYPES",
    "SeriesCountRequest",
    "SeriesDefineRequest",
    "parse_series_request",
    "answer_series_count",
]

SERIES_COUNT, SERIES_DEFINE = "series_count", "series_define"
SERIES_OPS: tuple[str, ...] = (SERIES_COUNT, SERIES_DEFINE)

#: Fields only the series ops read, and their types (null means absent).
SERIES_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "series": (str,),
    "key": (str,),
    "type": (str,),
    "interval": (int,),
    "num_windows": (int,),
    "prefix_len": (int,),
}


@dataclass(frozen=True, slots=True)
class SeriesCountRequest:
    id: str
    op: str
    definition: SeriesDef
    query: Block | str
    startv: int
    endv: int
    node: str | None  # None: the whole fleet
    at: float | None


@dataclass(frozen=True, slots=True)
class SeriesDefineRequest:
    id: str
    op: str
    definition: SeriesDef
    #: False when the catalog already holds exactly this definition (nothing to write).
    new: bool


def _define(obj: dict[str, Any], catalog: SeriesCatalog, max_span_s: int) -> SeriesDefineRequest:
    for name in ("series", "type", "interval", "num_windows"):
        if obj.get(name) is None:
            raise AuditError("invalid_request", f"op 'series_define' needs {name!r}")
    try:
        definition = SeriesDef(obj["series"], obj["type"], obj["interval"], obj["num_windows"], obj.get("prefix_len"))
    except ValueError as exc:
        raise AuditError("invalid_request", str(exc)) from None
    span = definition.interval * definition.num_windows
    if span > max_span_s:
        raise AuditError(
            "invalid_request",
            f"series {definition.name!r} spans {span} s, longer than the {max_span_s} s the state log keeps"
            " (the longest monitor or configured series)",
        )
    known = catalog.get(definition.name)
    if known is not None and known != definition:
        raise conflict(definition, known)
    return SeriesDefineRequest(obj["id"], obj["op"], definition, known is None)


def conflict(asked: SeriesDef, known: SeriesDef) -> AuditError:
    """The ``series_conflict`` error of a define that differs from the one that counts."""
    return AuditError("series_conflict", f"series {known.name!r} is already defined as {known}; asked: {asked}")


def _key(obj: dict[str, Any], definition: SeriesDef) -> Block | str:
    key = obj.get("key")
    if definition.family is None:
        if key is None or not 0 < len(key) <= MAX_SERIES_KEY_CHARS:
            raise AuditError(
                "invalid_key", f"string series {definition.name!r} needs a 'key' of 1-{MAX_SERIES_KEY_CHARS} characters"
            )
        return str(key)
    try:
        block = resolve_cidr(key, obj.get("ip"))
    except AuditError as exc:
        if exc.code != "invalid_cidr":
            raise
        raise AuditError("invalid_key", f"series {definition.name!r}: {exc.message}") from None
    if block.family != definition.family:
        raise AuditError(
            "invalid_key",
            f"series {definition.name!r} counts IPv{definition.family} keys; {block} is IPv{block.family}",
        )
    return definition.query_block(block)


def _count(obj: dict[str, Any], catalog: SeriesCatalog) -> SeriesCountRequest:
    name = obj.get("series")
    if name is None:
        raise AuditError("invalid_request", "op 'series_count' needs 'series'")
    definition = catalog.get(name)
    if definition is None:
        raise AuditError("unknown_series", f"series {name!r} is not defined")
    startv, endv = obj.get("startv") or 0, obj.get("endv") or 0
    if startv < 0 or endv < 0 or startv > endv:
        raise AuditError("invalid_range", f"window range startv={startv}..endv={endv} is not 0 <= startv <= endv")
    if endv >= definition.num_windows:
        raise AuditError(
            "window_out_of_range",
            f"endv={endv} but series {name!r} keeps {definition.num_windows} window(s):"
            f" 0..{definition.num_windows - 1}",
        )
    cluster = bool(obj.get("cluster"))
    node = obj.get("node")
    if not cluster and not node:
        raise AuditError("missing_node", "a node-local query (cluster=false) needs 'node'")
    return SeriesCountRequest(
        obj["id"], obj["op"], definition, _key(obj, definition), startv, endv, None if cluster else node, obj.get("at")
    )


def parse_series_request(
    obj: dict[str, Any], catalog: SeriesCatalog, max_span_s: int
) -> SeriesCountRequest | SeriesDefineRequest:
    """Validate a series op whose types and op name were checked already."""
    if obj["op"] == SERIES_DEFINE:
        return _define(obj, catalog, max_span_s)
    return _count(obj, catalog)


def answer_series_count(request: SeriesCountRequest, series: SeriesCounts, now_s: float) -> int:
    at = now_s if request.at is None else request.at
    return series.count(request.definition, request.query, request.startv, request.endv, at, now_s, request.node)
