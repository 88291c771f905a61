"""Micro-benchmark of ``EventDecoder.decode``: microseconds per event, JSON parsing included.

Run: ``python benchmarks/bench_decode.py``. Each case decodes 1,000-event JSON arrays; "distinct"
uses a new address per event (IP-cache misses: a fresh parser per run), "repeated" cycles
through 50 addresses (cache hits after the first message). Prints the median of several runs.
"""

from __future__ import annotations

import statistics
import time

import orjson

from pipeline.core.cidr import IpParser
from pipeline.core.events import EventDecoder

__all__ = ["main"]

EVENTS = 1_000
MESSAGES = 20
RUNS = 7
NOW = 1_700_000_000.0


def ipv4_address(i: int) -> str:
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


def ipv6_address(i: int) -> str:
    return f"2001:db8:{(i >> 32) & 0xFFFF:x}:{(i >> 16) & 0xFFFF:x}::{i & 0xFFFF:x}"


def _messages(make_ip, distinct: bool) -> list[bytes]:
    """``MESSAGES`` arrays of ``EVENTS`` mixed windowed events, as MTAs would send them."""
    metrics = ("connection", "reception", "rejection")
    messages = []
    for m in range(MESSAGES):
        batch = []
        for j in range(EVENTS):
            i = m * EVENTS + j + 1 if distinct else j % 50 + 1
            batch.append(
                {
                    "node": "mx01.example.net",
                    "ts": NOW - (j % 600) - 0.25,
                    "ip": make_ip(i),
                    "event": metrics[j % 3],
                }
            )
        messages.append(orjson.dumps(batch))
    return messages


def _run(messages: list[bytes]) -> float:
    """Microseconds per event for one pass over ``messages`` with a cold IP cache."""
    decoder = EventDecoder(IpParser())
    start = time.perf_counter()
    for raw in messages:
        batch = decoder.decode(raw, now_s=NOW, oldest_kept_s=NOW - 7200)
    elapsed = time.perf_counter() - start
    assert len(batch.node) == EVENTS and not batch.rejected
    return elapsed / (len(messages) * EVENTS) * 1e6


def _loads_only(messages: list[bytes]) -> float:
    start = time.perf_counter()
    for raw in messages:
        orjson.loads(raw)
    return (time.perf_counter() - start) / (len(messages) * EVENTS) * 1e6


def main() -> None:
    """Print median microseconds per event per case."""
    for family, make_ip in (("IPv4", ipv4_address), ("IPv6", ipv6_address)):
        for distinct in (True, False):
            messages = _messages(make_ip, distinct)
            total = statistics.median(_run(messages) for _ in range(RUNS))
            loads = statistics.median(_loads_only(messages) for _ in range(RUNS))
            label = "distinct IPs (cache misses)" if distinct else "repeated IPs (cache hits) "
            print(f"{family} {label}: {total:5.2f} us/event total (orjson.loads alone: {loads:5.2f})")


if __name__ == "__main__":
    main()
