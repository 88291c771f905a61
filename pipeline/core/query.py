"""Audit requests (SPEC section 4): routing, validation in the contract's error order, answers.

``read_envelope`` decides whether a request can be answered at all (it needs a JSON object with
a string ``reply_to``; otherwise it is dead-lettered). ``parse_request`` then validates the rest
and raises ``AuditError`` with the first applicable SPEC code; ``answer`` computes the value.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import orjson

from pipeline.core.cidr import Block, resolve_cidr
from pipeline.core.counts import WindowedCounts
from pipeline.core.events import MAX_KEPT_DEPTH, deep_loads, loads_any_depth
from pipeline.core.series import SeriesCatalog
from pipeline.core.series_query import (
    SERIES_FIELD_TYPES,
    SERIES_OPS,
    SeriesCountRequest,
    SeriesDefineRequest,
    parse_series_request,
)
from pipeline.core.sessions import SessionGauge
from pipeline.core.windows import Monitor, parse_monitors
from pipeline.errors import AuditError

__all__ = [
    "OPS",
    "Request",
    "Unroutable",
    "read_envelope",
    "parse_request",
    "answer",
    "reply_value",
    "reply_error",
]

#: op name -> metric code for the windowed ops; ``inbound_session_count`` is the gauge.
WINDOWED_OPS: dict[str, int] = {"connections": 0, "receptions": 1, "rejections": 2}
SESSION_OP = "inbound_session_count"
OPS: tuple[str, ...] = (*WINDOWED_OPS, SESSION_OP, *SERIES_OPS)


class Unroutable(Exception):
    """A request nobody can be told about; it goes to the dead-letter topic with ``reason``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Request:
    id: str
    op: str
    monitor: Monitor | None
    block: Block
    startv: int
    endv: int
    node: str | None  # None: the whole fleet (cluster=true)
    at: float | None
    service: str


#: orjson keeps integers from -2**63 to 2**64-1 exact, reads larger ones as floats and refuses
#: those beyond a double ("number is infinity when parsed as double").
_ORJSON_INT_RANGE = (-(2**63), 2**64 - 1)
_ORJSON_NUMBER_OVERFLOW = "when parsed as double"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _check_strings(value: Any) -> None:
    """Refuse lone surrogates as orjson does (a reply could not echo them); raises ValueError.
    Without recursion: a request may be nested as deep as its sender likes."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            item.encode()
        elif isinstance(item, dict):
            pending += item.keys()
            pending += item.values()
        elif isinstance(item, list):
            pending += item


def _exact_scalar(token: bytes) -> Any:
    return json.loads(token, parse_constant=_reject_constant)


def _loads_exact(raw: bytes) -> Any:
    """The request as orjson reads it, except that integers beyond 64 bits stay integers, and at
    any depth (as for events, nesting never makes a request unroutable by itself).

    orjson turns big integers into floats or refuses them, so ``endv = 2**70`` would be judged
    "not an integer"; only then is the request re-read, as strictly, by the stdlib parser. A
    request nested deeper than orjson's 1,024 levels is read by ``loads_any_depth``, and re-read
    without recursion when it also holds such a number. Raises ValueError.
    """
    try:
        obj = loads_any_depth(raw)
    except orjson.JSONDecodeError as exc:
        if _ORJSON_NUMBER_OVERFLOW not in str(exc):
            raise
        return _reread_exactly(raw)
    low, high = _ORJSON_INT_RANGE
    if not isinstance(obj, dict) or all(type(v) is not float or low <= v <= high for v in obj.values()):
        return obj
    return _reread_exactly(raw)


def _reread_exactly(raw: bytes) -> Any:
    try:
        exact = json.loads(raw, parse_constant=_reject_constant)
    except RecursionError:  # deeper than the stdlib parser goes
        exact = deep_loads(raw, MAX_KEPT_DEPTH, _exact_scalar)
    _check_strings(exact)
    return exact


def read_envelope(raw: bytes | None) -> tuple[dict[str, Any], str]:
    """The request object and its ``reply_to``, or ``Unroutable``."""
    try:
        obj = _loads_exact(raw or b"")
    except ValueError as exc:
        raise Unroutable("invalid_json", f"request is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise Unroutable("not_an_object", f"request is a JSON {type(obj).__name__}, not an object")
    reply_to = obj.get("reply_to")
    if not isinstance(reply_to, str) or not reply_to:
        raise Unroutable("missing_reply_to", "request has no string 'reply_to' to answer on")
    return obj, reply_to


#: Optional fields and their types (``op`` and ``id`` are required and checked first); null means absent.
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "monitor": (str,),
    "cidr": (str,),
    "ip": (str,),
    "node": (str,),
    "service": (str,),
    "cluster": (bool,),
}


def _invalid(message: str) -> AuditError:
    return AuditError("invalid_request", message)


def _check_types(obj: dict[str, Any]) -> None:
    request_id = obj.get("id")
    if not isinstance(request_id, str) or not 1 <= len(request_id) <= 128:
        raise _invalid(f"'id' must be a string of 1-128 characters, got {request_id!r}")
    if not isinstance(obj.get("op"), str):
        raise _invalid(f"field 'op' must be a string, got {obj.get('op')!r}" if "op" in obj else "missing field 'op'")
    typed = {**_FIELD_TYPES, **SERIES_FIELD_TYPES} if obj["op"] in SERIES_OPS else _FIELD_TYPES
    for name, types in typed.items():
        if obj.get(name) is not None and type(obj[name]) not in types:
            raise _invalid(f"field {name!r} must be a {types[0].__name__}, got {obj[name]!r}")
    for name in ("startv", "endv"):
        value = obj.get(name)
        if value is not None and type(value) is not int:
            raise _invalid(f"field {name!r} must be an integer, got {value!r}")
    at = obj.get("at")
    if at is not None and (type(at) not in (int, float) or not _finite(at)):
        raise _invalid(f"field 'at' must be a finite number of Unix seconds, got {at!r}")


def _finite(number: float) -> bool:
    """``math.isfinite`` that says no, rather than raising, for an integer beyond a double's range."""
    try:
        return math.isfinite(number)
    except OverflowError:
        return False


def _resolve_monitor(text: str, monitors: tuple[Monitor, ...]) -> Monitor:
    try:
        parsed = parse_monitors(text)
    except ValueError:
        parsed = ()
    if len(parsed) == 1 and parsed[0] in monitors:
        return parsed[0]
    configured = " ".join(m.name for m in monitors)
    raise AuditError("unknown_monitor", f"monitor {text!r} is not configured; configured: {configured}")


def parse_request(
    obj: dict[str, Any],
    monitors: tuple[Monitor, ...],
    catalog: SeriesCatalog | None = None,
    max_span_s: int | None = None,
) -> Request | SeriesCountRequest | SeriesDefineRequest:
    """Validate a routable request; raises ``AuditError`` with the first applicable SPEC code.

    Series ops are judged against ``catalog`` (default: no series) and a definition may span at
    most ``max_span_s`` (default: the longest monitor), what the state log keeps.
    """
    _check_types(obj)
    op = obj["op"]
    if op not in OPS:
        raise AuditError("unknown_op", f"op {op!r} is not one of {', '.join(OPS)}")
    if op in SERIES_OPS:
        span = max_span_s if max_span_s is not None else max(m.span_s for m in monitors)
        return parse_series_request(obj, catalog if catalog is not None else SeriesCatalog(), span)
    monitor = None
    startv, endv = obj.get("startv") or 0, obj.get("endv") or 0
    if op in WINDOWED_OPS:
        if obj.get("monitor") is None:
            raise _invalid(f"op {op!r} needs a 'monitor' such as '300,6'")
        monitor = _resolve_monitor(obj["monitor"], monitors)
        if startv < 0 or endv < 0 or startv > endv:
            raise AuditError("invalid_range", f"window range startv={startv}..endv={endv} is not 0 <= startv <= endv")
        if endv >= monitor.count:
            raise AuditError(
                "window_out_of_range",
                f"endv={endv} but monitor '{monitor.name}' keeps {monitor.count} window(s): 0..{monitor.count - 1}",
            )
    cluster = bool(obj.get("cluster"))
    node = obj.get("node")
    if not cluster and not node:
        raise AuditError("missing_node", "a node-local query (cluster=false) needs 'node'")
    block = resolve_cidr(obj.get("cidr"), obj.get("ip"))
    return Request(
        id=obj["id"],
        op=op,
        monitor=monitor,
        block=block,
        startv=startv,
        endv=endv,
        node=None if cluster else node,
        at=obj.get("at"),
        service=obj.get("service") or "SMTP",
    )


def answer(request: Request, counts: WindowedCounts, gauge: SessionGauge, now_s: float) -> int:
    """The value for a valid request, from this worker's replica of the fleet's state."""
    if request.monitor is None:
        return gauge.count(request.block, request.service, request.node)
    at = now_s if request.at is None else request.at
    metric = WINDOWED_OPS[request.op]
    return counts.count(request.monitor, metric, request.block, request.startv, request.endv, at, now_s, request.node)


def reply_value(request_id: Any, value: int) -> bytes:
    return orjson.dumps({"id": request_id, "ok": True, "value": value})


def reply_error(request_id: Any, error: AuditError) -> bytes:
    return orjson.dumps({"id": request_id, "ok": False, "error": {"code": error.code, "message": error.message}})
