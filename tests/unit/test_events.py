"""Event validation (SPEC section 3): every reason, batches, boundaries, and a reference model."""

from __future__ import annotations

import ipaddress
import math
from typing import Any

import orjson
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pipeline.core.cidr import IpParser
from pipeline.core.events import (
    MAX_BATCH_EVENTS,
    MAX_EVENT_N,
    MAX_KEPT_DEPTH,
    MAX_MESSAGE_BYTES,
    DecodedBatch,
    EventDecoder,
    Rejection,
    dead_letter_record,
    deep_loads,
    invalid_json_detail,
)

NOW = 1_700_000_000.0
OLDEST = NOW - 7200.0
FUTURE = 300.0


def _ev(**fields: Any) -> dict[str, Any]:
    event = {"node": "mx1", "ts": NOW - 10, "ip": "10.0.0.1", "event": "connection"}
    event.update(fields)
    return {k: v for k, v in event.items() if v is not _DROP}


_DROP = object()


def _decode(value: Any, **kwargs: Any) -> DecodedBatch:
    raw = value if isinstance(value, bytes) else orjson.dumps(value)
    return EventDecoder(max_future_s=FUTURE).decode(raw, now_s=NOW, oldest_kept_s=OLDEST, **kwargs)


def _reasons(batch: DecodedBatch) -> list[str]:
    return [r.reason for r in batch.rejected]


def _one_rejection(value: Any) -> Rejection:
    batch = _decode(value)
    assert not batch.node and not batch.sessions
    assert len(batch.rejected) == 1
    return batch.rejected[0]


# --- accepted events --------------------------------------------------------------------------


def test_single_windowed_event() -> None:
    batch = _decode(_ev(event="reception", ts=NOW - 1.5, n=3, extra={"x": [1]}))
    assert batch.node == ["mx1"]
    assert batch.ts == [NOW - 1.5]
    assert (batch.family, batch.addr, batch.metric, batch.n) == ([4], [0x0A000001], [1], [3])
    assert batch.sessions == [] and batch.rejected == []


def test_metric_codes_and_n_default() -> None:
    batch = _decode([_ev(event=name) for name in ("connection", "reception", "rejection")])
    assert batch.metric == [0, 1, 2]
    assert batch.n == [1, 1, 1]


def test_ipv6_and_mapped_ipv4() -> None:
    batch = _decode([_ev(ip="2001:db8::5"), _ev(ip="::ffff:10.0.0.9"), _ev(ip="::FFFF:0a00:0009")])
    assert batch.family == [6, 4, 4]
    assert batch.addr == [0x20010DB8 << 96 | 5, 0x0A000009, 0x0A000009]


def test_integer_ts_and_large_n() -> None:
    batch = _decode(_ev(ts=int(NOW), n=MAX_EVENT_N))
    assert batch.ts == [int(NOW)] and batch.n == [MAX_EVENT_N]


def test_session_events() -> None:
    batch = _decode(
        [
            _ev(event="session_open", ip="2001:db8::1"),
            _ev(event="session_close", service="IMAP", ip="::ffff:1.2.3.4"),
            _ev(event="node_reset", ip="0.0.0.0", node="mx2"),
        ]
    )
    assert batch.sessions == [
        ("open", "mx1", 6, 0x20010DB8 << 96 | 1, "SMTP"),
        ("close", "mx1", 4, 0x01020304, "IMAP"),
        ("reset", "mx2", 4, 0, "SMTP"),
    ]
    assert batch.node == [] and batch.rejected == []


def test_session_events_ignore_n_and_time_rules() -> None:
    batch = _decode(
        [
            _ev(event="session_open", n=0),
            _ev(event="session_close", n="x", ts=0),
            _ev(event="node_reset", ts=NOW + 10 * FUTURE),
        ]
    )
    assert [s[0] for s in batch.sessions] == ["open", "close", "reset"]
    assert batch.rejected == []


def test_windowed_events_ignore_service() -> None:
    assert _decode(_ev(service=5)).n == [1]


def test_empty_array_is_nothing() -> None:
    assert _decode([]) == DecodedBatch()


def test_into_accumulates() -> None:
    decoder = EventDecoder()
    batch = decoder.decode(orjson.dumps(_ev(node="a")), now_s=NOW, oldest_kept_s=OLDEST)
    same = decoder.decode(orjson.dumps([_ev(node="b"), 7]), now_s=NOW, oldest_kept_s=OLDEST, into=batch)
    decoder.decode(b"{", now_s=NOW, oldest_kept_s=OLDEST, into=batch)
    assert same is batch
    assert batch.node == ["a", "b"]
    assert _reasons(batch) == ["not_an_object", "invalid_json"]


def test_mixed_batch_keeps_good_events_in_order() -> None:
    events = [
        _ev(node="a"),
        _ev(node="b", ip="1.2.3"),
        _ev(node="c", event="reception"),
        42,
        _ev(node="d", ts=True),
        _ev(node="e", event="session_open"),
        _ev(node="f", ts=NOW + FUTURE + 1),
        _ev(node="g", ip="2001:db8::1"),
    ]
    batch = _decode(events)
    assert batch.node == ["a", "c", "g"]
    assert batch.metric == [0, 1, 0]
    assert batch.family == [4, 4, 6]
    assert [s[1] for s in batch.sessions] == ["e"]
    assert _reasons(batch) == ["invalid_ip", "not_an_object", "invalid_field", "future_timestamp"]
    assert orjson.loads(batch.rejected[0].value) == events[1]
    assert batch.rejected[1].value == b"42"


# --- whole-message reasons ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [b"", b"{", b"not json", b"\xff\xfe{}", b'{"node": "\xe9"}', b"NaN", b"[1e400]", b'"\\ud800"', b"\xef\xbb\xbf{}"],
)
def test_invalid_json(raw: bytes) -> None:
    rejection = _one_rejection(raw)
    assert rejection.reason == "invalid_json"
    assert rejection.value == raw


def test_tombstone_is_invalid_json() -> None:
    batch = EventDecoder().decode(None, now_s=NOW, oldest_kept_s=OLDEST)
    assert _reasons(batch) == ["invalid_json"]


@pytest.mark.parametrize("doc", [5, 1.5, "text", True, None])
def test_top_level_not_an_object(doc: Any) -> None:
    raw = orjson.dumps(doc)
    rejection = _one_rejection(raw)
    assert rejection.reason == "not_an_object"
    assert rejection.value == raw
    assert raw.decode() in rejection.detail


@pytest.mark.parametrize("item", [5, "x", None, True, [], [_ev()]])
def test_array_item_not_an_object(item: Any) -> None:
    batch = _decode([item, _ev()])
    assert batch.node == ["mx1"]
    assert _reasons(batch) == ["not_an_object"]
    assert batch.rejected[0].value == orjson.dumps(item)


def test_batch_event_limit() -> None:
    assert len(_decode([_ev()] * MAX_BATCH_EVENTS).node) == MAX_BATCH_EVENTS
    raw = orjson.dumps([_ev()] * (MAX_BATCH_EVENTS + 1))
    rejection = _one_rejection(raw)
    assert rejection.reason == "batch_too_large"
    assert rejection.value == raw
    assert "10001" in rejection.detail


def _padded(size: int) -> bytes:
    raw = orjson.dumps(_ev(pad=""))
    raw = raw.replace(b'"pad":""', b'"pad":"' + b"x" * (size - len(raw)) + b'"')
    assert len(raw) == size
    return raw


def test_message_byte_limit() -> None:
    assert _decode(_padded(MAX_MESSAGE_BYTES)).node == ["mx1"]
    rejection = _one_rejection(_padded(MAX_MESSAGE_BYTES + 1))
    assert rejection.reason == "batch_too_large"
    assert str(MAX_MESSAGE_BYTES + 1) in rejection.detail


def test_message_byte_limit_applies_before_parsing() -> None:
    assert _one_rejection(b"x" * (MAX_MESSAGE_BYTES + 1)).reason == "batch_too_large"


# --- per-event reasons --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "reason", "in_detail"),
    [
        (_ev(node=_DROP), "missing_field", "'node'"),
        (_ev(ts=_DROP), "missing_field", "'ts'"),
        (_ev(ip=_DROP), "missing_field", "'ip'"),
        (_ev(event=_DROP), "missing_field", "'event'"),
        ({}, "missing_field", "'node', 'ts', 'ip', 'event'"),
        (_ev(node=""), "invalid_field", "field 'node'"),
        (_ev(node="x" * 256), "invalid_field", "field 'node'"),
        (_ev(node=5), "invalid_field", "got 5"),
        (_ev(node=None), "invalid_field", "got null"),
        (_ev(ts=True), "invalid_field", "field 'ts' must be a finite number of Unix seconds, got true"),
        (_ev(ts="1700000000"), "invalid_field", 'got "1700000000"'),
        (_ev(ts=None), "invalid_field", "field 'ts'"),
        (_ev(ip=167772161), "invalid_field", "field 'ip' must be a string, got 167772161"),
        (_ev(event=1), "invalid_field", "field 'event' must be a string, got 1"),
        (_ev(n=0), "invalid_field", f"field 'n' must be an integer from 1 to {MAX_EVENT_N}, got 0"),
        (_ev(n=-1), "invalid_field", "got -1"),
        (_ev(n=True), "invalid_field", "got true"),
        (_ev(n=1.0), "invalid_field", "got 1.0"),
        (_ev(n="2"), "invalid_field", 'got "2"'),
        (_ev(n=None), "invalid_field", "got null"),
        (_ev(n=MAX_EVENT_N + 1), "invalid_field", str(MAX_EVENT_N + 1)),
        (_ev(event="session_open", service=5), "invalid_field", "field 'service' must be a string, got 5"),
        (_ev(event="node_reset", service=None), "invalid_field", "field 'service'"),
        (_ev(ip="1.2.3"), "invalid_ip", '"1.2.3"'),
        (_ev(ip="01.2.3.4"), "invalid_ip", '"01.2.3.4"'),
        (_ev(ip=" 10.0.0.1"), "invalid_ip", '" 10.0.0.1"'),
        (_ev(ip="10.0.0.1\n"), "invalid_ip", "10.0.0.1"),
        (_ev(ip="fe80::1%eth0"), "invalid_ip", '"fe80::1%eth0"'),
        (_ev(ip=""), "invalid_ip", '""'),
        (_ev(ip="10.0.0.0/8"), "invalid_ip", "10.0.0.0/8"),
        (_ev(event="node_reset", ip="none"), "invalid_ip", '"none"'),
        (_ev(event="Connection"), "unknown_event", '"Connection"'),
        (_ev(event="bogus"), "unknown_event", "expected one of connection, reception"),
        (_ev(ts=OLDEST - 0.001), "too_late", str(OLDEST - 0.001)),
        (_ev(ts=-1), "too_late", "ts -1"),
        (_ev(ts=NOW + FUTURE + 0.001), "future_timestamp", str(NOW + FUTURE + 0.001)),
        (_ev(ts=1e300), "future_timestamp", "1e+300"),
    ],
)
def test_event_reasons(event: dict[str, Any], reason: str, in_detail: str) -> None:
    for value in (event, [event]):
        rejection = _one_rejection(value)
        assert (rejection.reason, in_detail in rejection.detail) == (reason, True), rejection.detail
        assert orjson.loads(rejection.value) == event


def test_single_object_rejection_keeps_original_bytes() -> None:
    raw = b'{ "node": "mx1", "ts": 1, "ip": "10.0.0.1", "event": "connection" }'
    assert _one_rejection(raw).value == raw


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (_ev(node=_DROP, ts="x", ip="bad", event="bogus"), "missing_field"),
        (_ev(node="", ts="x", ip="bad", event="bogus"), "invalid_field"),
        (_ev(ts="x", ip=5, event="bogus"), "invalid_field"),
        (_ev(ip="bad", n=0), "invalid_field"),
        (_ev(ip="bad", event="bogus", ts=0), "invalid_ip"),
        (_ev(event="bogus", ts=0, n=0, service=5), "unknown_event"),
        (_ev(event="bogus", ts=NOW + 10 * FUTURE), "unknown_event"),
    ],
)
def test_check_order(event: dict[str, Any], reason: str) -> None:
    assert _one_rejection(event).reason == reason


def test_node_length_boundaries() -> None:
    assert _decode([_ev(node="x"), _ev(node="é" * 255)]).node == ["x", "é" * 255]


def test_time_rules_at_exact_boundaries() -> None:
    batch = _decode([_ev(ts=OLDEST), _ev(ts=NOW + FUTURE), _ev(ts=int(OLDEST)), _ev(ts=int(NOW + FUTURE))])
    assert len(batch.node) == 4 and batch.rejected == []
    assert _reasons(_decode([_ev(ts=math.nextafter(OLDEST, 0)), _ev(ts=math.nextafter(NOW + FUTURE, math.inf))])) == [
        "too_late",
        "future_timestamp",
    ]


def test_max_future_is_configurable() -> None:
    decoder = EventDecoder(max_future_s=0.0)
    raw = orjson.dumps([_ev(ts=NOW), _ev(ts=NOW + 0.5)])
    batch = decoder.decode(raw, now_s=NOW, oldest_kept_s=OLDEST)
    assert batch.ts == [NOW] and _reasons(batch) == ["future_timestamp"]


def test_shared_ip_parser_is_used() -> None:
    parser = IpParser()
    EventDecoder(parser).decode(orjson.dumps(_ev(ip="10.9.9.9")), now_s=NOW, oldest_kept_s=OLDEST)
    assert parser.get("10.9.9.9") == (4, 0x0A090909)


# --- dead-letter record ---------------------------------------------------------------------------


def test_dead_letter_record() -> None:
    rejection = Rejection("invalid_ip", "field 'ip' ...", b'{"ip":"x"}')
    assert dead_letter_record(rejection, "mta.events", 3, 17) == {
        "reason": "invalid_ip",
        "detail": "field 'ip' ...",
        "source_topic": "mta.events",
        "partition": 3,
        "offset": 17,
        "value": '{"ip":"x"}',
    }


def test_dead_letter_value_is_truncated_and_decoded() -> None:
    value = b"\xff" + "é".encode() * 5000
    text = dead_letter_record(Rejection("invalid_json", "d", value), "t", 0, 0)["value"]
    assert text.startswith("\ufffdé")
    assert len(text.encode()) <= 4096 + 2
    assert "\ufffd" not in text[1:]
    assert dead_letter_record(Rejection("invalid_json", "d", b"ab\xc3"), "t", 0, 0)["value"] == "ab\ufffd"


# --- reference model ----------------------------------------------------------------------------------


def _reference_ip(text: str) -> tuple[int, int] | None:
    """Independent model of the address rules, with the stdlib."""
    if not text.isascii() or text != text.strip() or "%" in text:
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return 4, int(address.ipv4_mapped)
    return address.version, int(address)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _reference(event: Any) -> tuple[str, Any]:
    """Expected outcome: ("windowed", row), ("session", op) or ("rejected", reason)."""
    if not isinstance(event, dict):
        return "rejected", "not_an_object"
    if any(name not in event for name in ("node", "ts", "ip", "event")):
        return "rejected", "missing_field"
    node, ts, ip, name = event["node"], event["ts"], event["ip"], event["event"]
    windowed = name in ("connection", "reception", "rejection")
    session = name in ("session_open", "session_close", "node_reset")
    n = event.get("n", 1)
    service = event.get("service", "SMTP")
    if (
        not (isinstance(node, str) and 1 <= len(node) <= 255)
        or not _is_number(ts)
        or not isinstance(ip, str)
        or not isinstance(name, str)
        or (windowed and not (isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 2**31 - 1))
        or (session and not isinstance(service, str))
    ):
        return "rejected", "invalid_field"
    parsed = _reference_ip(ip)
    if parsed is None:
        return "rejected", "invalid_ip"
    if windowed:
        if ts < OLDEST:
            return "rejected", "too_late"
        if ts > NOW + FUTURE:
            return "rejected", "future_timestamp"
        metric = ("connection", "reception", "rejection").index(name)
        return "windowed", (node, ts, parsed[0], parsed[1], metric, n)
    if session:
        kind = {"session_open": "open", "session_close": "close", "node_reset": "reset"}[name]
        return "session", (kind, node, parsed[0], parsed[1], service)
    return "rejected", "unknown_event"


_NAMES = ("connection", "reception", "rejection", "session_open", "session_close", "node_reset")
_valid_v4 = st.integers(0, 2**32 - 1).map(lambda v: str(ipaddress.IPv4Address(v)))
_valid_v6 = (
    st.integers(0, 2**128 - 1)
    .map(ipaddress.IPv6Address)
    .flatmap(lambda a: st.sampled_from([str(a), a.exploded, str(a).upper()]))
)
_mapped = st.integers(0, 2**32 - 1).map(lambda v: f"::ffff:{ipaddress.IPv4Address(v)}")
_ANY_JSON = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=5),
    st.lists(st.integers(-5, 5), max_size=2),
)
_GOOD = {
    "node": st.one_of(st.sampled_from(["mx1", "mx2", "n" * 255]), st.text(min_size=1, max_size=8)),
    "ts": st.one_of(
        st.floats(OLDEST, NOW + FUTURE),
        st.integers(int(OLDEST) + 1, int(NOW + FUTURE)),
        st.sampled_from([OLDEST, NOW + FUTURE]),
    ),
    "ip": st.one_of(_valid_v4, _valid_v6, _mapped),
    "event": st.sampled_from(_NAMES),
    "n": st.integers(1, 2**31 - 1),
    "service": st.sampled_from(["SMTP", "IMAP", ""]),
    "extra": _ANY_JSON,
}
_BAD = {
    "node": st.sampled_from(["", "n" * 256]),
    "ts": st.one_of(
        st.floats(OLDEST - 1e6, NOW + 1e6),
        st.sampled_from(
            [math.nextafter(OLDEST, 0), math.nextafter(NOW + FUTURE, math.inf), NOW + FUTURE + 1, -1, 1e300, True]
        ),
    ),
    "ip": st.sampled_from(
        ["", "1.2.3", "01.2.3.4", "256.0.0.1", " 1.2.3.4", "1.2.3.4\n", "fe80::1%eth0", "::g", "[::1]", "x"]
    ),
    "event": st.sampled_from(["Connection", "bogus", ""]),
    "n": st.sampled_from([0, -3, 2**31, 1.0, True, "2"]),
    "service": st.sampled_from([5, True]),
    "extra": _ANY_JSON,
}


@st.composite
def _events(draw: st.DrawFn) -> Any:
    """A valid event, then zero to two corruptions (drop a field, or a bad or random value)."""
    event = {name: draw(_GOOD[name]) for name in ("node", "ts", "ip", "event")}
    for name in ("n", "service", "extra"):
        if draw(st.booleans()):
            event[name] = draw(_GOOD[name])
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 1, 2]))):
        name = draw(st.sampled_from(sorted(_GOOD)))
        how = draw(st.sampled_from(["drop", "bad", "bad", "any"]))
        if how == "drop":
            event.pop(name, None)
        else:
            event[name] = draw(_BAD[name] if how == "bad" else _ANY_JSON)
    return event


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_events(), _events(), _events(), _ANY_JSON), max_size=30))
def test_matches_reference(events: list[Any]) -> None:
    batch = _decode(events)
    expected = [_reference(orjson.loads(orjson.dumps(event))) for event in events]
    rows = list(zip(batch.node, batch.ts, batch.family, batch.addr, batch.metric, batch.n, strict=True))
    assert rows == [value for kind, value in expected if kind == "windowed"]
    assert batch.sessions == [value for kind, value in expected if kind == "session"]
    assert _reasons(batch) == [value for kind, value in expected if kind == "rejected"]


def _expected_of(raw: bytes) -> tuple[list[Any], list[Any], list[str]]:
    """The reference's (windowed rows, session ops, reasons) for one raw message."""
    try:
        items = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return [], [], ["invalid_json"]
    if not isinstance(items, list):
        return ([], [], ["not_an_object"]) if not isinstance(items, dict) else _expected_of(orjson.dumps([items]))
    expected = [_reference(item) for item in items]
    rows, sessions, reasons = ([value for kind, value in expected if kind == wanted] for wanted in _KINDS)
    return rows, sessions, reasons


_KINDS = ("windowed", "session", "rejected")


def _outcome(batch: DecodedBatch) -> tuple[list[Any], list[Any], list[str]]:
    rows = list(zip(batch.node, batch.ts, batch.family, batch.addr, batch.metric, batch.n, strict=True))
    return rows, batch.sessions, _reasons(batch)


@st.composite
def _valid_events(draw: st.DrawFn) -> dict[str, Any]:
    """A valid event with only the fields the typed fast path knows."""
    event = {name: draw(_GOOD[name]) for name in ("node", "ts", "ip", "event")}
    for name in ("n", "service"):
        if draw(st.booleans()):
            event[name] = draw(_GOOD[name])
    return event


@settings(max_examples=300, deadline=None)
@given(st.lists(_valid_events(), min_size=1, max_size=40))
def test_valid_arrays_take_the_typed_path(events: list[dict[str, Any]]) -> None:
    raw = orjson.dumps(events)
    batch = DecodedBatch()
    assert EventDecoder(max_future_s=FUTURE)._decode_array(raw, batch, NOW, OLDEST)
    assert _outcome(batch) == _expected_of(raw)


@settings(max_examples=300, deadline=None)
@given(st.lists(_valid_events(), max_size=20), st.integers(0, 20), st.one_of(_events(), _ANY_JSON))
def test_one_bad_event_falls_back_without_losing_the_rest(events: list[Any], at: int, bad: Any) -> None:
    """The typed path is all-or-nothing: one rejected event sends the whole array to the authority."""
    assume(_reference(orjson.loads(orjson.dumps(bad)))[0] == "rejected")
    events.insert(min(at, len(events)), bad)
    raw = orjson.dumps(events)
    rows, sessions, reasons = _outcome(_decode(raw))
    assert len(reasons) == 1 and len(rows) + len(sessions) == len(events) - 1
    assert (rows, sessions, reasons) == _expected_of(raw)


_GOOD_FIELDS = '"node":"mx1","ip":"10.0.0.1","event":"connection"'


@pytest.mark.parametrize(
    "raw",
    [
        f'[{{{_GOOD_FIELDS},"ts":{NOW},"node":"mx2"}}]',  # duplicate key: the last one wins
        f'[{{"n\\u006fde":"mx1","ip":"10.0.0.1","event":"connection","ts":{NOW}}}]',  # escaped key
        f'[{{"node":"\\ud83d\\ude00","ip":"10.0.0.1","event":"connection","ts":{NOW}}}]',
        f'[{{"node":"\\ud83d","ip":"10.0.0.1","event":"connection","ts":{NOW}}}]',  # lone surrogate
        f'[{{"node":"a\\u0000","ip":"10.0.0.1","event":"connection","ts":{NOW}}}]',
        f'[{{{_GOOD_FIELDS},"ts":1.7e9}}]',
        f'[{{{_GOOD_FIELDS},"ts":{int(NOW)},"n":2147483647}}]',
        f'[{{{_GOOD_FIELDS},"ts":{NOW},"n":2147483648}}]',
        f'[{{{_GOOD_FIELDS},"ts":{NOW},"n":18446744073709551616}}]',
        f'[{{{_GOOD_FIELDS},"ts":{NOW},"n":1000000000000000000000000000000}}]',
        f'[{{{_GOOD_FIELDS},"ts":{NOW},"n":1e0}}]',
        f'[{{{_GOOD_FIELDS},"ts":{NOW},"n":-0}}]',
        f'[{{{_GOOD_FIELDS},"ts":1e400}}]',
        f'[{{{_GOOD_FIELDS},"ts":{NOW},"service":null}}]',
        '[{"node":"mx1","ip":"10.0.0.1","event":"session_open","ts":18446744073709551617}]',
        '[{"node":"mx1","ip":"10.0.0.1","event":"session_open","ts":-0.0,"n":"x"}]',
        f'[{{{_GOOD_FIELDS},"ts":{NOW},"extra":{"[" * 1000 + "]" * 1000}}}]',
        f'  [{{{_GOOD_FIELDS},"ts":{NOW}}}] \n',
        f'[{{{_GOOD_FIELDS},"ts":{NOW}}}]x',
        f'[{{{_GOOD_FIELDS},"ts":{NOW}}},]',
        "[]",
        b'[{"node":"\xed\xa0\x80","ip":"10.0.0.1","event":"connection","ts":1.7e9}]',  # UTF-8 surrogate
        b'[{"node":"\xff","ip":"10.0.0.1","event":"connection","ts":1.7e9}]',
        # Unknown fields take the orjson path: msgspec skips them without orjson's checks.
        f'[{{{_GOOD_FIELDS},"ts":{NOW},"extra":1e400}}]',
        f'[{{{_GOOD_FIELDS},"ts":{NOW},"extra":"\xff"}}]'.encode("latin-1"),
    ],
)
def test_raw_edge_cases_agree_with_the_reference(raw: str | bytes) -> None:
    data = raw.encode() if isinstance(raw, str) else raw
    assert _outcome(_decode(data)) == _expected_of(data)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(_valid_events(), min_size=1, max_size=5),
    st.lists(st.tuples(st.integers(0, 10_000), st.binary(min_size=0, max_size=3)), min_size=1, max_size=3),
)
def test_corrupted_bytes_never_raise_and_agree_with_the_reference(
    events: list[dict[str, Any]], edits: list[tuple[int, bytes]]
) -> None:
    """Splice random bytes into a valid array: whatever comes out must match the reference."""
    data = orjson.dumps(events)
    for at, chunk in edits:
        at %= len(data)
        data = data[:at] + chunk + data[at + 1 :]
    assert _outcome(_decode(data)) == _expected_of(data)


# --- depth rule -----------------------------------------------------------------------------------


def _nested(depth: int, inner: str = "") -> str:
    return "[" * depth + inner + "]" * depth


@pytest.mark.parametrize("depth", [MAX_KEPT_DEPTH + 1, 1000, 2000, 100_000])
def test_deeply_nested_unknown_field_is_ignored(depth: int) -> None:
    raw = f'[{{{_GOOD_FIELDS},"ts":{NOW},"extra":{_nested(depth)}}}]'.encode()
    assert _decode(raw).node == ["mx1"] and _decode(raw).rejected == []


@pytest.mark.parametrize("depth", [300, 2000])
def test_rejected_event_shows_deep_values_as_null(depth: int) -> None:
    raw = f'[{{{_GOOD_FIELDS},"ts":-1,"extra":{_nested(depth)}}}]'.encode()
    rejection = _one_rejection(raw)
    assert rejection.reason == "too_late"
    assert orjson.loads(rejection.value)["extra"] == orjson.loads(_nested(MAX_KEPT_DEPTH - 1, "null"))


def test_deep_spec_field_is_an_invalid_field() -> None:
    rejection = _one_rejection(f'{{{_GOOD_FIELDS},"ts":{NOW},"ip":{_nested(3000)}}}'.encode())
    assert rejection.reason == "invalid_field"
    shown = _nested(MAX_KEPT_DEPTH - 1, "null")[:97] + "..."  # the event itself is the first level
    assert rejection.detail == "field 'ip' must be a string, got " + shown


@pytest.mark.parametrize(
    "inner", ["1,", "1 2", '{"a" 1}', '{"a":1,}', "}", '{"a":1]', '"\\ud800"', "1e400", "01", "tru", "[]]"]
)
def test_deep_syntax_errors_are_invalid_json(inner: str) -> None:
    raw = f'[{{{_GOOD_FIELDS},"ts":{NOW},"extra":{_nested(1100, inner)}}}]'.encode()
    assert _reasons(_decode(raw)) == ["invalid_json"]
    assert invalid_json_detail(raw) == _one_rejection(raw).detail


def test_deep_trailing_content_is_invalid_json() -> None:
    assert _reasons(_decode((_nested(1100) + " x").encode())) == ["invalid_json"]
    assert invalid_json_detail((_nested(1100) + " \n").encode()) is None


_JSON = st.recursive(
    _ANY_JSON,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(_JSON, st.sampled_from(["", " ", "\n\t"]))
def test_deep_loads_agrees_with_orjson(doc: Any, space: str) -> None:
    raw = orjson.dumps(doc, option=orjson.OPT_INDENT_2) if space else orjson.dumps(doc)
    assert deep_loads(raw + space.encode(), 1000) == orjson.loads(raw)
