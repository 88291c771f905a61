"""Decode cost per event, raw message bytes to a ``Delta``: the Python reference and the native
decoder side by side in the same run, on 1,000- and 10,000-event messages.

Run: ``python benchmarks/bench_decode.py``. "cold" gives every event a new address and a fresh
decoder per run (address-cache misses in Python), "warm" cycles through 50 addresses with one
decoder kept across runs (cache hits). ``orjson.loads`` alone is the floor a Python decoder
cannot go under. Prints the median of several runs; ratios are within this run.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import orjson

from pipeline.core.decoding import NATIVE, BatchDecoder
from pipeline.core.windows import parse_monitors

__all__ = ["main", "ipv4_address", "ipv6_address"]

EVENTS_PER_BATCH = 20_000
RUNS = 7
NOW = 1_700_000_000.0
MONITORS = parse_monitors("60,1 300,6 1800,4")


def ipv4_address(i: int) -> str:
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


def ipv6_address(i: int) -> str:
    return f"2001:db8:{(i >> 32) & 0xFFFF:x}:{(i >> 16) & 0xFFFF:x}::{i & 0xFFFF:x}"


def _messages(make_ip: Callable[[int], str], size: int, distinct: bool) -> list[bytes]:
    """Arrays of ``size`` mixed windowed events, ``EVENTS_PER_BATCH`` events in all."""
    metrics = ("connection", "reception", "rejection")
    messages = []
    for m in range(EVENTS_PER_BATCH // size):
        batch = []
        for j in range(size):
            i = m * size + j + 1 if distinct else j % 50 + 1
            batch.append(
                {"node": "mx01.example.net", "ts": NOW - (j % 600) - 0.25, "ip": make_ip(i), "event": metrics[j % 3]}
            )
        messages.append(orjson.dumps(batch))
    return messages


def _decode_us(messages: list[bytes], make: Callable[[], BatchDecoder]) -> float:
    """Microseconds per event for one batch of ``messages`` to one Delta."""
    decoder = make()
    offsets = list(range(len(messages)))
    stamps = [int(NOW * 1000)] * len(messages)
    start = time.perf_counter()
    delta, rejected = decoder.decode(0, -1, messages, offsets, stamps)
    elapsed = time.perf_counter() - start
    assert delta.event_count == EVENTS_PER_BATCH and not rejected
    return elapsed / EVENTS_PER_BATCH * 1e6


def _loads_us(messages: list[bytes]) -> float:
    start = time.perf_counter()
    for raw in messages:
        orjson.loads(raw)
    return (time.perf_counter() - start) / EVENTS_PER_BATCH * 1e6


def _median(measure: Callable[[], float]) -> float:
    return statistics.median(measure() for _ in range(RUNS))


def _case(messages: list[bytes], names: list[str], distinct: bool) -> dict[str, float]:
    """Median us/event per decoder name; "cold" builds a new decoder per run, "warm" keeps one."""
    us = {}
    for name in names:
        kept = BatchDecoder(MONITORS, 300.0, name)

        def make(name: str = name, kept: BatchDecoder = kept) -> BatchDecoder:
            return BatchDecoder(MONITORS, 300.0, name) if distinct else kept

        us[name] = _median(lambda make=make: _decode_us(messages, make))
    return us


def main() -> None:
    """One line per case: orjson floor, Python and native us/event and events/s, and the ratios."""
    names = ["python"] + (["native"] if NATIVE is not None else [])
    if NATIVE is None:
        print("native decoder not built (no cargo at install time): Python only")
    for family, make_ip in (("IPv4", ipv4_address), ("IPv6", ipv6_address)):
        for size in (1_000, 10_000):
            for distinct in (True, False):
                messages = _messages(make_ip, size, distinct)
                us = _case(messages, names, distinct)
                loads = _median(lambda messages=messages: _loads_us(messages))
                line = (
                    f"{family} {size:>6,}-event msgs, {'cold' if distinct else 'warm'}: orjson.loads {loads:5.3f} us/ev"
                )
                for name, value in us.items():
                    line += f" | {name} {value:5.3f} us/ev {1 / value:5.2f} M ev/s"
                if len(us) == 2:
                    line += f" | native {us['python'] / us['native']:4.1f}x python, {loads / us['native']:4.2f}x loads"
                print(line)


if __name__ == "__main__":
    main()
