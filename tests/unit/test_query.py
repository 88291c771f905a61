"""Request routing and validation: exact SPEC codes, and the contract's precedence among them."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from pipeline.core.counts import WindowedCounts
from pipeline.core.query import Unroutable, answer, parse_request, read_envelope, reply_error, reply_value
from pipeline.core.sessions import SessionGauge
from pipeline.core.windows import parse_monitors
from pipeline.errors import ERROR_CODES, AuditError

MONITORS = parse_monitors("60,1 300,6 1800,4")
BASE = {"id": "r1", "reply_to": "replies", "op": "connections", "monitor": "300,6", "cluster": True, "ip": "10.1.2.3"}


def code_of(**changes: Any) -> str:
    obj = {**BASE, **changes}
    obj = {k: v for k, v in obj.items() if v is not DROP}
    with pytest.raises(AuditError) as caught:
        parse_request(obj, MONITORS)
    return caught.value.code


DROP = object()


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"id": DROP}, "invalid_request"),
        ({"id": ""}, "invalid_request"),
        ({"id": "x" * 129}, "invalid_request"),
        ({"op": DROP}, "invalid_request"),
        ({"op": 3}, "invalid_request"),
        ({"op": None}, "invalid_request"),
        ({"op": ["connections"]}, "invalid_request"),
        ({"op": True}, "invalid_request"),
        ({"endv": True}, "invalid_request"),
        ({"endv": 2**70}, "window_out_of_range"),
        ({"startv": -(2**70)}, "invalid_range"),
        ({"startv": 2**70, "endv": 2**70}, "window_out_of_range"),
        ({"monitor": DROP}, "invalid_request"),
        ({"startv": 1.5}, "invalid_request"),
        ({"startv": True}, "invalid_request"),
        ({"cluster": "yes"}, "invalid_request"),
        ({"at": "now"}, "invalid_request"),
        ({"cidr": 24}, "invalid_request"),
        ({"op": "nope"}, "unknown_op"),
        ({"monitor": "300,7"}, "unknown_monitor"),
        ({"monitor": "banana"}, "unknown_monitor"),
        ({"startv": 2, "endv": 1}, "invalid_range"),
        ({"startv": -1}, "invalid_range"),
        ({"endv": 6}, "window_out_of_range"),
        ({"cluster": False}, "missing_node"),
        ({"cluster": DROP}, "missing_node"),
        ({"ip": DROP}, "missing_ip"),
        ({"cidr": "/24", "ip": DROP}, "missing_ip"),
        ({"cidr": "10.0.0.0/33"}, "invalid_cidr"),
        ({"cidr": "/129", "ip": "2001:db8::1"}, "invalid_cidr"),
        ({"ip": "10.0.0.256"}, "invalid_cidr"),
    ],
)
def test_each_code(changes: dict[str, Any], code: str) -> None:
    assert code_of(**changes) == code


def test_precedence_follows_the_contract_order() -> None:
    # Every later problem present at once; fixing the first reveals the next, in SPEC order.
    layers = [
        ({"id": DROP}, "invalid_request"),
        ({"op": "nope"}, "unknown_op"),
        ({"monitor": "1,1"}, "unknown_monitor"),
        ({"startv": -1}, "invalid_range"),
        ({"endv": 9}, "window_out_of_range"),
        ({"cluster": False}, "missing_node"),
        ({"ip": DROP, "cidr": "/40"}, "missing_ip"),
    ]
    changes: dict[str, Any] = {}
    for change, _ in layers:
        changes.update(change)
    seen = []
    fixes = [
        {"id": "r1"},
        {"op": "connections"},
        {"monitor": "300,6"},
        {"startv": 0},
        {"endv": 0},
        {"node": "n"},
        {"ip": "10.0.0.1"},
    ]
    for fix in fixes:
        seen.append(code_of(**changes))
        changes.update(fix)
    seen.append(code_of(**changes))
    assert seen == [code for _, code in layers] + ["invalid_cidr"] == list(ERROR_CODES)


def test_unknown_monitor_message_lists_configured_monitors() -> None:
    with pytest.raises(AuditError) as caught:
        parse_request({**BASE, "monitor": "120,5"}, MONITORS)
    assert caught.value.message == "monitor '120,5' is not configured; configured: 60,1 300,6 1800,4"


def test_monitor_matched_numerically_and_session_op_needs_no_monitor() -> None:
    assert parse_request({**BASE, "monitor": " 300 , 6"}, MONITORS).monitor == MONITORS[1]
    request = parse_request({**BASE, "op": "inbound_session_count", "monitor": None}, MONITORS)
    assert request.monitor is None and request.service == "SMTP" and request.node is None


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{bad", "invalid_json"),
        (b"[1]", "not_an_object"),
        (b'{"id":"x"}', "missing_reply_to"),
        (b'{"reply_to": 5}', "missing_reply_to"),
        (b"", "invalid_json"),
    ],
)
def test_unroutable_requests(raw: bytes, reason: str) -> None:
    with pytest.raises(Unroutable) as caught:
        read_envelope(raw)
    assert caught.value.reason == reason


def test_answers_on_empty_state_and_reply_shapes() -> None:
    request = parse_request({**BASE, "cidr": "/0"}, MONITORS)
    assert answer(request, WindowedCounts(MONITORS), SessionGauge(), 1_764_000_000.0) == 0
    assert orjson.loads(reply_value("r1", 42)) == {"id": "r1", "ok": True, "value": 42}
    assert orjson.loads(reply_error("r1", AuditError("missing_ip", "m"))) == {
        "id": "r1",
        "ok": False,
        "error": {"code": "missing_ip", "message": "m"},
    }


def parsed(raw: bytes) -> str:
    """The code ``read_envelope`` + ``parse_request`` give a raw request (the worker's path)."""
    obj, _ = read_envelope(raw)
    with pytest.raises(AuditError) as caught:
        parse_request(obj, MONITORS)
    return caught.value.code


@pytest.mark.parametrize(
    ("fields", "code", "in_message"),
    [
        (b'"endv": 1180591620717411303424', "window_out_of_range", "endv=1180591620717411303424"),
        (b'"startv": -1180591620717411303424', "invalid_range", "startv=-1180591620717411303424"),
        (b'"endv": 18446744073709551616', "window_out_of_range", "endv=18446744073709551616"),
        (b'"endv": 1e21', "invalid_request", "must be an integer"),
        (b'"endv": 2.0', "invalid_request", "must be an integer"),
        (b'"endv": true', "invalid_request", "must be an integer"),
        (b'"op": null, "endv": 1180591620717411303424', "invalid_request", "'op' must be a string"),
        (b'"op": 7', "invalid_request", "'op' must be a string"),
    ],
)
def test_raw_integers_of_any_size_are_integers(fields: bytes, code: str, in_message: str) -> None:
    """orjson reads integers beyond 64 bits as floats; the envelope must still judge them as integers."""
    without_op = orjson.dumps({k: v for k, v in BASE.items() if k != "op"})
    op = b"" if b'"op"' in fields else b'"op": "connections", '
    obj, _ = read_envelope(without_op[:-1] + b", " + op + fields + b"}")
    with pytest.raises(AuditError) as caught:
        parse_request(obj, MONITORS)
    assert (caught.value.code, in_message in caught.value.message) == (code, True), caught.value.message


def test_integers_beyond_a_double_are_read_and_judged() -> None:
    """orjson refuses these literals outright; they are valid JSON, so the request is still answered."""
    huge = str(10**400).encode()
    assert parsed(orjson.dumps(BASE)[:-1] + b', "at": ' + huge + b"}") == "invalid_request"
    assert parsed(orjson.dumps(BASE)[:-1] + b', "endv": ' + huge + b"}") == "window_out_of_range"


@pytest.mark.parametrize("extra", [b'"x": NaN', b'"x": "\\ud800"', b'"x": Infinity'])
def test_the_exact_reread_is_as_strict_as_orjson(extra: bytes) -> None:
    raw = orjson.dumps(BASE)[:-1] + b', "endv": ' + str(10**400).encode() + b", " + extra + b"}"
    with pytest.raises(Unroutable) as caught:
        read_envelope(raw)
    assert caught.value.reason == "invalid_json"


@pytest.mark.parametrize("levels", [1_010, 1_500, 100_000])
@pytest.mark.parametrize("endv", [b"2", str(2**70).encode()])
def test_nesting_never_makes_a_request_unroutable(levels: int, endv: bytes) -> None:
    """Found by the worker fuzz runner: a valid request with an unknown field nested deeper than
    orjson's 1,024 levels was dead-lettered as invalid_json, and one between the stdlib parser's
    ~1,000 levels and 1,024 holding an integer beyond 64 bits raised RecursionError in the worker.
    Nesting is judged as for events: the request is read at any depth and answered."""

    def request(closing: int) -> bytes:
        deep = b"[" * levels + b"]" * closing
        return orjson.dumps(BASE)[:-1] + b', "x": ' + deep + b', "endv": ' + endv + b"}"

    obj, reply_to = read_envelope(request(levels))
    assert reply_to == BASE["reply_to"] and obj["endv"] == int(endv)
    with pytest.raises(Unroutable) as caught:  # still syntax-checked at that depth
        read_envelope(request(levels - 1))
    assert caught.value.reason == "invalid_json"
