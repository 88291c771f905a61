"""Window summaries against brute force: totals, and top talkers at every standard prefix level."""

from __future__ import annotations

import ipaddress
import random
from collections import Counter

import orjson

from pipeline.core.delta import delta_from_decoded
from pipeline.core.events import DecodedBatch
from pipeline.core.replica import Replica
from pipeline.core.summaries import TAKEOVER_HOLD_S, TOP_LEVELS, SummaryClock, summarize_window
from pipeline.core.windows import Monitor
from pipeline.settings import Settings

MONITOR = Monitor(60, 3)
START = 1_764_000_000 - 1_764_000_000 % 60


def test_summary_matches_brute_force() -> None:
    rng = random.Random(3)
    v4 = [f"198.51.{rng.randrange(4)}.{rng.randrange(8)}" for _ in range(40)]
    v6 = [f"2001:db8:{rng.randrange(3):x}::{rng.randrange(6):x}" for _ in range(40)]
    rows = []
    for _ in range(2000):
        ip = rng.choice(v4 + v6)
        rows.append((rng.choice(["a", "b"]), START + rng.random() * 59, ip, rng.randrange(3), rng.randint(1, 9)))
    decoded = DecodedBatch(
        node=[r[0] for r in rows],
        ts=[r[1] for r in rows],
        family=[ipaddress.ip_address(r[2]).version for r in rows],
        addr=[int(ipaddress.ip_address(r[2])) for r in rows],
        metric=[r[3] for r in rows],
        n=[r[4] for r in rows],
    )
    replica = Replica((MONITOR,))
    replica.apply(delta_from_decoded(decoded, 0, [(0, len(decoded.node), len(decoded.sessions))]), START + 30)
    limit = 5
    for node in (None, "a"):
        summary = summarize_window(replica.counts, MONITOR, START, node, limit, START + 70)
        mine = [r for r in rows if node is None or r[0] == node]
        names = ("connection", "reception", "rejection")
        assert summary["totals"] == {name: sum(r[4] for r in mine if r[3] == m) for m, name in enumerate(names)}
        for label, family, prefix in TOP_LEVELS:
            per_block: dict[str, Counter[int]] = {}
            for r in mine:
                ip = ipaddress.ip_address(r[2])
                if ip.version == family:
                    block = str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))
                    per_block.setdefault(block, Counter())[r[3]] += r[4]
            top = summary["top"][label]  # type: ignore[index]
            assert len(top) == min(limit, len(per_block))
            totals = sorted((sum(c.values()) for c in per_block.values()), reverse=True)
            assert [row["total"] for row in top] == totals[:limit]
            for row in top:
                counts = per_block[row["cidr"]]
                assert [row[name] for name in names] == [counts[m] for m in range(3)]


def _published(clock: SummaryClock, replica: Replica, now_s: float) -> list[dict[str, object]]:
    """What a publisher sends at ``now_s``: the due summaries, after which the clock advances."""
    clock.expire(replica.counts, now_s)
    due, upto = clock.due(replica.counts, now_s)
    clock.advance(upto)
    assert all(monitor == orjson.loads(value)["monitor"] for monitor, value in due)
    return [orjson.loads(value) for _, value in due]


def test_clock_summarises_each_closed_window_once_even_when_empty() -> None:
    settings = Settings(monitors=(MONITOR,), window_grace_s=5)
    clock = SummaryClock(settings)
    replica = Replica((MONITOR,))
    assert clock.resume({}, START + 10) == []  # nothing published yet: from the current window on
    assert _published(clock, replica, START + 64) == []  # closed, but still in its grace period
    first = _published(clock, replica, START + 66)
    assert [(s["window_start"], s["scope"], s["totals"]["connection"]) for s in first] == [(START, "cluster", 0)]
    assert _published(clock, replica, START + 67) == []
    later = [s["window_start"] for s in _published(clock, replica, START + 186)]
    assert later == [START + 60, START + 120]


def test_a_clock_that_is_not_publishing_summarises_nothing() -> None:
    clock = SummaryClock(Settings(monitors=(MONITOR,), window_grace_s=5))
    replica = Replica((MONITOR,))
    assert _published(clock, replica, START + 600) == []
    clock.resume({}, START + 10)
    clock.pause()
    assert _published(clock, replica, START + 600) == []


def test_a_new_publisher_resumes_after_the_last_published_window() -> None:
    """The windows topic says what the last publisher got out; windows freed since are reported lost."""
    settings = Settings(monitors=(MONITOR, Monitor(10, 2)), window_grace_s=5)
    clock = SummaryClock(settings)
    replica = Replica(settings.monitors)
    assert clock.resume({MONITOR.name: START - 60, "10,2": START + 40}, START + 69) == []
    assert [(s["monitor"], s["window_start"]) for s in _published(clock, replica, START + 70)] == [
        (MONITOR.name, START),
        ("10,2", START + 50),
    ]
    # Ten minutes later a monitor of 60 s x 3 still holds its last three windows plus the takeover hold.
    late = SummaryClock(settings)
    lines = late.resume({MONITOR.name: START - 60, "10,2": START + 40}, START + 660)
    first_held = START + 660 - 5 - TAKEOVER_HOLD_S
    first_held_60 = MONITOR.oldest_kept_start(first_held)
    assert lines == [
        f"monitor {MONITOR.name}: windows {START}..{first_held_60 - 60} closed while no worker held them; "
        "they have no summary",
        f"monitor 10,2: windows {START + 50}..{Monitor(10, 2).oldest_kept_start(first_held) - 10} closed while "
        "no worker held them; they have no summary",
    ]
    assert [s["window_start"] for s in _published(late, replica, START + 660) if s["monitor"] == MONITOR.name] == [
        first_held_60 + 60 * i for i in range((START + 600 - first_held_60) // 60)
    ]


def test_a_one_window_monitor_is_summarised_with_what_it_counted() -> None:
    """``60,1`` keeps only the current window: it must still be there when its summary is due."""
    one = Monitor(60, 1)
    settings = Settings(monitors=(one,), window_grace_s=5)
    clock = SummaryClock(settings)
    clock.resume({}, START + 1)
    replica = Replica((one,))
    decoded = DecodedBatch(
        node=["a", "b"], ts=[START + 10, START + 50], family=[4, 4], addr=[1, 2], metric=[0, 0], n=[3, 4]
    )
    replica.apply(delta_from_decoded(decoded, 0, [(0, 2, 0)]), START + 55)
    for second in range(56, 65):  # the worker's clock ticks through the window's end and its grace
        assert _published(clock, replica, START + second) == []
    summaries = _published(clock, replica, START + 65)
    assert {(s["scope"], s.get("node"), s["totals"]["connection"]) for s in summaries} == {
        ("cluster", None, 7),
        ("node", "a", 3),
        ("node", "b", 4),
    }
    clock.expire(replica.counts, START + 64 + TAKEOVER_HOLD_S)
    assert list(replica.counts.window_starts(one)) == [START]  # held for a publisher taking over
    clock.expire(replica.counts, START + 65 + TAKEOVER_HOLD_S)
    assert list(replica.counts.window_starts(one)) == []
