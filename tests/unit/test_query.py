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
