"""The per-batch delta: validated events of one source-partition offset range, in columns.

The worker that owns an events partition turns each consumed batch of messages into one
``Delta`` and writes it to the state changelog; every worker (the owner included) applies every
delta to its replica of the counts. A delta names its source partition, the source offset it
continues from (``prev_offset``) and, per source message, where that message's events end in each
column (``spans``). That is what lets a replica apply each source message exactly once whatever
order writers' deltas arrive in: a delta that overlaps what was applied is cut to the messages
after it (``after``), and one that does not continue it reveals a gap (``replica.py``).

Wire format: ``b"IAD2"``, a 4-byte header length, an orjson header, then the raw column arrays.
A delta with series events (SPEC section 8) adds the header section ``series_columns``: the
definitions they were judged by, node names, string keys, where each message's series events end,
and the raw series columns (``series_columns.py``) as one base64 string. Inside the header, a
worker from before series columns still reads the delta's windowed columns (it ignores the
section, as a worker from before named series does). A delta without series events is byte for
byte what it was before series existed; the older JSON ``series`` section is still read.
"""

from __future__ import annotations

import base64
import struct
from dataclasses import dataclass, field
from itertools import compress
from typing import Any

import numpy as np
import orjson

from pipeline.core.events import DecodedBatch
from pipeline.core.prefix_counts import KEY_DTYPES
from pipeline.core.series import SeriesDef
from pipeline.core.series_columns import COLUMN_DTYPES as SERIES_DTYPES
from pipeline.core.series_columns import SERIES_ADD, SERIES_REMOVE, SeriesColumns, SeriesOp

__all__ = [
    "CHAIN_START",
    "Delta",
    "FamilyColumns",
    "SessionOp",
    "Span",
    "delta_from_decoded",
    "encode_delta",
    "decode_delta",
]

_MAGIC = b"IAD2"
_HEADER_LEN = struct.Struct(">I")

#: (kind, node, family, address, service); kind is "open", "close" or "reset".
SessionOp = tuple[str, str, int, int, str]

#: One source message of a delta: (offset, end in v4 columns, end in v6 columns, end in sessions).
Span = tuple[int, int, int, int]

#: ``prev_offset`` of a delta that starts a partition's chain (its writer had applied nothing).
CHAIN_START = -1

_COLUMN_DTYPES = (("sec", np.dtype(np.int64)), ("metric", np.dtype(np.uint8)), ("node", np.dtype(np.uint32)))


@dataclass(slots=True)
class FamilyColumns:
    """Windowed events of one address family: whole-second time, metric, node index, key, n."""

    family: int
    sec: np.ndarray
    metric: np.ndarray
    node: np.ndarray
    key: np.ndarray
    n: np.ndarray

    @classmethod
    def empty(cls, family: int) -> FamilyColumns:
        return cls(
            family,
            np.empty(0, np.int64),
            np.empty(0, np.uint8),
            np.empty(0, np.uint32),
            np.empty(0, KEY_DTYPES[family]),
            np.empty(0, np.int64),
        )

    def __len__(self) -> int:
        return len(self.key)

    def tail(self, start: int) -> FamilyColumns:
        """The rows from ``start`` on (views, no copies)."""
        return FamilyColumns(
            self.family, self.sec[start:], self.metric[start:], self.node[start:], self.key[start:], self.n[start:]
        )


@dataclass(slots=True)
class Delta:
    """Everything the source messages ``spans`` (offsets ascending) of one partition change."""

    partition: int
    prev_offset: int
    spans: list[Span]
    nodes: list[str]
    v4: FamilyColumns
    v6: FamilyColumns
    sessions: list[SessionOp] = field(default_factory=list)
    #: Series events, and per span where its series events end (empty: none in the delta).
    series: SeriesColumns = field(default_factory=SeriesColumns.empty)
    series_ends: list[int] = field(default_factory=list)

    @property
    def first_offset(self) -> int:
        return self.spans[0][0]

    @property
    def last_offset(self) -> int:
        return self.spans[-1][0]

    @property
    def event_count(self) -> int:
        return len(self.v4) + len(self.v6)

    def after(self, offset: int) -> Delta:
        """Only the messages after source ``offset``, continuing from it (must leave at least one)."""
        k = next(i for i, span in enumerate(self.spans) if span[0] > offset)
        if k == 0:
            return self
        _, v4_start, v6_start, session_start = self.spans[k - 1]
        spans = [(o, e4 - v4_start, e6 - v6_start, es - session_start) for o, e4, e6, es in self.spans[k:]]
        series_start = self.series_ends[k - 1] if self.series_ends else 0
        return Delta(
            self.partition,
            offset,
            spans,
            self.nodes,
            self.v4.tail(v4_start),
            self.v6.tail(v6_start),
            self.sessions[session_start:],
            self.series.tail(series_start),
            [end - series_start for end in self.series_ends[k:]],
        )


def delta_from_decoded(
    decoded: DecodedBatch,
    partition: int,
    message_ends: list[tuple[int, int, int]],
    prev_offset: int = CHAIN_START,
    series_ends: list[int] | None = None,
) -> Delta:
    """Columnarise a decoded batch: C-level passes over the lists (``map``, ``compress``), numpy after.

    ``message_ends`` lists, per source message in offset order, (offset, windowed events decoded
    up to and including it, session events likewise); ``series_ends`` the series events likewise.
    """
    count = len(decoded.node)
    node_ids = {name: i for i, name in enumerate(dict.fromkeys(decoded.node))}
    node = np.fromiter(map(node_ids.__getitem__, decoded.node), np.uint32, count)
    sec = np.floor(np.array(decoded.ts, dtype=np.float64)).astype(np.int64)
    metric = np.array(decoded.metric, dtype=np.uint8)
    n = np.array(decoded.n, dtype=np.int64)
    is6 = np.array(decoded.family, dtype=np.uint8) == 6
    spans = _spans(message_ends, is6)
    if not is6.any():
        v4 = FamilyColumns(4, sec, metric, node, np.array(decoded.addr, dtype=np.uint32), n)
        v6 = FamilyColumns.empty(6)
    else:
        is4 = ~is6
        keys4 = np.fromiter(compress(decoded.addr, is4.tolist()), np.uint32)
        keys6 = np.frombuffer(b"".join([a.to_bytes(16, "big") for a in compress(decoded.addr, is6.tolist())]), "S16")
        v4 = FamilyColumns(4, sec[is4], metric[is4], node[is4], keys4, n[is4])
        v6 = FamilyColumns(6, sec[is6], metric[is6], node[is6], keys6, n[is6])
    series = SeriesColumns.from_ops(decoded.series)
    ends = (series_ends or []) if len(series) else []
    return Delta(partition, prev_offset, spans, list(node_ids), v4, v6, list(decoded.sessions), series, ends)


def _spans(message_ends: list[tuple[int, int, int]], is6: np.ndarray) -> list[Span]:
    """Per message, where its events end in the v4 and v6 columns (cumulative counts)."""
    ends = np.array([end for _, end, _ in message_ends], dtype=np.int64)
    v6_before = np.concatenate(([0], np.cumsum(is6, dtype=np.int64)))[ends]
    return [
        (offset, end - e6, e6, sessions_end)
        for (offset, end, sessions_end), e6 in zip(message_ends, v6_before.tolist(), strict=True)
    ]


def _series_header(delta: Delta) -> dict[str, object]:
    """The series columns' header section."""
    series = delta.series
    return {
        "defs": [d.as_dict() for d in series.defs],
        "nodes": series.nodes,
        "text": series.text,
        "rows": len(series),
        "columns": base64.b64encode(b"".join(np.ascontiguousarray(a).tobytes() for a in series.arrays())).decode(),
        "ends": delta.series_ends,
    }


def _read_series_columns(section: dict[str, Any]) -> SeriesColumns:
    """Inverse of ``_series_header`` (without the ends)."""
    raw = base64.b64decode(section["columns"], validate=True)
    rows, offset, arrays = section["rows"], 0, []
    for _, dtype in SERIES_DTYPES:
        arrays.append(np.frombuffer(raw, dtype=dtype, count=rows, offset=offset))
        offset += dtype.itemsize * rows
    if offset != len(raw):
        raise ValueError(f"delta series columns have {len(raw)} bytes, expected {offset}")
    columns = SeriesColumns.of_arrays(
        [SeriesDef.from_dict(d) for d in section["defs"]], section["nodes"], arrays, section["text"]
    )
    columns.check()
    return columns


def _read_series_section(section: dict[str, list]) -> SeriesColumns:
    """The per-event JSON ``series`` section that deltas had before series columns."""
    defs = [SeriesDef.from_dict(d) for d in section["defs"]]
    definitions = [defs[number] for number in section["def"]]
    kinds = [SERIES_ADD] * len(definitions)
    for index in section["removes"]:
        kinds[index] = SERIES_REMOVE
    keys = [key if d.family is None else int(key) for key, d in zip(section["key"], definitions, strict=True)]
    columns = (kinds, definitions, section["node"], section["ts"], keys, section["count"])
    ops: list[SeriesOp] = list(zip(*columns, strict=True))
    return SeriesColumns.from_ops(ops)


def encode_delta(delta: Delta) -> bytes:
    fields: dict[str, object] = {
        "p": delta.partition,
        "prev": delta.prev_offset,
        "spans": delta.spans,
        "nodes": delta.nodes,
        "n4": len(delta.v4),
        "n6": len(delta.v6),
        "sessions": [[k, nd, fam, str(addr), svc] for k, nd, fam, addr, svc in delta.sessions],
    }
    if len(delta.series):
        fields["series_columns"] = _series_header(delta)
    header = orjson.dumps(fields)
    parts = [_MAGIC, _HEADER_LEN.pack(len(header)), header]
    for cols in (delta.v4, delta.v6):
        parts.extend(np.ascontiguousarray(a).tobytes() for a in (cols.sec, cols.metric, cols.node, cols.key, cols.n))
    return b"".join(parts)


def decode_delta(raw: bytes | None) -> Delta:
    """Inverse of ``encode_delta``; raises ``ValueError`` on anything that is not a whole delta."""
    if not raw or raw[:4] != _MAGIC:
        raise ValueError("not an inbound-audit delta (bad magic)")
    try:
        return _decode_delta(raw)
    except (KeyError, TypeError, IndexError, ValueError, struct.error, orjson.JSONDecodeError) as exc:
        raise ValueError(f"corrupt inbound-audit delta: {exc!r}") from None


def _decode_delta(raw: bytes) -> Delta:
    (header_len,) = _HEADER_LEN.unpack_from(raw, 4)
    offset = 8 + header_len
    header = orjson.loads(raw[8:offset])
    families = []
    for family, count in ((4, header["n4"]), (6, header["n6"])):
        arrays = []
        for _, dtype in (*_COLUMN_DTYPES, ("key", KEY_DTYPES[family]), ("n", np.dtype(np.int64))):
            arrays.append(np.frombuffer(raw, dtype=dtype, count=count, offset=offset))
            offset += dtype.itemsize * count
        families.append(FamilyColumns(family, *arrays))
    series, series_ends = SeriesColumns.empty(), []
    if "series_columns" in header:
        series = _read_series_columns(header["series_columns"])
        series_ends = [int(end) for end in header["series_columns"]["ends"]]
    elif "series" in header:
        series, series_ends = _read_series_section(header["series"]), [int(end) for end in header["series"]["ends"]]
    if offset != len(raw):
        raise ValueError(f"delta length mismatch: {len(raw)} bytes, expected {offset}")
    sessions = [(k, nd, fam, int(addr), svc) for k, nd, fam, addr, svc in header["sessions"]]
    spans = [(int(o), int(e4), int(e6), int(es)) for o, e4, e6, es in header["spans"]]
    if not spans or spans[-1][1:] != (header["n4"], header["n6"], len(sessions)):
        raise ValueError("delta spans do not match its columns")
    if len(series) and (len(series_ends) != len(spans) or series_ends[-1] != len(series)):
        raise ValueError("delta series ends do not match its series events")
    return Delta(
        header["p"], header["prev"], spans, header["nodes"], families[0], families[1], sessions, series, series_ends
    )
