"""Validation of event messages (SPEC section 3) into columns, with one reason per rejected event.

This is the per-event hot path, so ``decode`` has two fast paths that only *accept* events:

* ``_decode_array``: a typed msgspec decode of a whole JSON array, checked column-wise. It is
  all-or-nothing: one event it cannot vouch for (any msgspec error, an unknown field, one bad
  value) sends the whole message down the orjson path below, so it never decides a rejection.
* ``_decode_events``: a loop over orjson objects that accepts the common valid event inline.

Any event those have doubts about goes to ``_decode_slow``, the single authority that checks
everything in a fixed order and either accepts the event or rejects it with the first failing
reason:

1. ``not_an_object``     the event is not a JSON object
2. ``missing_field``     ``node``, ``ts``, ``ip`` or ``event`` absent (all absent ones are named)
3. ``invalid_field``     wrong type or value, in field order node, ts, ip, event, then ``n``
                         (windowed events only) or ``service`` (session events only; for an
                         unknown event neither is checked)
4. ``invalid_ip``        ``ip`` is not exactly one IPv4 or IPv6 address
5. ``unknown_event``     ``event`` is not one of the six names
6. ``too_late`` / ``future_timestamp``   windowed events only, against the caller's clock

Series events (``"event": "series_add"`` or ``"series_remove"``, SPEC section 8) have no ``ip``
and are judged by ``_series_problem`` in their own order: ``missing_field`` (node, ts, event,
series, key), ``invalid_field`` (node, ts, series, key, then ``count`` of an add: an integer with
|count| <= 2**31 - 1), ``unknown_series`` (not among the definitions the decoder was given),
``invalid_key`` (not an address of the series' family, or a string key not of 1-255 characters),
then ``too_late`` / ``future_timestamp`` against the series' own windows. A cidr_ipv6 key is
truncated to the series' ``prefix_len`` here, so every replica counts the same key. The native
decoder (``pipeline/native/src/series.rs``) makes the same decisions with the same details.

Whole-message reasons (``invalid_json``, ``batch_too_large``, a top-level ``not_an_object``)
reject the message once, with its raw bytes. "JSON" is what orjson accepts: strict UTF-8, no
lone surrogates, no NaN/Infinity, numbers that fit a double (integers beyond 64 bits become
doubles), at any nesting depth. A JSON ``null`` is a present field of the wrong type, not a
missing one. ``n`` is capped at ``MAX_EVENT_N`` (2**31 - 1) so that int64 counters cannot
overflow: a larger integer is ``invalid_field``. Single-object messages are dead-lettered with
their original bytes, array items re-serialized with orjson.

Depth rule: nesting never rejects a message or an event by itself, so an event with a deeply
nested unknown field is judged by its SPEC fields. Counting the event (or array item) itself as
level 1, arrays and objects at a level above ``MAX_KEPT_DEPTH`` are still syntax-checked but kept
as ``null``, which is what a dead letter's value and detail show of them. orjson refuses more than
1024 levels, so such messages are parsed by ``deep_loads`` instead: only them, but slowly (up
to about a second for a 1 MiB message of brackets; the native decoder takes milliseconds).
"""

from __future__ import annotations

import codecs
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import compress
from typing import Any, NamedTuple, cast

import msgspec
import orjson

from pipeline.core.cidr import IpParser
from pipeline.core.series import MAX_SERIES_KEY_CHARS, SeriesDef
from pipeline.core.series_counts import SERIES_ADD, SERIES_REMOVE, SeriesOp

__all__ = [
    "METRICS",
    "SERIES_EVENTS",
    "SeriesLookup",
    "SESSION_OPEN",
    "SESSION_CLOSE",
    "NODE_RESET",
    "EVENT_NAMES",
    "DEFAULT_SERVICE",
    "MAX_BATCH_EVENTS",
    "MAX_MESSAGE_BYTES",
    "MAX_EVENT_N",
    "MAX_NODE_CHARS",
    "MAX_KEPT_DEPTH",
    "DEAD_LETTER_VALUE_BYTES",
    "REASONS",
    "Rejection",
    "DecodedBatch",
    "EventDecoder",
    "dead_letter_record",
    "deep_loads",
    "loads_any_depth",
    "invalid_json_detail",
]

#: Windowed event names; a metric's code is its index here.
METRICS: tuple[str, ...] = ("connection", "reception", "rejection")
SESSION_OPEN, SESSION_CLOSE, NODE_RESET = "session_open", "session_close", "node_reset"
EVENT_NAMES: tuple[str, ...] = (*METRICS, SESSION_OPEN, SESSION_CLOSE, NODE_RESET)
DEFAULT_SERVICE = "SMTP"
MAX_BATCH_EVENTS = 10_000
MAX_MESSAGE_BYTES = 1 << 20
MAX_EVENT_N = 2**31 - 1
MAX_NODE_CHARS = 255
DEAD_LETTER_VALUE_BYTES = 4096
#: Containers at a deeper level of an event (itself level 1) are kept as ``null`` (orjson writes 254 at most).
MAX_KEPT_DEPTH = 64

REASONS: tuple[str, ...] = (
    "invalid_json",
    "not_an_object",
    "batch_too_large",
    "missing_field",
    "invalid_field",
    "invalid_ip",
    "unknown_event",
    "unknown_series",
    "invalid_key",
    "too_late",
    "future_timestamp",
)

#: The series event names, which ``EventDecoder.series_event`` judges.
SERIES_EVENTS: tuple[str, ...] = (SERIES_ADD, SERIES_REMOVE)
_SERIES_REQUIRED = ("node", "ts", "event", "series", "key")

#: Series name -> its definition, or None for a series not (yet) defined.
SeriesLookup = Callable[[str], SeriesDef | None]


def _no_series(name: str) -> SeriesDef | None:
    return None


#: Event name -> code: 0-2 are metric codes, 3-5 index ``_SESSION_KINDS``.
_CODES: dict[str, int] = {name: code for code, name in enumerate(EVENT_NAMES)}
_FIRST_SESSION_CODE = len(METRICS)
_SESSION_KINDS: tuple[str, ...] = ("", "", "", "open", "close", "reset")
_REQUIRED = ("node", "ts", "ip", "event")
_SHOW_CHARS = 100

_loads = orjson.loads
_dumps = orjson.dumps
_JSONDecodeError = orjson.JSONDecodeError
_DEPTH_ERROR = "depth limit exceeded"
_TOKEN = re.compile(
    rb'[ \t\n\r]*(?:("(?:[^"\\\x00-\x1f]|\\.)*")|(-?[0-9][0-9eE.+-]*|true|false|null)|([\[\]{},:]))', re.DOTALL
)
_WHITESPACE = b" \t\n\r"
#: (closing bracket, open container is an object) -> the states in which it may close it.
_CLOSERS: dict[tuple[bytes | None, bool | None], tuple[str, ...]] = {
    (b"]", False): ("value_or_close", "comma_or_close"),
    (b"}", True): ("key_or_close", "comma_or_close"),
}


class _WireEvent(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """An event as the typed fast path sees it; anything else fails the decode (and falls back)."""

    node: str
    ts: float
    ip: str
    event: str
    n: int = 1
    service: str = DEFAULT_SERVICE


_decode_wire_array = msgspec.json.Decoder(list[_WireEvent]).decode


class _WireSeriesEvent(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """A series event as the typed fast path sees it (a remove's ``count`` is ignored)."""

    node: str
    ts: float
    event: str
    series: str
    key: str
    count: int = 1


_decode_series_array = msgspec.json.Decoder(list[_WireSeriesEvent]).decode


class Rejection(NamedTuple):
    """One dead-letter entry: SPEC reason, human detail, and the offending bytes."""

    reason: str
    detail: str
    value: bytes


@dataclass(slots=True)
class DecodedBatch:
    """Accepted events in columns (input order), session events, and rejections.

    The windowed columns are parallel lists; ``sessions`` holds ``(kind, node, family, addr,
    service)`` with kind ``"open"``, ``"close"`` or ``"reset"``; ``series`` the series events.
    """

    node: list[str] = field(default_factory=list)
    ts: list[float] = field(default_factory=list)
    family: list[int] = field(default_factory=list)
    addr: list[int] = field(default_factory=list)
    metric: list[int] = field(default_factory=list)
    n: list[int] = field(default_factory=list)
    sessions: list[tuple[str, str, int, int, str]] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    series: list[SeriesOp] = field(default_factory=list)


def _show(value: Any) -> str:
    """The offending value in JSON syntax (what the sender wrote), shortened for the detail."""
    text = _dumps(value).decode()
    return text if len(text) <= _SHOW_CHARS else text[: _SHOW_CHARS - 3] + "..."


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {
        dict: "object",
        list: "array",
        str: "string",
        bool: "boolean",
        int: "number",
        float: "number",
    }.get(type(value), type(value).__name__)


class EventDecoder:
    """Turns raw event-topic message values into a ``DecodedBatch``; never raises on bad input."""

    __slots__ = ("ip_parser", "max_future_s", "series")

    def __init__(
        self, ip_parser: IpParser | None = None, max_future_s: float = 300.0, series: SeriesLookup = _no_series
    ) -> None:
        self.ip_parser = ip_parser if ip_parser is not None else IpParser()
        self.max_future_s = max_future_s
        self.series = series

    def decode(
        self, raw: bytes | None, *, now_s: float, oldest_kept_s: float, into: DecodedBatch | None = None
    ) -> DecodedBatch:
        """Validate one message value, appending to ``into`` (or a new batch) and returning it.

        ``now_s`` is the reference clock for ``future_timestamp`` (pass the record's
        LogAppendTime so replays decide the same); a windowed event with ``ts < oldest_kept_s``
        is ``too_late``. Both bounds are inclusive for acceptance.
        """
        out = DecodedBatch() if into is None else into
        if raw is None:
            out.rejected.append(Rejection("invalid_json", "empty message value (a tombstone), expected JSON", b""))
            return out
        if len(raw) > MAX_MESSAGE_BYTES:
            detail = f"message of {len(raw)} bytes exceeds the limit of {MAX_MESSAGE_BYTES} bytes"
            out.rejected.append(Rejection("batch_too_large", detail, bytes(raw)))
            return out
        if raw[:1] == b"[" and (
            self._decode_array(raw, out, now_s, oldest_kept_s) or self._accept_series_array(raw, out, now_s)
        ):
            return out
        try:
            doc = loads_any_depth(raw)
        except ValueError as exc:
            out.rejected.append(Rejection("invalid_json", f"value is not UTF-8 JSON: {exc}", bytes(raw)))
            return out
        kind = type(doc)
        if kind is dict:
            self._decode_events((doc,), bytes(raw), out, now_s, oldest_kept_s)
        elif kind is list:
            if len(doc) > MAX_BATCH_EVENTS:
                detail = f"batch of {len(doc)} events exceeds the limit of {MAX_BATCH_EVENTS}"
                out.rejected.append(Rejection("batch_too_large", detail, bytes(raw)))
            else:
                self._decode_events(doc, None, out, now_s, oldest_kept_s)
        else:
            detail = f"value must be a JSON object or an array of objects, got {_json_type(doc)} {_show(doc)}"
            out.rejected.append(Rejection("not_an_object", detail, bytes(raw)))
        return out

    def _decode_array(self, raw: bytes, out: DecodedBatch, now_s: float, oldest: float) -> bool:
        """Append every event of a JSON array and return True, or append nothing and return False.

        Columns are checked with C-level builtins (``map``, ``min``/``max``) instead of one
        Python branch per event; msgspec already guarantees the types (no bools, finite floats).
        JSON integers become floats in ``ts``, which is exact for every accepted timestamp.
        """
        try:
            events = _decode_wire_array(raw)
        except (msgspec.DecodeError, ValueError, RecursionError):  # ValueError: invalid UTF-8 in a str field
            return False
        if not 0 < len(events) <= MAX_BATCH_EVENTS:
            return not events
        found = list(map(_CODES.get, [ev.event for ev in events]))
        if None in found or any(not 0 < len(node) <= MAX_NODE_CHARS for node in {ev.node for ev in events}):
            return False
        addresses = self._addresses([ev.ip for ev in events])
        if addresses is None:
            return False
        codes = cast(list[int], found)
        if max(codes) < _FIRST_SESSION_CODE:
            return self._append_windowed(events, codes, addresses, out, now_s, oldest)
        keep = [code < _FIRST_SESSION_CODE for code in codes]
        columns = (list(compress(events, keep)), list(compress(codes, keep)), list(compress(addresses, keep)))
        if not self._append_windowed(*columns, out, now_s, oldest):
            return False
        out.sessions += [
            (_SESSION_KINDS[code], ev.node, fa[0], fa[1], ev.service)
            for ev, code, fa in zip(events, codes, addresses, strict=True)
            if code >= _FIRST_SESSION_CODE
        ]
        return True

    def _addresses(self, ips: list[str]) -> list[tuple[int, int]] | None:
        """``(family, address)`` per IP string, from the cache where possible; None if one is bad."""
        cached = list(map(self.ip_parser.get, ips))
        if None not in cached:
            return cast(list[tuple[int, int]], cached)
        parse = self.ip_parser.parse
        try:
            return [fa if fa is not None else parse(ip) for fa, ip in zip(cached, ips, strict=True)]
        except ValueError:
            return None

    def _append_windowed(
        self,
        events: list[_WireEvent],
        codes: list[int],
        addresses: list[tuple[int, int]],
        out: DecodedBatch,
        now_s: float,
        oldest: float,
    ) -> bool:
        """Append windowed events whose ``n`` and ``ts`` are all in range; else append nothing."""
        if not events:
            return True
        ts = [ev.ts for ev in events]
        ns = [ev.n for ev in events]
        if min(ts) < oldest or max(ts) > now_s + self.max_future_s or min(ns) < 1 or max(ns) > MAX_EVENT_N:
            return False
        out.node += [ev.node for ev in events]
        out.ts += ts
        out.family += [fa[0] for fa in addresses]
        out.addr += [fa[1] for fa in addresses]
        out.metric += codes
        out.n += ns
        return True

    def _decode_events(
        self, events: Sequence[Any], single_raw: bytes | None, out: DecodedBatch, now_s: float, oldest: float
    ) -> None:
        """The fast loop: accept the common valid event inline, defer everything else."""
        add_node = out.node.append
        add_ts = out.ts.append
        add_family = out.family.append
        add_addr = out.addr.append
        add_metric = out.metric.append
        add_n = out.n.append
        add_session = out.sessions.append
        ip_get = self.ip_parser.get
        ip_parse = self.ip_parser.parse
        code_of = _CODES.get
        kinds = _SESSION_KINDS
        first_session = _FIRST_SESSION_CODE
        max_n = MAX_EVENT_N
        latest = now_s + self.max_future_s
        slow = self._decode_slow
        accept_series = self._accept_series
        for ev in events:
            if type(ev) is dict:
                get = ev.get
                node = get("node")
                ip = get("ip")
                name = get("event")
                if type(node) is str and type(ip) is str and type(name) is str and 0 < len(node) <= 255:
                    ts: Any = get("ts")
                    code = code_of(name)
                    tts = type(ts)
                    if code is not None and (tts is float or tts is int):
                        fa = ip_get(ip)
                        if fa is None:
                            try:
                                fa = ip_parse(ip)
                            except ValueError:
                                fa = None
                        if fa is not None:
                            if code < first_session:
                                n: Any = get("n", 1)
                                if type(n) is int and 0 < n <= max_n and oldest <= ts <= latest:
                                    add_node(node)
                                    add_ts(ts)
                                    add_family(fa[0])
                                    add_addr(fa[1])
                                    add_metric(code)
                                    add_n(n)
                                    continue
                            else:
                                service: Any = get("service", DEFAULT_SERVICE)
                                if type(service) is str and (tts is int or ts - ts == 0.0):
                                    add_session((kinds[code], node, fa[0], fa[1], service))
                                    continue
                elif name in SERIES_EVENTS and accept_series(ev, out, now_s):
                    continue
            slow(ev, single_raw, out, now_s, oldest)

    def _decode_slow(self, ev: Any, single_raw: bytes | None, out: DecodedBatch, now_s: float, oldest: float) -> None:
        """Check one event in the documented order; append it to ``out`` or reject it."""
        ev = _prune(ev, MAX_KEPT_DEPTH)
        if type(ev) is dict and ev.get("event") in SERIES_EVENTS:
            self.series_event(ev, single_raw, out, now_s)
            return
        problem = self._problem(ev, now_s, oldest)
        if problem is not None:
            value = single_raw if single_raw is not None else _dumps(ev)
            out.rejected.append(Rejection(problem[0], problem[1], value))
            return
        family, addr = self.ip_parser(ev["ip"])
        code = _CODES[ev["event"]]
        if code < _FIRST_SESSION_CODE:
            out.node.append(ev["node"])
            out.ts.append(ev["ts"])
            out.family.append(family)
            out.addr.append(addr)
            out.metric.append(code)
            out.n.append(ev.get("n", 1))
        else:
            service = ev.get("service", DEFAULT_SERVICE)
            out.sessions.append((_SESSION_KINDS[code], ev["node"], family, addr, service))

    def _accept_series_array(self, raw: bytes, out: DecodedBatch, now_s: float) -> bool:
        """Append every event of a JSON array of valid series events and return True, or append
        nothing and return False (then each event is judged on its own). Checked column-wise,
        as ``_decode_array`` does for the built-in events."""
        try:
            events = _decode_series_array(raw)
        except (msgspec.DecodeError, ValueError, RecursionError):
            return False
        if not 0 < len(events) <= MAX_BATCH_EVENTS:
            return not events
        definitions = {name: self.series(name) for name in {ev.series for ev in events}}
        if None in definitions.values() or not {ev.event for ev in events} <= set(SERIES_EVENTS):
            return False
        if any(not 0 < len(node) <= MAX_NODE_CHARS for node in {ev.node for ev in events}):
            return False
        counts = [ev.count if ev.event == SERIES_ADD else 1 for ev in events]
        if (
            min(counts) < -MAX_EVENT_N
            or max(counts) > MAX_EVENT_N
            or max(ev.ts for ev in events) > now_s + self.max_future_s
        ):
            return False
        oldest = {name: d.windows.oldest_kept_start(now_s) for name, d in definitions.items() if d is not None}
        if any(ev.ts < oldest[ev.series] for ev in events):
            return False
        keys = self._series_keys(events, definitions)
        if keys is None:
            return False
        known = cast(dict[str, SeriesDef], definitions)
        out.series += [
            (ev.event, known[ev.series], ev.node, ev.ts, key, count)
            for ev, key, count in zip(events, keys, counts, strict=True)
        ]
        return True

    def _series_keys(
        self, events: list[_WireSeriesEvent], definitions: dict[str, SeriesDef | None]
    ) -> list[int | str] | None:
        """Each event's key as counted (truncated address, or the string), or None if one is bad."""
        families = [cast(SeriesDef, definitions[ev.series]).family for ev in events]
        texts = [ev.key for ev in events]
        if None in families and any(
            not 0 < len(t) <= MAX_SERIES_KEY_CHARS for t, f in zip(texts, families, strict=True) if f is None
        ):
            return None
        if set(families) == {None}:
            return cast(list[int | str], texts)
        addresses = self._addresses([t for t, f in zip(texts, families, strict=True) if f is not None])
        if addresses is None:
            return None
        found = iter(addresses)
        keys: list[int | str] = []
        for ev, text, family in zip(events, texts, families, strict=True):
            if family is None:
                keys.append(text)
                continue
            address_family, address = next(found)
            if address_family != family:
                return None
            keys.append(cast(SeriesDef, definitions[ev.series]).truncate(address))
        return keys

    def _accept_series(self, ev: dict[str, Any], out: DecodedBatch, now_s: float) -> bool:
        """Append the common valid series event and return True; anything it has doubts about
        (False) goes to ``series_event``, the authority that also words rejections."""
        get = ev.get
        fields: list[Any] = [get("node"), get("ts"), get("key"), get("event"), get("series")]
        node, ts, key, kind, name = fields
        count = get("count", 1) if kind == SERIES_ADD else 1
        definition = self.series(name) if type(name) is str else None
        if definition is None or type(node) is not str or not 0 < len(node) <= MAX_NODE_CHARS:
            return False
        tts = type(ts)
        if type(key) is not str or type(count) is not int or not -MAX_EVENT_N <= count <= MAX_EVENT_N:
            return False
        size = definition.interval
        if not (tts is int or (tts is float and ts - ts == 0.0)):
            return False
        if not math.floor(now_s / size) * size - (definition.num_windows - 1) * size <= ts <= now_s + self.max_future_s:
            return False
        family = definition.family
        if family is None:
            if not 0 < len(key) <= MAX_SERIES_KEY_CHARS:
                return False
            out.series.append((kind, definition, node, float(ts), key, count))
            return True
        found = self.ip_parser.get(key)
        if found is None:
            try:
                found = self.ip_parser.parse(key)
            except ValueError:
                return False
        if found[0] != family:
            return False
        out.series.append((kind, definition, node, float(ts), definition.truncate(found[1]), count))
        return True

    def series_event(self, ev: dict[str, Any], single_raw: bytes | None, out: DecodedBatch, now_s: float) -> None:
        """Append one series event (already pruned) to ``out.series``, or reject it."""
        judged = self._series_problem(ev, now_s)
        if type(judged) is tuple and len(judged) == 2:
            value = single_raw if single_raw is not None else _dumps(ev)
            out.rejected.append(Rejection(judged[0], judged[1], value))
        else:
            out.series.append(cast(SeriesOp, judged))

    def _series_problem(self, ev: dict[str, Any], now_s: float) -> tuple[str, str] | SeriesOp:
        """``(reason, detail)`` of the first failing series check, or the accepted operation."""
        missing = [name for name in _SERIES_REQUIRED if name not in ev]
        if missing:
            names = ", ".join(repr(name) for name in missing)
            return "missing_field", f"missing required field{'s' if len(missing) > 1 else ''} {names}"
        node, ts, name, key, kind = ev["node"], ev["ts"], ev["series"], ev["key"], ev["event"]
        if type(node) is not str or not 0 < len(node) <= MAX_NODE_CHARS:
            return "invalid_field", f"field 'node' must be a string of 1-{MAX_NODE_CHARS} characters, got {_show(node)}"
        if not (type(ts) is int or (type(ts) is float and math.isfinite(ts))):
            return "invalid_field", f"field 'ts' must be a finite number of Unix seconds, got {_show(ts)}"
        if type(name) is not str:
            return "invalid_field", f"field 'series' must be a string, got {_show(name)}"
        if type(key) is not str:
            return "invalid_field", f"field 'key' must be a string, got {_show(key)}"
        count = ev.get("count", 1) if kind == SERIES_ADD else 1
        if type(count) is not int or abs(count) > MAX_EVENT_N:
            return (
                "invalid_field",
                f"field 'count' must be an integer from -{MAX_EVENT_N} to {MAX_EVENT_N}, got {_show(count)}",
            )
        definition = self.series(name)
        if definition is None:
            return "unknown_series", f"series {_show(name)} is not defined"
        counted_key: int | str = key
        if definition.family is None:
            if not 0 < len(key) <= MAX_SERIES_KEY_CHARS:
                return (
                    "invalid_key",
                    f"key of string series {name!r} must have 1-{MAX_SERIES_KEY_CHARS} characters, got {_show(key)}",
                )
        else:
            try:
                family, addr = self.ip_parser(key)
            except ValueError:
                family, addr = 0, 0
            if family != definition.family:
                return (
                    "invalid_key",
                    f"key of {definition.type} series {name!r} must be an IPv{definition.family} address,"
                    f" got {_show(key)}",
                )
            counted_key = definition.truncate(addr)
        windows = definition.windows
        oldest = windows.oldest_kept_start(now_s)
        if ts < oldest:
            return (
                "too_late",
                f"ts {ts} is older than every window series {name!r} keeps (the oldest starts at {oldest})",
            )
        if ts > now_s + self.max_future_s:
            return (
                "future_timestamp",
                f"ts {ts} is more than {self.max_future_s:g} s ahead of the reference time {now_s}",
            )
        return (kind, definition, node, float(ts), counted_key, count)

    def _problem(self, ev: Any, now_s: float, oldest: float) -> tuple[str, str] | None:
        """``(reason, detail)`` of the first failing check, or None if the event is valid."""
        if type(ev) is not dict:
            return "not_an_object", f"event must be a JSON object, got {_json_type(ev)} {_show(ev)}"
        missing = [name for name in _REQUIRED if name not in ev]
        if missing:
            names = ", ".join(repr(name) for name in missing)
            return "missing_field", f"missing required field{'s' if len(missing) > 1 else ''} {names}"
        node, ts, ip, name = ev["node"], ev["ts"], ev["ip"], ev["event"]
        if type(node) is not str or not 0 < len(node) <= MAX_NODE_CHARS:
            return (
                "invalid_field",
                f"field 'node' must be a string of 1-{MAX_NODE_CHARS} characters, got {_show(node)}",
            )
        if not (type(ts) is int or (type(ts) is float and math.isfinite(ts))):
            return "invalid_field", f"field 'ts' must be a finite number of Unix seconds, got {_show(ts)}"
        if type(ip) is not str:
            return "invalid_field", f"field 'ip' must be a string, got {_show(ip)}"
        if type(name) is not str:
            return "invalid_field", f"field 'event' must be a string, got {_show(name)}"
        code = _CODES.get(name)
        windowed = code is not None and code < _FIRST_SESSION_CODE
        if windowed and "n" in ev:
            n = ev["n"]
            if type(n) is not int or not 1 <= n <= MAX_EVENT_N:
                return (
                    "invalid_field",
                    f"field 'n' must be an integer from 1 to {MAX_EVENT_N}, got {_show(n)}",
                )
        if code is not None and not windowed and "service" in ev and type(ev["service"]) is not str:
            return "invalid_field", f"field 'service' must be a string, got {_show(ev['service'])}"
        try:
            self.ip_parser(ip)
        except ValueError:
            return "invalid_ip", f"field 'ip' is not a valid IPv4 or IPv6 address: {_show(ip)}"
        if code is None:
            return "unknown_event", f"unknown event {_show(name)}; expected one of {', '.join(EVENT_NAMES)}"
        if windowed:
            if ts < oldest:
                return "too_late", f"ts {ts} is older than every kept window (the oldest starts at {oldest})"
            latest = now_s + self.max_future_s
            if ts > latest:
                return (
                    "future_timestamp",
                    f"ts {ts} is more than {self.max_future_s:g} s ahead of the reference time {now_s}",
                )
        return None


def _prune(value: Any, depth: int) -> Any:
    """``value`` with the arrays and objects nested more than ``depth`` levels inside it as None."""
    kind = type(value)
    if kind is dict:
        return {k: _prune(v, depth - 1) for k, v in value.items()} if depth > 0 else None
    if kind is list:
        return [_prune(v, depth - 1) for v in value] if depth > 0 else None
    return value


def loads_any_depth(raw: bytes) -> Any:
    """``orjson.loads``, or ``deep_loads`` for a message nested deeper than orjson allows."""
    try:
        return _loads(raw)
    except _JSONDecodeError as exc:
        if not str(exc).startswith(_DEPTH_ERROR):
            raise
    return deep_loads(raw, MAX_KEPT_DEPTH + 2)


def invalid_json_detail(raw: bytes) -> str | None:
    """The ``invalid_json`` detail the decoder gives ``raw``, or None if ``raw`` is JSON to it."""
    try:
        loads_any_depth(raw)
    except ValueError as exc:
        return f"value is not UTF-8 JSON: {exc}"
    return None


class _Frame:
    """One open array or object of ``deep_loads``: its container (None once pruned) and pending key."""

    __slots__ = ("is_object", "container", "key")

    def __init__(self, is_object: bool, keep: bool) -> None:
        self.is_object = is_object
        self.container: Any = ({} if is_object else []) if keep else None
        self.key: Any = None

    def add(self, value: Any) -> None:
        if self.container is None:
            return
        if self.is_object:
            self.container[self.key] = value
        else:
            self.container.append(value)


def deep_loads(raw: bytes, keep_levels: int, scalar: Callable[[bytes], Any] = _loads) -> Any:
    """orjson's JSON syntax at any depth; containers below ``keep_levels`` levels become None.

    An explicit stack instead of recursion; each scalar value token is parsed by ``scalar``
    (orjson itself by default, so strings, numbers and literals mean exactly what they mean to
    ``orjson.loads``). Raises ``ValueError`` naming the character where the syntax breaks.
    """
    stack: list[_Frame] = []
    pos = 0
    expect = "value"  # value | value_or_close | key | key_or_close | colon | comma_or_close
    while True:
        match = _TOKEN.match(raw, pos)
        if match is None:
            raise ValueError(f"invalid JSON at char {pos} (nested deeper than 1024 levels)")
        string, other, punct = match.group(1, 2, 3)
        at, pos = match.start(match.lastindex or 0), match.end()
        if string is not None and expect in ("key", "key_or_close"):
            stack[-1].key = _loads(string)
            expect = "colon"
            continue
        if punct == b":" and expect == "colon":
            expect = "value"
        elif punct == b"," and expect == "comma_or_close":
            expect = "key" if stack[-1].is_object else "value"
        elif punct in (b"[", b"{") and expect in ("value", "value_or_close"):
            stack.append(_Frame(punct == b"{", len(stack) < keep_levels))
            expect = "key_or_close" if punct == b"{" else "value_or_close"
        else:
            if punct is not None and expect in _CLOSERS.get((punct, stack[-1].is_object if stack else None), ()):
                value = stack.pop().container
            elif (string or other) is not None and expect in ("value", "value_or_close"):
                value = scalar(string or other)
            else:
                raise ValueError(f"invalid JSON at char {at} (nested deeper than 1024 levels)")
            if not stack:
                break
            stack[-1].add(value)
            expect = "comma_or_close"
    if raw[pos:].strip(_WHITESPACE):
        raise ValueError(f"unexpected content after document at char {pos} (nested deeper than 1024 levels)")
    return value


def dead_letter_record(rejection: Rejection, source_topic: str, partition: int, offset: int) -> dict[str, Any]:
    """SPEC section 6 dead-letter value; ``value`` is the first 4 KiB of the original as text.

    Invalid UTF-8 becomes U+FFFD; a character cut in half by the 4 KiB limit is dropped.
    """
    head = rejection.value[:DEAD_LETTER_VALUE_BYTES]
    text = codecs.getincrementaldecoder("utf-8")("replace").decode(head, final=len(head) == len(rejection.value))
    return {
        "reason": rejection.reason,
        "detail": rejection.detail,
        "source_topic": source_topic,
        "partition": partition,
        "offset": offset,
        "value": text,
    }
