"""Benchmark of the counting core (no Kafka): ingest rate, query latency, memory per address.

Run: ``python benchmarks/bench_core.py``. Prints medians; targets from the issue are shown beside
them. Numbers depend on the CPU: the calibration line (``sum(range(1000))``) lets runs on
different machines be compared.

* ingest: raw JSON batch bytes (1,000 events per array) -> decoded -> delta -> counted in every
  default monitor, for both the node and the fleet scope (what one worker does per event), with
  the Python and (when built) the native decoder, and the share of the time spent applying; and
  the same for ``series_add`` events of a cidr series, with their rate as a share of the IPv4 one
  (issue 15: the same order).
* apply: the same deltas applied with numpy's and the native merge of ``PrefixCounts``,
  alternating rounds.
* query: ``count`` for /32, /24, /16 and /0 with 1,000,000 distinct IPv4 addresses in one window.
* memory: tracemalloc bytes per distinct address per window, for one cell and for both scopes.
"""

from __future__ import annotations

import gc
import random
import statistics
import time
import timeit
import tracemalloc

import numpy as np
import orjson
from bench_decode import ipv4_address, ipv6_address  # run as a script: benchmarks/ is on sys.path

from pipeline.core import prefix_counts
from pipeline.core.cidr import Block
from pipeline.core.decoding import NATIVE, BatchDecoder
from pipeline.core.delta import decode_delta, delta_from_decoded, encode_delta
from pipeline.core.events import DecodedBatch
from pipeline.core.replica import Replica
from pipeline.core.series import SeriesDef
from pipeline.core.windows import parse_monitors

MONITORS = parse_monitors("60,1 300,6 1800,4")
NOW = 1_764_000_000.0 + 150
MESSAGES = 200
EVENTS_PER_MESSAGE = 1_000
RUNS = 5
DECODERS = ["python"] + (["native"] if NATIVE is not None else [])
SERIES = {"auth_failures": SeriesDef("auth_failures", "cidr", 300, 6)}


def _series_messages(rng: random.Random) -> list[bytes]:
    """``series_add`` events of one cidr series, with IPv4 keys and counts, as an MTA sends them."""
    out = []
    for m in range(MESSAGES):
        batch = [
            {
                "node": f"mta-{m % 4}",
                "ts": NOW - rng.random() * 120,
                "event": "series_add",
                "series": "auth_failures",
                "key": ipv4_address(rng.randrange(200_000)),
                "count": 1 + j % 3,
            }
            for j in range(EVENTS_PER_MESSAGE)
        ]
        out.append(orjson.dumps(batch))
    return out


def _messages(make_ip, rng: random.Random, count: int = MESSAGES) -> list[bytes]:
    metrics = ("connection", "connection", "reception", "rejection")
    out = []
    for m in range(count):
        batch = [
            {
                "node": f"mta-{m % 4}",
                "ts": NOW - rng.random() * 120,
                "ip": make_ip(rng.randrange(200_000)),
                "event": metrics[j % 4],
            }
            for j in range(EVENTS_PER_MESSAGE)
        ]
        out.append(orjson.dumps(batch))
    return out


def _ingest_rate(messages: list[bytes], per_batch: int, decoder_name: str) -> tuple[float, float]:
    """Events/s through decode -> delta -> wire -> apply, ``per_batch`` messages per delta, and
    the share of that time spent applying deltas to the counts."""
    decoder = BatchDecoder(MONITORS, 300.0, decoder_name, SERIES.get)
    replica = Replica(MONITORS)
    stamp = int(NOW * 1000)
    applying = 0.0
    start = time.perf_counter()
    for first in range(0, len(messages), per_batch):
        chunk = messages[first : first + per_batch]
        offsets = list(range(first, first + len(chunk)))
        delta, _ = decoder.decode(0, first - 1, chunk, offsets, [stamp] * len(chunk))
        delta = decode_delta(encode_delta(delta))
        before_apply = time.perf_counter()
        replica.apply(delta, NOW)
        applying += time.perf_counter() - before_apply
    elapsed = time.perf_counter() - start
    return len(messages) * EVENTS_PER_MESSAGE / elapsed, applying / elapsed


def _apply_rates(rng: random.Random) -> dict[str, float]:
    """Events/s applying the same 10^6 events (70% IPv4, 30% IPv6, 15 messages per delta) with each
    merge of ``prefix_counts``, alternating rounds: once cells hold 10^5 addresses, merging
    buffered inserts is much of what applying costs."""
    messages = _messages(ipv4_address, rng, 700) + _messages(ipv6_address, rng, 300)
    rng.shuffle(messages)
    decoder = BatchDecoder(MONITORS, 300.0, DECODERS[-1])
    stamp = int(NOW * 1000)
    deltas = []
    for first in range(0, len(messages), 15):
        chunk = messages[first : first + 15]
        delta, _ = decoder.decode(0, first - 1, chunk, list(range(first, first + len(chunk))), [stamp] * len(chunk))
        deltas.append(decode_delta(encode_delta(delta)))
    merges = {"numpy": prefix_counts.merge_numpy}
    if NATIVE is not None:
        merges["native"] = prefix_counts.merge_native
    times: dict[str, list[float]] = {name: [] for name in merges}
    in_use = prefix_counts.MERGE
    try:
        for _ in range(RUNS):
            for name, merge in merges.items():
                prefix_counts.MERGE = merge  # read by every cell's compact()
                gc.collect()
                replica = Replica(MONITORS)
                start = time.perf_counter()
                for delta in deltas:
                    replica.apply(delta, NOW)
                times[name].append(time.perf_counter() - start)
    finally:
        prefix_counts.MERGE = in_use
    return {name: len(messages) * EVENTS_PER_MESSAGE / statistics.median(runs) for name, runs in times.items()}


def _big_store(n_ips: int) -> tuple[Replica, np.ndarray]:
    rng = np.random.default_rng(1)
    addrs = rng.choice(2**32, size=n_ips, replace=False).astype(np.uint32)
    replica = Replica((MONITORS[1],))
    decoded = DecodedBatch(
        node=["mta-1"] * n_ips,
        ts=[NOW] * n_ips,
        family=[4] * n_ips,
        addr=addrs.tolist(),
        metric=[0] * n_ips,
        n=[1] * n_ips,
    )
    replica.apply(delta_from_decoded(decoded, 0, [(0, len(decoded.node), 0)]), NOW)
    return replica, addrs


def _query_latency(replica: Replica, addrs: np.ndarray, prefix: int) -> tuple[float, float]:
    counts, monitor = replica.counts, MONITORS[1]
    samples = []
    for addr in addrs[:2000].tolist():
        host = (1 << (32 - prefix)) - 1
        block = Block(4, prefix, addr & ~host, (addr & ~host) | host)
        t0 = time.perf_counter()
        counts.count(monitor, 0, block, 0, 0, NOW, NOW, None)
        samples.append(time.perf_counter() - t0)
    samples.sort()
    return statistics.median(samples) * 1e6, samples[int(len(samples) * 0.99)] * 1e6


def _memory_per_ip(n_ips: int) -> tuple[float, float]:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    replica, _ = _big_store(n_ips)
    for cell in replica.counts.window_cells(MONITORS[1], MONITORS[1].window_start(NOW)).values():
        cell.compact()
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    cells = len(replica.counts.window_cells(MONITORS[1], MONITORS[1].window_start(NOW)))
    return used / n_ips, used / n_ips / cells


def main() -> None:
    calib = min(timeit.repeat("sum(range(1000))", number=2000, repeat=5)) / 2000 * 1e6
    print(f"cpu calibration: sum(range(1000)) = {calib:.1f} us (a typical server core: 8-12 us)")
    rng = random.Random(5)
    inputs = [("IPv4", _messages(ipv4_address, rng)), ("IPv6", _messages(ipv6_address, rng))]
    rates: dict[tuple[str, int, str], float] = {}
    for label, messages in [*inputs, ("series_add", _series_messages(rng))]:
        for per_batch in (1, 20):
            line = f"ingest {label}, {per_batch:>2} message(s) of 1,000 events per delta:"
            for name in DECODERS:
                runs = [_ingest_rate(messages, per_batch, name) for _ in range(RUNS)]
                rate, apply_share = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
                rates[label, per_batch, name] = rate
                line += f" {name} {rate:>10,.0f} events/s ({apply_share:4.0%} applying) |"
            print(line + " target >= 250,000 for IPv4")
    for per_batch in (1, 20):
        shares = [
            f"{name} {rates['series_add', per_batch, name] / rates['IPv4', per_batch, name]:.2f}x" for name in DECODERS
        ]
        print(
            f"series_add / IPv4 events/s, {per_batch:>2} message(s) per delta, same decoder: {', '.join(shares)}"
            " | target: same order (>= ~0.3x of native IPv4)"
        )
    applied = _apply_rates(rng)
    line = ", ".join(f"{name} merge {rate:,.0f} events/s" for name, rate in applied.items())
    if "native" in applied:
        line += f" (native / numpy {applied['native'] / applied['numpy']:.2f}x)"
    print(f"apply 10^6 events (15 messages per delta, 70% IPv4), alternating rounds: {line}")
    replica, addrs = _big_store(1_000_000)
    for prefix in (32, 24, 16, 0):
        p50, p99 = _query_latency(replica, addrs, prefix)
        print(f"query /{prefix:<2} over 1,000,000 IPs: p50 {p50:7.1f} us  p99 {p99:7.1f} us  (target <= 1,000 us)")
    del replica
    per_ip, per_cell = _memory_per_ip(1_000_000)
    print(
        f"memory: {per_ip:.1f} bytes per distinct IP per window (node + fleet scope), "
        f"{per_cell:.1f} per cell  (target <= 150)"
    )


if __name__ == "__main__":
    main()
