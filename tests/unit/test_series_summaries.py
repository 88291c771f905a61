"""Series window summaries: each closed window once per scope, totals and top keys as a
brute-force sum says, and the windows freed after their summary."""

from __future__ import annotations

import ipaddress
from collections import Counter

import orjson
from jsonschema import validate

from pipeline.core.series import SeriesDef
from pipeline.core.series_counts import SERIES_ADD, SERIES_REMOVE, SeriesCounts
from pipeline.core.series_summaries import SeriesSummaryClock
from pipeline.core.summaries import TAKEOVER_HOLD_S
from pipeline.kafka.topic_specs import load_schema
from pipeline.settings import Settings

FAILS = SeriesDef("fails", "cidr", 60, 2)
NAMES = SeriesDef("names", "string", 30, 2)
START = 1_764_000_000  # a multiple of 60


def _published(clock: SeriesSummaryClock, counts: SeriesCounts, now_s: float) -> list[bytes]:
    """What a publisher sends at ``now_s`` (everything counted): the due summaries, then the clock advances."""
    clock.expire(counts, now_s)
    due, upto = clock.due(counts, [FAILS, NAMES], now_s, now_s)
    clock.advance(upto)
    assert all(name == orjson.loads(raw)["series"] for name, raw in due)
    return [raw for _, raw in due]


def test_each_closed_window_is_summarised_once_per_scope_with_oracle_totals() -> None:
    settings = Settings(window_grace_s=5, top_talkers=2)
    clock = SeriesSummaryClock(settings)
    counts = SeriesCounts()
    assert _published(clock, counts, START + 1) == []  # not publishing
    clock.resume({})
    assert _published(clock, counts, START + 1) == []  # first sight: starts at the current window
    ops = [
        (SERIES_ADD, FAILS, "mta-1", START + 3, 0xC0000201, 5),
        (SERIES_ADD, FAILS, "mta-2", START + 4, 0xC0000202, 2),
        (SERIES_ADD, FAILS, "mta-2", START + 9, 0xC0000201, -1),
        (SERIES_ADD, FAILS, "mta-2", START + 9, 0xC0000203, 1),
        (SERIES_ADD, NAMES, "mta-1", START + 2, "bob", 3),
        (SERIES_ADD, NAMES, "mta-1", START + 40, "eve", 1),  # the next 30 s window
        (SERIES_REMOVE, NAMES, "mta-2", START + 10, "bob", 1),
        (SERIES_ADD, NAMES, "mta-1", START + 20, "bob", 2),
    ]
    counts.apply_ops(ops, START + 41)
    due = [orjson.loads(raw) for raw in _published(clock, counts, START + 60 + 5)]
    for summary in due:
        validate(summary, load_schema("series-window-summary"))
    by_scope = {(s["series"], s["window_start"], s["scope"], s.get("node")): s for s in due}
    assert sorted(by_scope) == sorted(
        [
            ("fails", START, "cluster", None),
            ("fails", START, "node", "mta-1"),
            ("fails", START, "node", "mta-2"),
            ("names", START, "cluster", None),
            ("names", START, "node", "mta-1"),
            ("names", START + 30, "cluster", None),
            ("names", START + 30, "node", "mta-1"),
        ]
    )
    fleet = Counter[str]()
    for _, _, _, _, key, count in ops[:4]:
        fleet[str(ipaddress.IPv4Address(key))] += count
    cluster = by_scope[("fails", START, "cluster", None)]
    assert cluster["total"] == sum(fleet.values()) == 7
    assert cluster["top"] == [{"key": "192.0.2.1", "count": 4}, {"key": "192.0.2.2", "count": 2}]
    assert by_scope[("names", START, "cluster", None)]["top"] == [{"key": "bob", "count": 2}]
    assert by_scope[("names", START + 30, "node", "mta-1")]["total"] == 1
    assert _published(clock, counts, START + 60 + 6) == []  # never twice
    assert counts.window_cells(NAMES, START) != {}  # held for a publisher taking over
    clock.expire(counts, START + 60 + 5 + TAKEOVER_HOLD_S)
    assert counts.window_cells(NAMES, START) == {}  # freed after its summary and the hold


def test_a_new_publisher_resumes_each_series_after_its_last_summary() -> None:
    clock = SeriesSummaryClock(Settings(window_grace_s=5))
    counts = SeriesCounts()
    clock.resume({"fails": START - 60})  # "names" was never summarised: it starts at its current window
    first = [orjson.loads(raw) for raw in _published(clock, counts, START + 66)]
    assert [(s["series"], s["window_start"], s["scope"]) for s in first] == [("fails", START, "cluster")]
    later = [orjson.loads(raw) for raw in _published(clock, counts, START + 96)]
    assert [(s["series"], s["window_start"]) for s in later] == [("names", START + 60)]
