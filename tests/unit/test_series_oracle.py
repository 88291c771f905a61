"""Series counting against a brute-force oracle: every type, CIDR form, range, negative counts,
removes interleaved with adds in any order and chunking, prefix_len truncation, snapshots.

The oracle shares no code with the store: addresses go through ``ipaddress``, windows through
plain arithmetic, removes through "the largest remove ts of the key", and every answer is a
filtered sum over the list of operations.
"""

from __future__ import annotations

import ipaddress
import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.core.cidr import Block
from pipeline.core.series import SeriesDef, parse_series, parse_series_list
from pipeline.core.series_counts import SERIES_ADD, SERIES_REMOVE, SeriesCounts

NOW = 1_764_000_123.25
NODES = ("mta-a", "mta-b", "mta-c")
V4_POOL = [int(ipaddress.ip_address(a)) for a in ("10.0.0.1", "10.0.0.2", "10.0.1.7", "192.0.2.255", "0.0.0.0")]
V6_POOL = [int(ipaddress.ip_address(a)) for a in ("2001:db8::1", "2001:db8::2", "2001:db8:0:1::5", "fe80::1", "::1")]
STRINGS = ("alice@example.com", "bob", "Bob", "x" * 255, "ünïcode")

SERIES = (
    SeriesDef("v4", "cidr", 60, 5),
    SeriesDef("v6", "cidr_ipv6", 300, 3),
    SeriesDef("v6.trunc", "cidr_ipv6", 7, 4, prefix_len=64),
    SeriesDef("v6.trunc33", "cidr_ipv6", 60, 2, prefix_len=33),
    SeriesDef("names", "string", 30, 6),
)


def truncated(definition: SeriesDef, addr: int) -> int:
    if definition.prefix_len is None:
        return addr
    return int(ipaddress.IPv6Network((addr, definition.prefix_len), strict=False).network_address)


def raw_key(definition: SeriesDef, draw_index: int, wide: int) -> int | str:
    if definition.type == "string":
        return STRINGS[draw_index % len(STRINGS)]
    pool = V4_POOL if definition.type == "cidr" else V6_POOL
    return pool[draw_index % len(pool)] if draw_index >= 0 else wide % (2**32 if definition.type == "cidr" else 2**128)


ops_st = st.lists(
    st.tuples(
        st.sampled_from((SERIES_ADD, SERIES_ADD, SERIES_ADD, SERIES_REMOVE)),
        st.sampled_from(SERIES),
        st.sampled_from(NODES),
        st.one_of(st.floats(NOW - 1500, NOW + 1, allow_nan=False), st.sampled_from([NOW - 60.0, NOW - 59.5, NOW])),
        st.integers(-3, len(V6_POOL) * 2),
        st.integers(0, 2**130),
        st.one_of(st.integers(-5, 5), st.sampled_from([2**31 - 1, -(2**31 - 1)])),
    ),
    max_size=80,
)


def oracle(
    ops: list[tuple],
    definition: SeriesDef,
    query: Block | str,
    startv: int,
    endv: int,
    at: float,
    now: float,
    node: str | None,
) -> int:
    size, num = definition.interval, definition.num_windows
    wanted = {math.floor(at / size) * size - k * size for k in range(startv, endv + 1)}
    oldest = math.floor(now / size) * size - (num - 1) * size
    removed: dict = {}
    for kind, d, _, ts, key, _ in ops:
        if kind == SERIES_REMOVE and d == definition:
            removed[key] = max(ts, removed.get(key, -math.inf))
    total = 0
    for kind, d, nd, ts, key, count in ops:
        start = math.floor(ts / size) * size
        if kind != SERIES_ADD or d != definition or start not in wanted or start < oldest:
            continue
        if node is not None and nd != node or ts <= removed.get(key, -math.inf):
            continue
        inside = key == query if isinstance(query, str) else query.lo <= key <= query.hi
        total += count if inside else 0
    return total


def to_ops(raw: list[tuple]) -> list[tuple]:
    """Keys as the decoder hands them over: truncated to the series' prefix_len."""
    out = []
    for kind, definition, node, ts, index, wide, count in raw:
        key = raw_key(definition, index, wide)
        if definition.type != "string":
            key = truncated(definition, key)
        out.append((kind, definition, node, ts, key, count))
    return out


def queries(definition: SeriesDef, ops: list[tuple], rng: random.Random) -> list[Block | str]:
    if definition.type == "string":
        return [*STRINGS, "missing"]
    family, width = (4, 32) if definition.type == "cidr" else (6, 128)
    hosts = [op[4] for op in ops if op[1] == definition] + (V4_POOL if family == 4 else V6_POOL)
    blocks = []
    for prefix in sorted({0, width, rng.randrange(width + 1), rng.randrange(width + 1), 24 % (width + 1), 64 % width}):
        host = rng.choice(hosts)
        net = (ipaddress.IPv4Network if family == 4 else ipaddress.IPv6Network)((host, prefix), strict=False)
        block = Block(family, prefix, int(net.network_address), int(net.broadcast_address))
        blocks.append(definition.query_block(block))
    return blocks


@settings(max_examples=150, deadline=None)
@given(ops_st, st.integers(1, 4), st.randoms(use_true_random=False))
def test_series_counts_equal_the_oracle_in_any_order_and_chunking(raw, chunks, rng):
    ops = to_ops(raw)
    shuffled = ops[:]
    rng.shuffle(shuffled)
    store = SeriesCounts()
    cut = sorted(rng.randrange(len(shuffled) + 1) for _ in range(chunks - 1))
    for lo, hi in zip([0, *cut], [*cut, len(shuffled)], strict=True):
        store.apply_ops(shuffled[lo:hi], NOW)
    restored = SeriesCounts.restore(store.export())
    for definition in SERIES:
        for query in queries(definition, ops, rng):
            for startv, endv in ((0, 0), (0, definition.num_windows - 1), (1, 2), (3, 3)):
                for node in (None, *NODES):
                    expected = oracle(ops, definition, query, startv, endv, NOW, NOW, node)
                    assert store.count(definition, query, startv, endv, NOW, NOW, node) == expected
                    assert restored.count(definition, query, startv, endv, NOW, NOW, node) == expected


@settings(max_examples=60, deadline=None)
@given(ops_st)
def test_expiry_forgets_only_windows_the_series_no_longer_keeps(raw):
    ops = to_ops(raw)
    store = SeriesCounts()
    store.apply_ops(ops, NOW)
    later = NOW + 400
    store.expire(later)
    for definition in SERIES:
        for query in queries(definition, ops, random.Random(1)):
            expected = oracle(ops, definition, query, 0, definition.num_windows - 1, later, later, None)
            assert store.count(definition, query, 0, definition.num_windows - 1, later, later, None) == expected


def test_a_remove_before_its_adds_and_after_them_decide_the_same():
    definition = SeriesDef("names", "string", 60, 3)
    adds = [(SERIES_ADD, definition, "n1", NOW - 5, "k", 4), (SERIES_ADD, definition, "n2", NOW - 1, "k", 2)]
    remove = [(SERIES_REMOVE, definition, "n3", NOW - 3, "k", 1)]
    first, second = SeriesCounts(), SeriesCounts()
    first.apply_ops(adds + remove, NOW)
    second.apply_ops(remove, NOW)
    second.apply_ops(adds, NOW)
    assert first.count(definition, "k", 0, 2, NOW, NOW, None) == 2
    assert second.count(definition, "k", 0, 2, NOW, NOW, None) == 2
    assert first.count(definition, "k", 0, 2, NOW, NOW, "n2") == 2


def test_definition_text_round_trips_and_conflicting_duplicates_are_refused():
    definition = parse_series("auth.fail:cidr_ipv6:300,6:64")
    assert definition == SeriesDef("auth.fail", "cidr_ipv6", 300, 6, 64)
    assert parse_series(definition.text) == definition
    assert parse_series_list("a:cidr:60,1 a:cidr:60,1") == (SeriesDef("a", "cidr", 60, 1),)
    for bad in ("a:cidr:60", "a:cidr:60,0", "a:cidr:60,1:24", "a b:string:1,1", "a:ipv4:60,1", "a:cidr_ipv6:1,1:129"):
        try:
            parse_series_list(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} was accepted")
    try:
        parse_series_list("a:cidr:60,1 a:cidr:60,2")
    except ValueError as exc:
        assert "defined twice differently" in str(exc)
    else:
        raise AssertionError("a conflicting duplicate was accepted")
