"""Series events in columns: per-event operations round-trip, the wire format (new and old), cuts."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from decoder_fuzz import FUTURE_S, MONITORS, NOW_MS, outcome
from hypothesis import given
from hypothesis import strategies as st

from pipeline.core.decoding import BatchDecoder
from pipeline.core.delta import Delta, FamilyColumns, decode_delta, encode_delta
from pipeline.core.series import SeriesDef
from pipeline.core.series_columns import SERIES_ADD, SERIES_REMOVE, SeriesColumns, SeriesOp

V4 = SeriesDef("fails", "cidr", 60, 5)
V6 = SeriesDef("fails6", "cidr_ipv6", 300, 2, 64)
TEXT = SeriesDef("senders", "string", 30, 3)
NOW = 1_700_000_000.0
ADDR6 = 0x20010DB8000000010000000000000000

_KEYS = {V4: st.integers(0, 2**32 - 1), V6: st.integers(0, 2**128 - 1), TEXT: st.text(min_size=1, max_size=5)}
_OPS = st.sampled_from([V4, V6, TEXT]).flatmap(
    lambda d: st.tuples(
        st.sampled_from([SERIES_ADD, SERIES_REMOVE]),
        st.just(d),
        st.sampled_from(["mx1", "mx2", "é"]),
        st.floats(NOW - 600, NOW, allow_nan=False),
        _KEYS[d],
        st.integers(-(2**31) + 1, 2**31 - 1),
    )
)


def _delta(ops: list[SeriesOp], ends: list[int]) -> Delta:
    """A delta of ``len(ends)`` messages (offsets 41, 42, ...) with only series events."""
    spans = [(41 + i, 0, 0, 0) for i in range(len(ends))]
    series = SeriesColumns.from_ops(ops)
    return Delta(4, 40, spans, [], FamilyColumns.empty(4), FamilyColumns.empty(6), [], series, ends if ops else [])


@given(st.lists(_OPS, max_size=12), st.data())
def test_operations_survive_columns_the_wire_and_cuts(ops: list[SeriesOp], data: st.DataObject) -> None:
    ends = sorted(data.draw(st.lists(st.integers(0, len(ops)), min_size=1, max_size=4)))
    ends[-1] = len(ops)
    wired = decode_delta(encode_delta(_delta(ops, ends)))
    assert wired.series.ops() == ops
    for k, end in enumerate(ends[:-1]):
        assert wired.after(41 + k).series.ops() == ops[end:]


@pytest.mark.parametrize("definition", [V4, V6, TEXT])
def test_keys_of_a_series_are_its_cells_keys(definition: SeriesDef) -> None:
    keys = {V4: [0xC0000207, 7], V6: [ADDR6, 1], TEXT: ["alice", "b"]}[definition]
    other = SeriesDef("others", "string", 30, 3)  # a string key of another series before them
    ops = [(SERIES_ADD, other, "mx1", NOW, "other", 1)] + [(SERIES_ADD, definition, "mx1", NOW, k, 1) for k in keys]
    columns = SeriesColumns.from_ops(ops)
    rows = columns.series == columns.defs.index(definition)
    got = columns.keys_of(definition, rows)
    if definition.family == 6:
        assert [int.from_bytes(k.ljust(16, b"\0"), "big") for k in got.tolist()] == keys
    else:
        assert got.tolist() == keys


def test_a_delta_of_the_older_json_series_section_still_decodes() -> None:
    """The header the encoder before series columns wrote (checked byte for byte against it)."""
    header = {
        "p": 4,
        "prev": 40,
        "spans": [[41, 0, 0, 0], [42, 0, 0, 0]],
        "nodes": [],
        "n4": 0,
        "n6": 0,
        "sessions": [],
        "series": {
            "defs": [V4.as_dict(), V6.as_dict(), TEXT.as_dict()],
            "removes": [2],
            "def": [0, 1, 2, 2],
            "node": ["mx1", "mx2", "mx1", "mx2"],
            "ts": [NOW - 10, NOW - 20.5, NOW - 1, NOW - 2],
            "key": [str(0xC0000207), str(ADDR6), "alice", "bob"],
            "count": [3, -2, 1, 1],
            "ends": [1, 4],
        },
    }
    text = orjson.dumps(header)
    delta = decode_delta(b"IAD2" + struct.pack(">I", len(text)) + text)
    assert delta.series.ops() == [
        (SERIES_ADD, V4, "mx1", NOW - 10, 0xC0000207, 3),
        (SERIES_ADD, V6, "mx2", NOW - 20.5, ADDR6, -2),
        (SERIES_REMOVE, TEXT, "mx1", NOW - 1, "alice", 1),
        (SERIES_ADD, TEXT, "mx2", NOW - 2, "bob", 1),
    ]
    assert delta.series_ends == [1, 4] and delta.after(41).series.ops()[0][4] == ADDR6


def test_a_delta_without_series_events_has_no_series_section() -> None:
    assert b"series" not in encode_delta(_delta([], [0]))


def _with_header(raw: bytes, edit: Callable[[dict[str, Any]], None]) -> bytes:
    """``raw`` with its header edited in place by ``edit``."""
    (length,) = struct.unpack_from(">I", raw, 4)
    header = orjson.loads(raw[8 : 8 + length])
    edit(header)
    text = orjson.dumps(header)
    return raw[:4] + struct.pack(">I", len(text)) + text + raw[8 + length :]


def test_a_worker_that_ignores_series_columns_reads_the_windowed_events() -> None:
    """What a worker from before series columns sees: the header without the section it ignores."""
    decoder = BatchDecoder(MONITORS, FUTURE_S, "python", {"fails": V4}.get)
    event = {"node": "mx1", "ts": NOW_MS / 1000, "ip": "192.0.2.1", "event": "connection"}
    record = orjson.dumps([event, {**event, "event": "series_add", "series": "fails", "key": "192.0.2.1"}])
    delta, _ = decoder.decode(0, -1, [record], [0], [NOW_MS])
    old_view = decode_delta(_with_header(encode_delta(delta), lambda header: header.pop("series_columns")))
    assert outcome((old_view, []))[:6] == outcome((delta, []))[:6]
    assert len(old_view.series) == 0 and len(delta.series) == 1


_TAMPER: dict[str, Callable[[dict[str, Any]], None]] = {
    "a string key too many": lambda section: section["text"].append("extra"),
    "a row too many": lambda section: section.update(rows=section["rows"] + 1),
    "bytes cut": lambda section: section.update(columns=section["columns"][:-4]),
    "not base64": lambda section: section.update(columns="!" + section["columns"][1:]),
    "a definition missing": lambda section: section["defs"].pop(),
}


@pytest.mark.parametrize("change", sorted(_TAMPER))
def test_inconsistent_series_columns_are_refused(change: str) -> None:
    ops: list[SeriesOp] = [(SERIES_ADD, TEXT, "mx1", NOW, "k", 1), (SERIES_ADD, V4, "mx1", NOW, 9, 1)]
    raw = encode_delta(_delta(ops, [2]))
    assert decode_delta(raw).series.ops() == ops
    with pytest.raises(ValueError, match="corrupt"):
        decode_delta(_with_header(raw, lambda header: _TAMPER[change](header["series_columns"])))
