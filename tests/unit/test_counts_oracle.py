"""The counting store against a brute-force oracle: a list of events, filtered and summed."""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.core.cidr import Block
from pipeline.core.counts import WindowedCounts
from pipeline.core.delta import decode_delta, delta_from_decoded, encode_delta
from pipeline.core.events import DecodedBatch
from pipeline.core.replica import Replica
from pipeline.core.sessions import SessionGauge
from pipeline.core.windows import Monitor

MONITORS = (Monitor(60, 1), Monitor(300, 6), Monitor(1800, 4), Monitor(7, 3))
NOW = 1_764_000_123.25  # not window-aligned on purpose
NODES = ("mta-a", "mta-b", "mta-c")


@dataclass(frozen=True)
class Ev:
    node: str
    ts: float
    family: int
    addr: int
    metric: int
    n: int


def oracle(
    events: list[Ev],
    monitor: Monitor,
    metric: int,
    block: Block,
    startv: int,
    endv: int,
    at: float,
    now: float,
    node: str | None,
) -> int:
    wanted = {math.floor(at / monitor.size_s) * monitor.size_s - k * monitor.size_s for k in range(startv, endv + 1)}
    oldest = math.floor(now / monitor.size_s) * monitor.size_s - (monitor.count - 1) * monitor.size_s
    total = 0
    for e in events:
        start = math.floor(e.ts / monitor.size_s) * monitor.size_s
        if (
            e.metric == metric
            and e.family == block.family
            and block.lo <= e.addr <= block.hi
            and (node is None or e.node == node)
            and start in wanted
            and start >= oldest
        ):
            total += e.n
    return total


def to_decoded(events: list[Ev]) -> DecodedBatch:
    return DecodedBatch(
        node=[e.node for e in events],
        ts=[e.ts for e in events],
        family=[e.family for e in events],
        addr=[e.addr for e in events],
        metric=[e.metric for e in events],
        n=[e.n for e in events],
        sessions=[],
        rejected=[],
    )


def block_of(family: int, addr: int, prefix: int) -> Block:
    width = 32 if family == 4 else 128
    host = (1 << (width - prefix)) - 1
    return Block(family, prefix, addr & ~host, (addr & ~host) | host)


# Small address pools so that blocks at every mask length really contain several events.
V4_POOL = [
    int(ipaddress.ip_address(a))
    for a in (
        "10.0.0.1",
        "10.0.0.2",
        "10.0.1.7",
        "10.200.3.4",
        "192.0.2.255",
        "203.0.113.9",
        "0.0.0.0",
        "255.255.255.255",
    )
]
V6_POOL = [
    int(ipaddress.ip_address(a))
    for a in (
        "2001:db8::1",
        "2001:db8::2",
        "2001:db8:0:1::5",
        "2001:db8:ffff::1",
        "fe80::1",
        "::1",
        "ffff:" + "ffff:" * 6 + "ffff",
    )
]

addresses = st.one_of(
    st.tuples(st.just(4), st.one_of(st.sampled_from(V4_POOL), st.integers(0, 2**32 - 1))),
    st.tuples(st.just(6), st.one_of(st.sampled_from(V6_POOL), st.integers(0, 2**128 - 1))),
)
events_st = st.lists(
    st.builds(
        lambda node, ts, fa, metric, n: Ev(node, ts, fa[0], fa[1], metric, n),
        st.sampled_from(NODES),
        st.one_of(
            st.floats(NOW - 400, NOW + 1, allow_nan=False),
            st.floats(NOW - 1200, NOW + 1, allow_nan=False),
            st.floats(NOW - 8000, NOW + 1, allow_nan=False),
            st.sampled_from([NOW - 300.0 * k for k in range(8)] + [1_764_000_000.0, 1_763_999_999.999]),
        ),
        addresses,
        st.integers(0, 2),
        st.one_of(st.just(1), st.integers(1, 1000)),
    ),
    max_size=120,
)
queries_st = st.lists(
    st.tuples(
        st.sampled_from(MONITORS),
        st.integers(0, 2),
        st.integers(0, 128),
        st.integers(0, 5),
        st.integers(0, 5),
        st.one_of(st.just(NOW), st.floats(NOW - 3000, NOW + 600, allow_nan=False)),
        st.sampled_from((None, *NODES)),
        st.integers(0, 10**6),
    ),
    min_size=1,
    max_size=25,
)


def make_block(events: list[Ev], prefix: int, pick: int) -> Block:
    if events and pick % 3:
        e = events[pick % len(events)]
        family, addr = e.family, e.addr
    else:
        family = 4 if pick % 2 else 6
        addr = (pick * 2654435761) % (2**32 if family == 4 else 2**128)
    return block_of(family, addr, min(prefix, 32 if family == 4 else 128))


def apply_in_batches(events: list[Ev], replica: Replica, via_wire: bool) -> None:
    offset = 0
    for partition, chunk_size in enumerate((7, 50, 1000)):
        chunk = events[offset : offset + chunk_size]
        offset += chunk_size
        if not chunk:
            continue
        delta = delta_from_decoded(to_decoded(chunk), partition % 2, one_message_each(chunk, 1000 * partition))
        if via_wire:
            delta = decode_delta(encode_delta(delta))
        assert replica.apply(delta, NOW) == "applied"


def one_message_each(events: list[Ev], first_offset: int) -> list[tuple[int, int, int]]:
    """``message_ends`` for windowed events sent one per source message from ``first_offset`` on."""
    return [(first_offset + i, i + 1, 0) for i in range(len(events))]


@settings(max_examples=200, deadline=None)
@given(events_st, queries_st, st.booleans())
def test_store_matches_oracle(events: list[Ev], queries: list, via_wire: bool) -> None:
    replica = Replica(MONITORS)
    apply_in_batches(events, replica, via_wire)
    answers = []
    for monitor, metric, prefix, a, b, at, node, pick in queries:
        if events and pick % 3:  # mostly ask about what was sent, so most answers are non-zero
            e = events[pick % len(events)]
            metric, node = e.metric, (None if pick % 2 else e.node)
            at = e.ts if pick % 5 else at
        startv, endv = sorted((a % monitor.count, b % monitor.count))
        if pick % 7:
            startv = 0
        block = make_block(events, prefix, pick)
        expected = oracle(events, monitor, metric, block, startv, endv, at, NOW, node)
        got = replica.counts.count(monitor, metric, block, startv, endv, at, NOW, node)
        assert got == expected, (monitor, metric, block, startv, endv, at, node)
        answers.append(((monitor, metric, block, startv, endv, at, node), expected))
    # The snapshot holds merged, sorted cells: the other query path of PrefixCounts.
    snapshot = WindowedCounts.from_bytes(replica.counts.to_bytes(), MONITORS)
    for (monitor, metric, block, startv, endv, at, node), expected in answers:
        assert snapshot.count(monitor, metric, block, startv, endv, at, NOW, node) == expected


def test_zero_prefix_counts_every_address_of_one_family_only() -> None:
    events = [Ev("n", NOW, 4, V4_POOL[i], 0, i + 1) for i in range(len(V4_POOL))]
    events += [Ev("n", NOW, 6, V6_POOL[0], 0, 1000)]
    replica = Replica(MONITORS)
    apply_in_batches(events, replica, via_wire=True)
    v4_all = replica.counts.count(MONITORS[0], 0, block_of(4, 0, 0), 0, 0, NOW, NOW, None)
    v6_all = replica.counts.count(MONITORS[0], 0, block_of(6, 0, 0), 0, 0, NOW, NOW, None)
    assert (v4_all, v6_all) == (sum(range(1, len(V4_POOL) + 1)), 1000)


def test_duplicate_overlapping_and_gapped_deltas() -> None:
    replica = Replica(MONITORS)
    events = [Ev("n", NOW, 4, V4_POOL[0], 0, 1 << i) for i in range(4)]  # n = 1, 2, 4, 8: offsets 10..13

    def delta(first: int, last: int, prev: int):
        part = events[first - 10 : last - 9]
        return delta_from_decoded(to_decoded(part), 3, one_message_each(part, first), prev)

    def total() -> int:
        return replica.counts.count(MONITORS[0], 0, block_of(4, V4_POOL[0], 32), 0, 0, NOW, NOW, "n")

    assert replica.apply(delta(10, 11, -1), NOW) == "applied"
    assert replica.apply(delta(10, 11, -1), NOW) == "duplicate"
    assert replica.apply(delta(13, 13, 12), NOW) == "gap"  # offset 12 was never applied here
    assert total() == 3
    assert replica.apply(decode_delta(encode_delta(delta(11, 12, 10))), NOW) == "applied"  # overlap: only 12
    assert (total(), replica.next_offset(3)) == (7, 13)
    assert replica.apply(delta(13, 13, 12), NOW) == "applied"
    assert total() == 15


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=12), st.data())
def test_any_interleaving_of_two_writers_counts_each_message_once(sizes: list[int], data: st.DataObject) -> None:
    """A zombie and the new owner chunk the same messages differently; every order of their deltas
    that keeps each writer's own order (as one log partition does) counts each message exactly once."""
    messages = [[Ev("n", NOW, 4, V4_POOL[i % len(V4_POOL)], 0, i + 1)] * size for i, size in enumerate(sizes)]

    def writer(start: int, prev: int, cuts: list[int]) -> list:
        deltas, begin = [], start
        for cut in sorted({c for c in cuts if start < c < len(messages)}) + [len(messages)]:
            part = messages[begin:cut]
            flat = [e for m in part for e in m]
            ends = [(begin + k, sum(len(m) for m in part[: k + 1]), 0) for k in range(len(part))]
            deltas.append(delta_from_decoded(to_decoded(flat), 0, ends, prev))
            prev, begin = cut - 1, cut
        return deltas

    zombie = writer(0, -1, data.draw(st.lists(st.integers(1, len(messages)), max_size=4)))
    # The new owner resumes after what its replica had read of the log: some of the zombie's deltas.
    seen = data.draw(st.integers(0, len(zombie) - 1))
    head, tail, order = zombie[:seen], zombie[seen:], []
    takeover = head[-1].last_offset + 1 if head else 0
    owner = writer(takeover, takeover - 1, data.draw(st.lists(st.integers(1, len(messages)), max_size=4)))
    picks = data.draw(st.lists(st.booleans(), min_size=len(tail) + len(owner), max_size=len(tail) + len(owner)))
    a, b = list(tail), list(owner)
    for pick in picks:
        order.append((a if (pick and a) or not b else b).pop(0))
    replica = Replica(MONITORS)
    outcomes = [replica.apply(d, NOW) for d in head + order]
    assert "gap" not in outcomes
    everything = [e for m in messages for e in m]
    assert replica.counts.count(MONITORS[0], 0, block_of(4, 0, 0), 0, 0, NOW, NOW, None) == sum(e.n for e in everything)


def test_expire_frees_windows_and_expired_windows_answer_zero() -> None:
    replica = Replica(MONITORS)
    apply_in_batches([Ev("n", NOW - 200, 4, V4_POOL[0], 0, 1)], replica, via_wire=False)
    monitor = MONITORS[1]
    block = block_of(4, V4_POOL[0], 32)
    assert replica.counts.count(monitor, 0, block, 0, 5, NOW, NOW, None) == 1
    later = NOW + 8000  # past the longest span kept (1800 s x 4)
    assert replica.counts.count(monitor, 0, block, 0, 5, NOW, later, None) == 0
    assert replica.counts.expire(later) > 0
    assert list(replica.counts.window_starts(monitor)) == []
    assert replica.counts.nbytes == 0


sessions_st = st.lists(
    st.tuples(
        st.sampled_from(("open", "open", "close", "reset")),
        st.sampled_from(NODES),
        addresses,
        st.sampled_from(("SMTP", "ECStream")),
    ),
    max_size=80,
)


@settings(max_examples=150, deadline=None)
@given(sessions_st, st.integers(0, 128), st.integers(0, 10**6), st.sampled_from((None, *NODES)))
def test_session_gauge_matches_replayed_oracle(ops: list, prefix: int, pick: int, node: str | None) -> None:
    gauge = SessionGauge()
    gauge.apply([(kind, nd, fa[0], fa[1], svc) for kind, nd, fa, svc in ops])
    level: dict[tuple, int] = {}
    for kind, nd, (family, addr), svc in ops:
        if kind == "reset":
            for key in [k for k in level if k[0] == nd]:
                level[key] = 0
        else:
            key = (nd, svc, family, addr)
            level[key] = max(0, level.get(key, 0) + (1 if kind == "open" else -1))
    evs = [Ev(nd, NOW, fa[0], fa[1], 0, 1) for _, nd, fa, _ in ops]
    block = make_block(evs, prefix, pick)
    for service in ("SMTP", "ECStream"):
        expected = sum(
            v
            for (nd, svc, fam, addr), v in level.items()
            if svc == service and fam == block.family and block.lo <= addr <= block.hi and (node is None or nd == node)
        )
        assert gauge.count(block, service, node) == expected


def test_corrupt_state_records_are_refused_with_value_error() -> None:
    good = encode_delta(delta_from_decoded(to_decoded([Ev("n", NOW, 6, V6_POOL[0], 1, 2)]), 0, [(0, 1, 0)]))
    assert decode_delta(good).v6.n.tolist() == [2]
    for bad in (None, b"", b"junk", good[:-3], good + b"x", good[:8] + b"[" + good[9:], b"IAD1\x00\x00\x00\x02{}"):
        with pytest.raises(ValueError):
            decode_delta(bad)
