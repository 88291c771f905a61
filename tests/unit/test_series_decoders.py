"""Series events through the native decoder against the Python reference: same Delta (series
columns included) and the same rejections, detail and value, for valid events, every kind of
malformed one, unknown series, every key type and prefix length, and the series' own time limits.

Skipped when ``pipeline_native`` is not built; ``test_series_events.py`` covers both decoders'
decisions against expected reasons.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from decoder_fuzz import FUTURE_S, MONITORS, NOW_MS, outcome
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.core.decoding import NATIVE, BatchDecoder
from pipeline.core.series import SeriesDef

pytestmark = pytest.mark.skipif(NATIVE is None, reason="native decoder not built (no cargo when installed)")

SERIES = {
    d.name: d
    for d in (
        SeriesDef("fails", "cidr", 60, 5),
        SeriesDef("fails6", "cidr_ipv6", 300, 2, prefix_len=64),
        SeriesDef("all6", "cidr_ipv6", 60, 1),
        SeriesDef("zero6", "cidr_ipv6", 7, 3, prefix_len=0),
        SeriesDef("full6", "cidr_ipv6", 3600, 2, prefix_len=128),
        SeriesDef("senders", "string", 30, 3),
    )
}
MAX = 2**31 - 1
_STAMPS = [NOW_MS, NOW_MS + 59_999, NOW_MS - 1, NOW_MS + 123_456]
#: Keys each series takes (some truncated by prefix_len), and the other kinds of key tried on all.
_GOOD_KEYS = {
    "fails": ["192.0.2.7", "::ffff:10.0.0.1", "0.0.0.0"],
    "fails6": ["2001:db8::1:2:3:4", "2001:DB8:0:0:0:0:0:1"],
    "all6": ["2001:db8::1:2:3:4", "::"],
    "zero6": ["2001:db8::1"],
    "full6": ["ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"],
    "senders": ["alice", "a", "x" * 255, "é" * 255, "192.0.2.7"],
}
_OTHER_KEYS = ["01.2.3.4", "fe80::1%eth0", "1.2.3", "", "x" * 256, "é" * 256, None, 7, ["a"], {"k": 1}]


def _edges(now_s: float) -> list[float | int]:
    """Every series' oldest kept window start and the future limit, with neighbours, at ``now_s``."""
    out: list[float | int] = [now_s, now_s + FUTURE_S, now_s + FUTURE_S + 0.001, now_s + FUTURE_S + 1]
    for d in SERIES.values():
        oldest = d.windows.oldest_kept_start(now_s)
        out += [oldest, oldest - 1, float(oldest), oldest - 0.001, oldest + 0.5]
    return out


_EDGE_TS = sorted({t for stamp in _STAMPS for t in _edges(stamp / 1000)})
#: Per field, values that break it (or not, for ``event``: it only picks add or remove).
_BAD: dict[str, list[Any]] = {
    "node": ["", "n" * 256, None, 3],
    "ts": ["1700000000", None, True, [1], 1e300, -(2**63), 2**64 - 1],
    "event": ["series_add", "series_remove"],
    "series": ["nope", "", None, 5, *SERIES],
    "key": [*_OTHER_KEYS, *(k for keys in _GOOD_KEYS.values() for k in keys)],
    "count": [0, MAX, -MAX, MAX + 1, -MAX - 1, 2**64 - 1, -(2**63), True, 1.0, "2", None],
}


@st.composite
def _events(draw: st.DrawFn) -> dict[str, Any]:
    """A valid series event (its ts near now, or on a window or future edge), then up to two
    fields dropped or set to a value that may break them."""
    name = draw(st.sampled_from(sorted(SERIES)))
    event: dict[str, Any] = {
        "node": draw(st.sampled_from(["mx1", "mx2", "é" * 255])),
        "ts": draw(st.sampled_from([NOW_MS / 1000 - 1.5, NOW_MS // 1000 - 3]) | st.sampled_from(_EDGE_TS)),
        "event": draw(st.sampled_from(["series_add", "series_remove"])),
        "series": name,
        "key": draw(st.sampled_from(_GOOD_KEYS[name])),
    }
    if draw(st.booleans()):
        event["count"] = draw(st.sampled_from([1, -1, 3]))
    for field in draw(st.lists(st.sampled_from(sorted(_BAD)), max_size=2)):
        if draw(st.integers(0, 3)) == 0:
            event.pop(field, None)
        else:
            event[field] = draw(st.sampled_from(_BAD[field]))
    return event


_MESSAGES = st.lists(_events(), min_size=1, max_size=6).map(orjson.dumps) | _events().map(orjson.dumps)


def _both(records: list[bytes]) -> tuple[Any, Any]:
    offsets = list(range(20, 20 + len(records)))
    stamps = [_STAMPS[i % len(_STAMPS)] for i in range(len(records))]
    return tuple(  # type: ignore[return-value]
        outcome(BatchDecoder(MONITORS, FUTURE_S, name, SERIES.get).decode(3, 19, records, offsets, stamps))
        for name in ("native", "python")
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(_MESSAGES, min_size=1, max_size=4))
def test_generated_series_events(records: list[bytes]) -> None:
    native, python = _both(records)
    assert native == python


def test_valid_events_of_every_key_type_are_counted_alike() -> None:
    """The generator's edges, pinned: one valid event per series, each counted by both."""
    events = [
        {"node": "mx1", "ts": NOW_MS / 1000, "event": "series_add", "series": name, "key": key, "count": -3}
        for name, key in [
            ("fails", "::ffff:192.0.2.7"),
            ("fails6", "2001:db8::1:2:3:4"),
            ("all6", "2001:db8::1:2:3:4"),
            ("zero6", "2001:db8::1"),
            ("full6", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            ("senders", "é" * 255),
        ]
    ]
    native, python = _both([orjson.dumps(events)])
    assert native == python
    ops = native[6][0]
    assert [op[4] for op in ops] == [
        0xC0000207,
        0x20010DB8000000000000000000000000,
        0x20010DB8000000000001000200030004,
        0,
        2**128 - 1,
        "é" * 255,
    ]


def test_a_failing_lookup_fails_the_decode_on_both_decoders() -> None:
    def lookup(name: str) -> SeriesDef | None:
        raise RuntimeError(f"catalog unavailable for {name}")

    record = orjson.dumps([{"node": "a", "ts": NOW_MS / 1000, "event": "series_add", "series": "s", "key": "k"}])
    for name in ("native", "python"):
        with pytest.raises(RuntimeError, match="catalog unavailable for s"):
            BatchDecoder(MONITORS, FUTURE_S, name, lookup).decode(0, -1, [record], [0], [NOW_MS])
