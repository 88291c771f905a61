"""series_count and series_define requests: every new code, the series precedence, answers."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from pipeline.core.query import parse_request
from pipeline.core.series import SeriesCatalog, SeriesDef
from pipeline.core.series_counts import SERIES_ADD, SeriesCounts
from pipeline.core.series_query import SeriesCountRequest, SeriesDefineRequest, answer_series_count
from pipeline.core.windows import parse_monitors
from pipeline.errors import AuditError

MONITORS = parse_monitors("60,1 300,6 1800,4")
FAILS = SeriesDef("auth.fail", "cidr", 300, 6)
V6 = SeriesDef("v6", "cidr_ipv6", 60, 3, prefix_len=48)
NAMES = SeriesDef("senders", "string", 60, 3)
CATALOG = SeriesCatalog([NAMES])
for offset, definition in enumerate((FAILS, V6, SeriesDef("auth.fail", "cidr", 60, 1))):
    CATALOG.apply(offset, definition)
COUNT = {"id": "r1", "reply_to": "r", "op": "series_count", "series": "auth.fail", "cluster": True, "ip": "10.1.2.3"}
DEFINE = {
    "id": "r2",
    "reply_to": "r",
    "op": "series_define",
    "series": "new",
    "type": "cidr",
    "interval": 60,
    "num_windows": 5,
}
DROP = object()


def code_of(base: dict[str, Any], **changes: Any) -> str:
    obj = {k: v for k, v in {**base, **changes}.items() if v is not DROP}
    with pytest.raises(AuditError) as caught:
        parse_request(obj, MONITORS, CATALOG, 7200)
    return caught.value.code


@pytest.mark.parametrize(
    ("base", "changes", "code"),
    [
        (COUNT, {"series": DROP}, "invalid_request"),
        (COUNT, {"series": 5}, "invalid_request"),
        (COUNT, {"key": 24}, "invalid_request"),
        (COUNT, {"series": "nope"}, "unknown_series"),
        (COUNT, {"startv": 2, "endv": 1}, "invalid_range"),
        (COUNT, {"endv": 6}, "window_out_of_range"),
        (COUNT, {"cluster": False}, "missing_node"),
        (COUNT, {"ip": DROP}, "missing_ip"),
        (COUNT, {"key": "/24", "ip": DROP}, "missing_ip"),
        (COUNT, {"key": "10.0.0.0/33"}, "invalid_key"),
        (COUNT, {"key": "2001:db8::/32"}, "invalid_key"),
        (COUNT, {"series": "v6", "key": "10.0.0.0/8"}, "invalid_key"),
        (COUNT, {"series": "senders"}, "invalid_key"),
        (COUNT, {"series": "senders", "key": ""}, "invalid_key"),
        (DEFINE, {"type": "ipv4"}, "invalid_request"),
        (DEFINE, {"interval": 0}, "invalid_request"),
        (DEFINE, {"interval": True}, "invalid_request"),
        (DEFINE, {"num_windows": DROP}, "invalid_request"),
        (DEFINE, {"series": "bad name"}, "invalid_request"),
        (DEFINE, {"prefix_len": 64}, "invalid_request"),
        (DEFINE, {"type": "cidr_ipv6", "prefix_len": 129}, "invalid_request"),
        (DEFINE, {"num_windows": 200}, "invalid_request"),  # 12000 s: longer than the state log keeps
        (DEFINE, {"series": "auth.fail"}, "series_conflict"),
        (DEFINE, {"series": "senders", "type": "string", "interval": 60, "num_windows": 4}, "series_conflict"),
    ],
)
def test_each_code(base: dict[str, Any], changes: dict[str, Any], code: str) -> None:
    assert code_of(base, **changes) == code


def test_count_precedence_follows_the_contract_order() -> None:
    layers = [
        ({"id": DROP}, {"id": "r1"}, "invalid_request"),
        ({"op": "nope"}, {"op": "series_count"}, "unknown_op"),
        ({"series": "nope"}, {"series": "senders"}, "unknown_series"),
        ({"startv": -1}, {"startv": 0}, "invalid_range"),
        ({"endv": 3}, {"endv": 2}, "window_out_of_range"),
        ({"cluster": False}, {"node": "n"}, "missing_node"),
    ]
    changes: dict[str, Any] = {}
    for change, _, _ in layers:
        changes.update(change)
    seen = []
    for _, fix, _ in layers:
        seen.append(code_of(COUNT, **changes))
        changes.update(fix)
    seen.append(code_of(COUNT, **changes))  # a string series without a key
    assert seen == [code for _, _, code in layers] + ["invalid_key"]
    cidr = {**COUNT, "key": "/99", "ip": DROP}
    assert code_of(cidr) == "missing_ip" and code_of(cidr, ip="10.0.0.1") == "invalid_key"


def test_define_of_the_known_definition_is_idempotent_and_a_new_one_is_new() -> None:
    same = parse_request({**DEFINE, "series": "auth.fail", "interval": 300, "num_windows": 6}, MONITORS, CATALOG, 7200)
    assert isinstance(same, SeriesDefineRequest) and not same.new and same.definition == FAILS
    configured = parse_request({**DEFINE, "series": "senders", "type": "string", "num_windows": 3}, MONITORS, CATALOG)
    assert isinstance(configured, SeriesDefineRequest) and not configured.new
    fresh = parse_request({**DEFINE, "type": "cidr_ipv6", "prefix_len": 64}, MONITORS, CATALOG, 7200)
    assert isinstance(fresh, SeriesDefineRequest) and fresh.new and fresh.definition.prefix_len == 64


def test_counts_answer_every_cidr_form_and_truncate_ipv6_queries() -> None:
    now = 1_764_000_000.0
    addr = int(ipaddress.ip_address("2001:db8:1::"))  # keys arrive truncated to /48
    counts = SeriesCounts()
    counts.apply_ops([(SERIES_ADD, V6, "n1", now, addr, 3), (SERIES_ADD, FAILS, "n1", now, 0x0A010200, 2)], now)
    expectations = [
        ({"series": "v6", "key": "2001:db8:1:2::9"}, 3),  # a host: its /48
        ({"series": "v6", "key": "/64", "ip": "2001:db8:1::1"}, 3),
        ({"series": "v6", "key": "[2001:db8::]/32"}, 3),
        ({"series": "v6", "key": "2001:db8:2::/48"}, 0),
        ({"key": "/24"}, 2),
        ({"key": "10.1.2.0"}, 2),
        ({"key": "10.1.2.3"}, 0),
        ({"key": "0.0.0.0/0", "cluster": False, "node": "n1"}, 2),
        ({"key": "0.0.0.0/0", "cluster": False, "node": "n2"}, 0),
    ]
    for changes, expected in expectations:
        request = parse_request({**COUNT, **changes}, MONITORS, CATALOG, 7200)
        assert isinstance(request, SeriesCountRequest)
        assert answer_series_count(request, counts, now) == expected, changes
