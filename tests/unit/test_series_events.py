"""Series events through both decoders, into a delta, over the wire and into a replica."""

from __future__ import annotations

import ipaddress
from typing import Any

import orjson
import pytest
from decoder_fuzz import FUTURE_S, MONITORS, NOW_MS, SERIES, outcome

from pipeline.core.cidr import Block
from pipeline.core.decoding import NATIVE, BatchDecoder
from pipeline.core.delta import decode_delta, encode_delta
from pipeline.core.events import MAX_MESSAGE_BYTES
from pipeline.core.replica import Replica

AVAILABLE = ["python"] + (["native"] if NATIVE is not None else [])
NOW = NOW_MS / 1000


def _add(**fields: Any) -> dict[str, Any]:
    return {"node": "mx1", "ts": NOW - 10, "event": "series_add", "series": "fails", "key": "192.0.2.7", **fields}


CASES = [
    (_add(), None),
    (_add(count=-4), None),
    (_add(event="series_remove"), None),
    (_add(event="series_remove", count="ignored"), None),
    (_add(series="senders", key="alice"), None),
    (_add(series="fails6", key="2001:db8::1:2:3:4"), None),
    ({"node": "mx1", "ts": NOW, "event": "series_add"}, "missing_field"),
    (_add(node=""), "invalid_field"),
    (_add(ts="now"), "invalid_field"),
    (_add(series=7), "invalid_field"),
    (_add(key=None), "invalid_field"),
    (_add(count=2**31), "invalid_field"),
    (_add(count=1.0), "invalid_field"),
    (_add(count=True), "invalid_field"),
    (_add(series="nope"), "unknown_series"),
    (_add(key="2001:db8::1"), "invalid_key"),
    (_add(key="::ffff:192.0.2.7"), None),
    (_add(series="fails6", key="::ffff:192.0.2.7"), "invalid_key"),
    (_add(key="example.com"), "invalid_key"),
    (_add(series="senders", key=""), "invalid_key"),
    (_add(series="senders", key="x" * 256), "invalid_key"),
    (_add(ts=NOW - 301), "too_late"),
    (_add(ts=NOW + FUTURE_S + 1), "future_timestamp"),
]


@pytest.mark.parametrize("name", AVAILABLE)
@pytest.mark.parametrize(("event", "reason"), CASES)
def test_each_series_event_is_counted_or_dead_lettered_with_its_reason(name: str, event: dict, reason: str) -> None:
    for value in (
        orjson.dumps(event),
        orjson.dumps([{"node": "n", "ts": NOW, "ip": "::1", "event": "connection"}, event]),
    ):
        delta, rejected = BatchDecoder(MONITORS, FUTURE_S, name, SERIES.get).decode(0, -1, [value], [5], [NOW_MS])
        assert [r.reason for _, r in rejected] == ([] if reason is None else [reason])
        assert len(delta.series.ops()) == (1 if reason is None else 0)


def test_series_keys_are_counted_as_the_series_type_says() -> None:
    events = [
        _add(key="::ffff:192.0.2.7", count=3),
        _add(series="fails6", key="2001:db8::1:2:3:4"),
        _add(series="senders", key="alice", event="series_remove"),
    ]
    delta, _ = BatchDecoder(MONITORS, FUTURE_S, "python", SERIES.get).decode(
        0, -1, [orjson.dumps(events)], [5], [NOW_MS]
    )
    ops = delta.series.ops()
    keys = [op[4] for op in ops]
    assert keys == [int(ipaddress.ip_address("192.0.2.7")), int(ipaddress.ip_address("2001:db8::")), "alice"]
    assert [op[0] for op in ops] == ["series_add", "series_add", "series_remove"]
    assert [op[5] for op in ops[:2]] == [3, 1]


@pytest.mark.skipif(NATIVE is None, reason="native decoder not built")
def test_native_and_python_agree_on_mixed_batches() -> None:
    records = [orjson.dumps([event for event, _ in CASES]), orjson.dumps(CASES[0][0]), b"[1", orjson.dumps(CASES[5][0])]
    offsets, stamps = [7, 8, 9, 10], [NOW_MS] * 4
    native = BatchDecoder(MONITORS, FUTURE_S, "native", SERIES.get).decode(1, 6, records, offsets, stamps)
    python = BatchDecoder(MONITORS, FUTURE_S, "python", SERIES.get).decode(1, 6, records, offsets, stamps)
    assert outcome(native) == outcome(python)
    assert native[0].series_ends == [7, 8, 8, 9]


def test_a_delta_with_series_survives_the_wire_and_is_cut_by_source_offset() -> None:
    records = [orjson.dumps([_add(count=2), _add(series="senders", key="bob")]), orjson.dumps(_add(count=5))]
    delta, _ = BatchDecoder(MONITORS, FUTURE_S, "python", SERIES.get).decode(3, 10, records, [11, 12], [NOW_MS] * 2)
    wired = decode_delta(encode_delta(delta))
    assert (wired.series.ops(), wired.series_ends) == (delta.series.ops(), delta.series_ends)
    assert delta.series_ends == [2, 3]
    replica = Replica(MONITORS)
    replica.apply(wired.after(11), NOW)  # only the second message: 5
    replica.apply(wired, NOW)  # overlaps: only what is new counts (nothing)
    block = Block.of(4, int(ipaddress.ip_address("192.0.2.0")), 24)
    assert replica.series.count(SERIES["fails"], block, 0, 0, NOW, NOW, None) == 5
    fresh = Replica(MONITORS)
    fresh.apply(wired, NOW)
    assert fresh.series.count(SERIES["fails"], block, 0, 0, NOW, NOW, "mx1") == 7
    assert fresh.series.count(SERIES["senders"], "bob", 0, 2, NOW, NOW, None) == 1


@pytest.mark.parametrize("name", AVAILABLE)
def test_an_oversized_array_of_series_events_is_refused_whole(name: str) -> None:
    event = orjson.dumps(_add(key="192.0.2.7", padding="x" * 200))
    value = b"[" + b",".join([event] * (MAX_MESSAGE_BYTES // len(event) + 1)) + b"]"
    delta, rejected = BatchDecoder(MONITORS, FUTURE_S, name, SERIES.get).decode(0, -1, [value], [5], [NOW_MS])
    assert [r.reason for _, r in rejected] == ["batch_too_large"] and len(delta.series) == 0
