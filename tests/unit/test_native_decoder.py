"""The native decoder against the Python reference: same Delta, same rejections, byte for byte.

Skipped when ``pipeline_native`` is not built (no cargo at install time); the Python decoder is
then the only one and ``test_decoding.py`` covers it.
"""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import test_events
from decoder_fuzz import FUTURE_S, MONITORS, NOW_MS, decoders, fuzz, outcome
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.core import events
from pipeline.core.decoding import NATIVE, BatchDecoder
from pipeline.core.windows import Monitor

pytestmark = pytest.mark.skipif(NATIVE is None, reason="native decoder not built (no cargo when installed)")

#: test_events' clock: now 1.7e9 s, oldest kept NOW - 7200 (19 windows of 400 s), 300 s ahead.
_EVENTS_CLOCK = (Monitor(400, 19),)
assert test_events.OLDEST == test_events.NOW - 7200 and test_events.FUTURE == 300


def _agree(values: list[Any], timestamps_ms: list[int] | None = None, monitors: tuple[Monitor, ...] = MONITORS) -> None:
    offsets = list(range(10, 10 + len(values)))
    stamps = timestamps_ms if timestamps_ms is not None else [NOW_MS] * len(values)
    native = BatchDecoder(monitors, FUTURE_S, "native").decode(2, 9, values, offsets, stamps)
    python = BatchDecoder(monitors, FUTURE_S, "python").decode(2, 9, values, offsets, stamps)
    assert outcome(native) == outcome(python)


def _raw_cases() -> Iterator[bytes]:
    """Every parametrized value of test_events.py, as the messages it decodes."""
    for function in vars(test_events).values():
        for mark in getattr(function, "pytestmark", []):
            if mark.name != "parametrize":
                continue
            for case in mark.args[1]:
                for value in case if isinstance(case, tuple) else (case,):
                    if isinstance(value, bytes):
                        yield value
                    elif isinstance(value, str):
                        yield value.encode()
                    elif value is not None:
                        yield orjson.dumps(value)
                        yield orjson.dumps([value, value])


_CASES = list(_raw_cases())


def test_limits_are_the_reference_limits() -> None:
    assert NATIVE is not None
    limits = ("MAX_BATCH_EVENTS", "MAX_MESSAGE_BYTES", "MAX_EVENT_N", "MAX_KEPT_DEPTH")
    assert [getattr(NATIVE, name) for name in limits] == [getattr(events, name) for name in limits]


@settings(max_examples=300, deadline=None)
@given(st.floats() | st.sampled_from([300.0, 0.5, 1e-5, 123456.5, 999999.5, 1e16, 0.0, -0.0]))
def test_format_g_is_pythons(value: float) -> None:
    assert NATIVE is not None
    assert NATIVE.format_g(value) == f"{value:g}"


def test_the_event_test_cases_were_found() -> None:
    assert len(_CASES) > 150


@pytest.mark.parametrize("raw", _CASES)
def test_every_event_test_case(raw: bytes) -> None:
    _agree([raw], [int(test_events.NOW * 1000)], _EVENTS_CLOCK)


def test_a_tombstone_and_an_empty_value() -> None:
    _agree([None, b"", b" "])


def test_message_limits() -> None:
    _agree([test_events._padded(test_events.MAX_MESSAGE_BYTES), test_events._padded(test_events.MAX_MESSAGE_BYTES + 1)])
    event = test_events._ev()
    _agree([orjson.dumps([event] * 10_000), orjson.dumps([event] * 10_001), orjson.dumps([event] * 10_001)[:-1]])


def test_nodes_of_an_invalid_message_do_not_leak_into_the_node_list() -> None:
    good = orjson.dumps([test_events._ev(node="kept")])
    _agree(
        [orjson.dumps([test_events._ev(node="gone")])[:-1], good, orjson.dumps([test_events._ev(node="gone")] * 10_001)]
    )


@pytest.mark.parametrize("stamp", [0, 1, -1_000, 10**15, NOW_MS + 1, 1_699_999_999_999])
def test_clock_edges(stamp: int) -> None:
    events = [test_events._ev(ts=t) for t in (stamp / 1000, stamp // 1000, -1, 2**53 + 1, 2**63, 1e300, -0.0)]
    _agree([orjson.dumps(events)], [stamp])


@pytest.mark.parametrize("future", [0.0, 0.5, 300.0, 1e-7, 123456789.0, 1e20])
def test_future_detail_formats_max_future(future: float) -> None:
    raw = orjson.dumps([test_events._ev(ts=NOW_MS / 1000 + future * 2 + 1)])
    native = BatchDecoder(MONITORS, future, "native").decode(0, -1, [raw], [0], [NOW_MS])
    python = BatchDecoder(MONITORS, future, "python").decode(0, -1, [raw], [0], [NOW_MS])
    assert outcome(native) == outcome(python)
    assert native[1][0][1].reason == "future_timestamp"


_FLOATS = st.floats(allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(st.lists(_FLOATS | st.integers(-(2**70), 2**70), min_size=1, max_size=20))
def test_numbers_are_shown_as_python_shows_them(numbers: list[float | int]) -> None:
    """Floats in details (repr) and values (orjson) take two formats; ints beyond 64 bits become floats."""
    _agree([orjson.dumps([test_events._ev(ts=x, n=x) for x in numbers if -(2**63) <= x < 2**64]), _big_ints(numbers)])


@pytest.mark.parametrize("x", [1699995766.6757812, 1699995766.6757813, 0.3, 1e23, 5e-324, 2.5e-5, 9007199254740993.0])
def test_float_text_ties_round_to_even(x: float) -> None:
    """1699995766.6757812 is exactly ...78125: of the two shortest strings Python keeps the even one."""
    events = [test_events._ev(ts=x), test_events._ev(ts=-x, extra=x)]
    _agree([orjson.dumps(events), orjson.dumps(events[0])])


def test_every_power_of_two_and_random_doubles() -> None:
    """Shortest float text near powers of two (lopsided rounding intervals) and anywhere else."""
    rng = random.Random(4)
    randoms = [struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0] for _ in range(3000)]
    numbers = [2.0**k for k in range(-1074, 1024)] + [x for x in randoms if math.isfinite(x)]
    for at in range(0, len(numbers), 500):
        _agree([orjson.dumps([test_events._ev(ts=x, n=-x) for x in numbers[at : at + 500]])])


def _big_ints(numbers: list[float | int]) -> bytes:
    return (
        "[" + ",".join(f'{{"node":"a","ip":"1.2.3.4","event":"rejection","ts":{x!r}}}' for x in numbers) + "]"
    ).encode()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.one_of(test_events._events(), test_events._ANY_JSON), max_size=12), min_size=1, max_size=8))
def test_generated_batches(batches: list[list[Any]]) -> None:
    values = [orjson.dumps(batch if len(batch) != 1 else batch[0]) for batch in batches]
    _agree(values, [int(test_events.NOW * 1000) + 1000 * i for i in range(len(values))], _EVENTS_CLOCK)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(test_events._valid_events(), min_size=1, max_size=5),
    st.lists(st.tuples(st.integers(0, 10_000), st.binary(max_size=4)), min_size=1, max_size=3),
    st.sampled_from([0, 3, 70, 1100]),
)
def test_spliced_and_nested_bytes(events: list[dict[str, Any]], edits: list[tuple[int, bytes]], depth: int) -> None:
    data = orjson.dumps([{**event, "deep": "@"} for event in events]).replace(
        b'"@"', b"[" * depth + b"1" + b"]" * depth
    )
    for at, chunk in edits:
        at %= len(data)
        data = data[:at] + chunk + data[at + 1 :]
    _agree([data], [int(test_events.NOW * 1000)], _EVENTS_CLOCK)


@pytest.mark.parametrize("depth", [62, 63, 64, 65, 66, 300, 1100])
@pytest.mark.parametrize("field", ["node", "ts", "ip", "event", "n", "service", "extra"])
def test_deep_values_are_pruned_alike(depth: int, field: str) -> None:
    """Pruning at level 64 (the event is level 1) in details and dead-letter values, any field."""
    deep = b"[" * depth + b'{"k":[1,"x"]}' + b"]" * depth
    for event in (test_events._ev(), test_events._ev(ts=-1), test_events._ev(event="session_open")):
        raw = orjson.dumps({**event, field: "@"}).replace(b'"@"', deep)
        _agree([raw, b"[" + raw + b"," + raw + b"]", b"[[" + deep + b"]]"])


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=8), st.sampled_from(["node", "ip", "event", "service", "x"]))
def test_any_text_in_string_fields(text: str, name: str) -> None:
    """Unicode (surrogates excluded by orjson), escapes and control characters, shown alike."""
    try:
        raw = orjson.dumps([test_events._ev(**{name: text}), test_events._ev(event="session_open", **{name: text})])
    except orjson.JSONEncodeError:
        return
    _agree([raw, raw.replace(b"mx1", b"\\u006dx1")])


def test_short_fuzz_run() -> None:
    """CI's share of ``make fuzz-decoder``: 20,000 mutated messages."""
    done, bad = fuzz(20_000, seed=12)
    assert (done, bad) == (20_000, None)


def test_fuzz_comparison_can_fail() -> None:
    """The comparison sees a difference: one clock shifted changes too_late decisions."""
    native, python = decoders()
    raw = orjson.dumps([test_events._ev(ts=NOW_MS / 1000 - 3000)])
    assert outcome(native.decode(0, 0, [raw], [0], [NOW_MS])) != outcome(
        python.decode(0, 0, [raw], [0], [NOW_MS + 10**7])
    )
