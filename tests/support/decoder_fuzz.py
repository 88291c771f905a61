"""Differential fuzzing of the native decoder against the Python reference.

Inputs are mutations of valid event batches (byte flips, inserted and deleted runs, spliced
tokens that sit on the SPEC's edges); each batch of records goes through both decoders and the
results (Delta columns, spans, nodes, sessions, rejections with detail and value) must be equal.
Run ``python tests/support/decoder_fuzz.py --inputs 1000000`` (``make fuzz-decoder``); the unit
tests run a short version.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Sequence
from typing import Any

import orjson

from pipeline.core.decoding import BatchDecoder, OffsetRejection
from pipeline.core.delta import Delta
from pipeline.core.series import SeriesDef
from pipeline.core.windows import Monitor

__all__ = [
    "NOW_MS",
    "MONITORS",
    "FUTURE_S",
    "SERIES",
    "TOKENS",
    "decoders",
    "outcome",
    "mutated_message",
    "mutate_bytes",
    "fuzz",
    "main",
]

NOW_MS = 1_700_000_000_000
MONITORS = (Monitor(60, 1), Monitor(300, 6), Monitor(1800, 4))
FUTURE_S = 300.0
#: Series the decoders know (series events of other names are ``unknown_series``).
SERIES = {
    d.name: d
    for d in (
        SeriesDef("fails", "cidr", 60, 5),
        SeriesDef("fails6", "cidr_ipv6", 300, 2, prefix_len=64),
        SeriesDef("senders", "string", 30, 3),
    )
}

#: Tokens on the edges of the SPEC and of JSON, spliced into valid messages.
TOKENS = [
    b'"\\ud800"',
    b'"\\udc00"',
    b'"\\ud83d\\ude00"',
    b'"\\u0000"',
    b"\xff",
    b"\xed\xa0\x80",
    b"\xc3\xa9",
    b"\xf4\x90\x80\x80",
    b"1e400",
    b"-1e400",
    b"1e-400",
    b"-0",
    b"-0.0",
    b"0.1",
    b"1E2",
    b"01",
    b"1.",
    b".5",
    b"+1",
    b"18446744073709551616",
    b"18446744073709551615",
    b"-9223372036854775809",
    b"9007199254740993",
    b"2147483647",
    b"2147483648",
    b"1.0",
    b"true",
    b"false",
    b"null",
    b"NaN",
    b"Infinity",
    b"[]",
    b"{}",
    b"[" * 70 + b"]" * 70,
    b"[" * 1100 + b"]" * 1100,
    b'"::ffff:1.2.3.4"',
    b'"::FFFF:0a00:0009"',
    b'"01.2.3.4"',
    b'"1.2.3"',
    b'"fe80::1%eth0"',
    b'"[::1]"',
    b'" 1.2.3.4"',
    b'"2001:db8::1"',
    b'"0.0.0.0"',
    b'"255.255.255.255"',
    b'"::"',
    b'"1::2::3"',
    b'"1.2.3.4\\n"',
    b'"\\u0031.2.3.4"',
    b'"session_open"',
    b'"session_close"',
    b'"node_reset"',
    b'"reception"',
    b'"rejection"',
    b'"bogus"',
    b'"n"',
    b'"ts"',
    b'"node"',
    b'"ip"',
    b'"event"',
    b'"service"',
    b'"x"',
    b'"' + b"n" * 256 + b'"',
    b'"' + "é".encode() * 255 + b'"',
    b"1699992000",
    b"1699992799.999",
    b"1700000300",
    b"1700000300.0001",
    b"1699999999.5",
    b",",
    b":",
    b" ",
    b"\t",
    b"\n",
    b'"a\\"b"',
    b'"\\/"',
    b'"\\x"',
    b"\x00",
    b"\x1f",
    b'"\x7f"',
]
_IPS = ["10.0.0.1", "192.0.2.66", "2001:db8::25", "::ffff:198.51.100.7", "::1", "0.0.0.0", "2001:DB8:0:0:0:0:0:1"]
_EVENTS = ["connection", "reception", "rejection", "session_open", "session_close", "node_reset"]
_SERIES_EVENTS = ["series_add", "series_remove"]


def decoders() -> tuple[BatchDecoder, BatchDecoder]:
    """(native, python) with the same clock settings."""
    return (
        BatchDecoder(MONITORS, FUTURE_S, "native", SERIES.get),
        BatchDecoder(MONITORS, FUTURE_S, "python", SERIES.get),
    )


def outcome(result: tuple[Delta, list[OffsetRejection]]) -> tuple[Any, ...]:
    """Everything a decode gives, as plain comparable values."""
    delta, rejected = result
    columns = [
        (cols.family, cols.sec.tolist(), cols.metric.tolist(), cols.node.tolist(), cols.key.tolist(), cols.n.tolist())
        for cols in (delta.v4, delta.v6)
    ]
    series = (delta.series.ops(), delta.series_ends)
    return delta.partition, delta.prev_offset, delta.spans, delta.nodes, columns, delta.sessions, series, rejected


def _event(rng: random.Random, now_ms: int) -> dict[str, Any]:
    event: dict[str, Any] = {
        "node": rng.choice(["mx1", "mx2", "é" * 3]),
        "ts": rng.choice([now_ms / 1000 - rng.uniform(0, 8000), now_ms // 1000 - rng.randrange(8000)]),
        "ip": rng.choice(_IPS),
        "event": rng.choice(_EVENTS),
    }
    if rng.random() < 0.3:
        event["n"] = rng.choice([1, 2, 2**31 - 1])
    if rng.random() < 0.2:
        event["service"] = rng.choice(["SMTP", "IMAP"])
    if rng.random() < 0.2:
        event["extra"] = rng.choice([[1, {"a": None}], "x", 1.5])
    if rng.random() < 0.3:
        event["event"] = rng.choice(_SERIES_EVENTS)
        event["series"] = rng.choice([*SERIES, "nope"])
        event["key"] = rng.choice([*_IPS, "alice", ""])
        del event["ip"]
        if rng.random() < 0.5:
            event["count"] = rng.choice([1, -3, 0, 2**31 - 1, 2**31, True])
    return event


_SLOT = "\x00slot"
_SLOT_JSON = orjson.dumps(_SLOT)


def mutated_message(rng: random.Random, now_ms: int = NOW_MS) -> bytes:
    """A valid one-event or array message (event times up to 8,000 s before ``now_ms``), some
    field values swapped for edge tokens, then zero to three byte-level mutations (most of
    which break the JSON)."""
    events = [_event(rng, now_ms) for _ in range(rng.randrange(1, 6))]
    for _ in range(rng.choice([0, 1, 1, 2])):
        rng.choice(events)[rng.choice(["node", "ts", "ip", "event", "n", "service", "extra", "key", "count"])] = _SLOT
    data = bytearray(orjson.dumps(events if rng.random() < 0.8 else events[0]))
    while _SLOT_JSON in data:
        data = data.replace(_SLOT_JSON, rng.choice(TOKENS), 1)
    return mutate_bytes(data, rng)


def mutate_bytes(data: bytearray, rng: random.Random) -> bytes:
    """Zero to three byte-level mutations of ``data``: a byte flipped, an edge token inserted, a
    run deleted (truncation at the end), the 20 bytes before repeated (a splice), or a value
    replaced by an edge token."""
    for _ in range(rng.choice([0, 0, 0, 1, 1, 2, 3])):
        at = rng.randrange(len(data) + 1)
        how = rng.randrange(5)
        if how == 0 and at < len(data):
            data[at] = rng.randrange(256)
        elif how == 1:
            data[at:at] = rng.choice(TOKENS)
        elif how == 2:
            del data[at : at + rng.randrange(1, 8)]
        elif how == 3:
            data[at:at] = data[max(0, at - 20) : at]
        else:
            end = data.find(b",", at)
            data[at : end if end > 0 else at] = rng.choice(TOKENS)
    return bytes(data)


def _records(messages: Sequence[bytes], rng: random.Random) -> tuple[list[bytes], list[int], list[int]]:
    timestamps = [NOW_MS + rng.randrange(-600_000, 600_000) for _ in messages]
    return list(messages), list(range(100, 100 + len(messages))), timestamps


def fuzz(inputs: int, seed: int, per_batch: int = 50) -> tuple[int, tuple[bytes, int] | None]:
    """Compare both decoders on ``inputs`` mutated messages; (count, first disagreeing message
    and its record timestamp in ms)."""
    native, python = decoders()
    rng = random.Random(seed)
    done = 0
    while done < inputs:
        messages = [mutated_message(rng) for _ in range(min(per_batch, inputs - done))]
        values, offsets, timestamps = _records(messages, rng)
        if outcome(native.decode(0, 99, values, offsets, timestamps)) != outcome(
            python.decode(0, 99, values, offsets, timestamps)
        ):
            for i, message in enumerate(messages):
                args = ([message], [offsets[i]], [timestamps[i]])
                if outcome(native.decode(0, 99, *args)) != outcome(python.decode(0, 99, *args)):
                    return done + i, (message, timestamps[i])
        done += len(messages)
    return done, None


def main(argv: Sequence[str] | None = None) -> int:
    """Print one summary line; exit status 1 on the first disagreement (printed with its input)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    done, bad = fuzz(args.inputs, args.seed)
    elapsed = time.perf_counter() - start
    if bad is not None:
        print(f"decoder fuzz: DISAGREE after {done:,} inputs (seed {args.seed}) on {bad[0]!r} at {bad[1]} ms")
        return 1
    print(f"decoder fuzz: {done:,} inputs, native and Python decoders agree (seed {args.seed}, {elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
