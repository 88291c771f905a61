"""The dashboard's data from a replica: events per node, the bounded chart series, top talkers."""

from __future__ import annotations

import ipaddress
import random
from collections import Counter
from collections.abc import Sequence

from pipeline.app.rates import RateHistory
from pipeline.app.top_talkers import TopTalkers
from pipeline.core.delta import Delta, delta_from_decoded
from pipeline.core.events import DecodedBatch
from pipeline.core.replica import Replica
from pipeline.core.summaries import summarize_window
from pipeline.core.windows import Monitor

MONITOR = Monitor(60, 3)
START = 1_764_000_000 - 1_764_000_000 % 60


def delta(rows: Sequence[tuple[str, float, str]], sessions: Sequence[tuple[str, str]], offset: int) -> Delta:
    """One source message at ``offset`` of (node, ts, ip) connections and (kind, node) sessions."""
    ips = [ipaddress.ip_address(ip) for _, _, ip in rows]
    decoded = DecodedBatch(
        node=[node for node, _, _ in rows],
        ts=[ts for _, ts, _ in rows],
        family=[ip.version for ip in ips],
        addr=[int(ip) for ip in ips],
        metric=[0] * len(rows),
        n=[1] * len(rows),
        sessions=[(kind, node, 4, 1, "SMTP") for kind, node in sessions],
    )
    return delta_from_decoded(decoded, 0, [(offset, len(rows), len(sessions))], prev_offset=offset - 1)


def test_the_tally_counts_every_applied_event_per_node_once() -> None:
    rng = random.Random(5)
    replica = Replica((MONITOR,))
    expected: Counter[str] = Counter()
    for offset in range(20):
        rows = [
            (f"n{rng.randrange(30)}", START + rng.random() * 59, rng.choice(["192.0.2.1", "2001:db8::1"]))
            for _ in range(50)
        ]
        sessions = [(rng.choice(["open", "close"]), f"s{rng.randrange(3)}") for _ in range(4)]
        batch = delta(rows, sessions, offset)
        assert replica.apply(batch, START + 30) == "applied"
        assert replica.apply(batch, START + 30) == "duplicate"  # counted once
        expected.update(node for node, _, _ in rows)
        expected.update(node for _, node in sessions)
    assert dict(zip(replica.tally.names(), replica.tally.reading().tolist(), strict=True)) == expected


def test_the_chart_names_the_busiest_nodes_and_sums_the_rest() -> None:
    replica = Replica((MONITOR,))
    history = RateHistory(keep=5)
    events = {f"mta-{k}": 1 + max(0, 20 - k) for k in range(3000)}  # mta-0 sends most, then mta-1, ...
    for step in range(8):  # a reading every 2 s, then one delta of every node's events
        history.record(START + 2 * step, replica.tally)
        rows = [(node, START + 1.0, "192.0.2.7") for node, count in events.items() for _ in range(count)]
        replica.apply(delta(rows, [], step), START + 2)
    series = history.series(top=8)
    assert len(series["times"]) == 4  # five readings kept: four intervals
    fleet = sum(events.values()) / 2
    assert series["fleet"] == [fleet] * 4
    assert [(n["node"], n["rates"]) for n in series["nodes"]] == [(f"mta-{k}", [(21 - k) / 2] * 4) for k in range(8)]
    assert series["others"] == [fleet - sum(21 - k for k in range(8)) / 2] * 4
    assert series["active_nodes"] == 3000


def test_a_new_tally_starts_the_history_again() -> None:
    history = RateHistory(keep=10)
    first, second = Replica((MONITOR,)), Replica((MONITOR,))
    history.record(START, first.tally)
    history.record(START + 2, first.tally)
    history.record(START + 4, second.tally)  # a replica restored from a snapshot
    assert history.series(top=3)["times"] == []
    history.record(START + 3, second.tally)  # the clock stepped back: not a reading
    history.record(START + 6, second.tally)
    assert history.series(top=3)["times"] == [START + 6]


def test_top_talkers_are_the_window_summaries_ranking_reused_for_a_while() -> None:
    replica = Replica((MONITOR,))
    now = START + 70  # window START is the previous one, START + 60 the current one
    replica.apply(delta([("a", START + 5, "198.51.100.9")] * 3 + [("a", START + 61, "192.0.2.1")], [], 0), now)
    talkers = TopTalkers((MONITOR,), rows=5, max_age_s=5.0)
    (ranked,) = talkers.ranking(replica.counts, now)
    current, previous = ranked["windows"]
    assert (current["label"], current["start"], previous["label"], previous["start"]) == (
        "current",
        START + 60,
        "previous",
        START,
    )
    assert previous["top"] == summarize_window(replica.counts, MONITOR, START, None, 5, now)["top"]
    assert previous["top"]["ipv4/32"][0] == {
        "cidr": "198.51.100.9/32",
        "connection": 3,
        "reception": 0,
        "rejection": 0,
        "total": 3,
    }
    assert current["top"]["ipv4/24"][0]["cidr"] == "192.0.2.0/24" and current["kept"] and previous["kept"]

    replica.apply(delta([("b", START + 62, "192.0.2.1")] * 5, [], 1), now)
    assert talkers.ranking(replica.counts, now + 4.9)[0]["windows"][0]["totals"]["connection"] == 1  # reused
    assert talkers.ranking(replica.counts, now + 5)[0]["windows"][0]["totals"]["connection"] == 6  # ranked again
