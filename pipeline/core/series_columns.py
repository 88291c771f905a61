"""A delta's series events (SPEC section 8) in columns, so counting them needs no per-event Python.

Rows are the batch's series events in source order. Every address key (IPv4 or IPv6, already
truncated to the series' ``prefix_len``) is 16 bytes big-endian in ``key``; string keys are in
``text``, one per row of a string series, in row order (their ``key`` is zero). ``kind`` tells
adds from removes; a remove's ``count`` is 1 and unused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from operator import methodcaller

import numpy as np

from pipeline.core.series import SeriesDef

__all__ = ["SERIES_ADD", "SERIES_REMOVE", "SeriesOp", "KINDS", "COLUMN_DTYPES", "SeriesColumns"]

SERIES_ADD, SERIES_REMOVE = "series_add", "series_remove"

#: (kind, definition, node, ts, key, count): key an int address (truncated) or a string.
SeriesOp = tuple[str, SeriesDef, str, float, "int | str", int]

#: Kind code -> event name.
KINDS: tuple[str, ...] = (SERIES_ADD, SERIES_REMOVE)
_KIND_CODES = {name: code for code, name in enumerate(KINDS)}
_TO_BYTES = methodcaller("to_bytes", 16, "big")

#: The array columns in wire order: (name, dtype).
COLUMN_DTYPES: tuple[tuple[str, np.dtype], ...] = (
    ("kind", np.dtype(np.uint8)),
    ("series", np.dtype(np.uint32)),
    ("node", np.dtype(np.uint32)),
    ("ts", np.dtype(np.float64)),
    ("count", np.dtype(np.int64)),
    ("key", np.dtype("S16")),
)


@dataclass(slots=True, eq=False)
class SeriesColumns:
    """Series events in columns; ``series`` indexes ``defs``, ``node`` indexes ``nodes``."""

    defs: list[SeriesDef]
    nodes: list[str]
    kind: np.ndarray
    series: np.ndarray
    node: np.ndarray
    ts: np.ndarray
    count: np.ndarray
    key: np.ndarray
    text: list[str]

    @classmethod
    def of_arrays(
        cls, defs: list[SeriesDef], nodes: list[str], arrays: Sequence[np.ndarray], text: list[str]
    ) -> SeriesColumns:
        """Columns from the arrays in ``COLUMN_DTYPES`` order."""
        kind, series, node, ts, count, key = arrays
        return cls(defs, nodes, kind, series, node, ts, count, key, text)

    @classmethod
    def empty(cls) -> SeriesColumns:
        return cls.of_arrays([], [], [np.empty(0, dtype) for _, dtype in COLUMN_DTYPES], [])

    def __len__(self) -> int:
        return len(self.kind)

    def arrays(self) -> tuple[np.ndarray, ...]:
        """The array columns in ``COLUMN_DTYPES`` order."""
        return self.kind, self.series, self.node, self.ts, self.count, self.key

    def is_text(self) -> np.ndarray:
        """Per row: is its key in ``text`` (a string series)?"""
        text_series = np.array([d.family is None for d in self.defs], dtype=bool)
        return text_series[self.series] if len(text_series) else np.zeros(len(self), dtype=bool)

    def check(self) -> None:
        """Raise ``ValueError`` unless every index points into its table (a delta from the wire)."""
        top = {"kind": len(KINDS), "series": len(self.defs), "node": len(self.nodes)}
        if any(len(self) and int(getattr(self, name).max()) >= limit for name, limit in top.items()):
            raise ValueError("series columns index past their tables")
        if len(self.text) != int(np.count_nonzero(self.is_text())):
            raise ValueError("series columns have a string key too many or too few")

    def tail(self, start: int) -> SeriesColumns:
        """The rows from ``start`` on (array views, no copies)."""
        texts_before = int(np.count_nonzero(self.is_text()[:start])) if self.text else 0
        arrays = [a[start:] for a in self.arrays()]
        return SeriesColumns.of_arrays(self.defs, self.nodes, arrays, self.text[texts_before:])

    def keys_of(self, definition: SeriesDef, rows: np.ndarray) -> np.ndarray:
        """The keys of ``rows`` (all of one series) as its cells store them."""
        if definition.family == 6:
            return self.key[rows]
        if definition.family == 4:
            return np.frombuffer(self.key[rows].tobytes(), ">u4")[3::4].astype(np.uint32)
        texts = np.empty(len(self.text), dtype=object)
        texts[:] = self.text
        return texts[(np.cumsum(self.is_text()) - 1)[rows]]

    def ops(self, rows: np.ndarray | None = None) -> list[SeriesOp]:
        """The rows (all, or where the mask ``rows`` is set) as per-event operations."""
        picked = np.arange(len(self)) if rows is None else np.flatnonzero(rows)
        text_at = (np.cumsum(self.is_text()) - 1)[picked].tolist()
        raw = self.key[picked].tobytes()
        out: list[SeriesOp] = []
        for i, (kind, series, node, ts, count, t) in enumerate(
            zip(
                self.kind[picked].tolist(),
                self.series[picked].tolist(),
                self.node[picked].tolist(),
                self.ts[picked].tolist(),
                self.count[picked].tolist(),
                text_at,
                strict=True,
            )
        ):
            definition = self.defs[series]
            key = self.text[t] if definition.family is None else int.from_bytes(raw[16 * i : 16 * i + 16], "big")
            out.append((KINDS[kind], definition, self.nodes[node], ts, key, count))
        return out

    @classmethod
    def from_ops(cls, ops: Sequence[SeriesOp]) -> SeriesColumns:
        """Columns of per-event operations (the Python decoder's, and deltas of the JSON format)."""
        if not ops:
            return cls.empty()
        kinds, definitions, nodes, ts, keys, counts = zip(*ops, strict=True)
        defs: list[SeriesDef] = []
        def_ids: dict[int, int] = {}  # by id: hashing a definition per event is slow, and events share them
        for definition in {id(d): d for d in definitions}.values():
            if definition not in defs:
                defs.append(definition)
            def_ids[id(definition)] = defs.index(definition)
        node_ids = {name: i for i, name in enumerate(dict.fromkeys(nodes))}
        text = [k for k in keys if type(k) is str]
        as_bytes = (bytes(16) if type(k) is str else k.to_bytes(16, "big") for k in keys)
        key = b"".join(as_bytes if text else map(_TO_BYTES, keys))
        return cls(
            defs,
            list(node_ids),
            np.array(list(map(_KIND_CODES.__getitem__, kinds)), dtype=np.uint8),
            np.fromiter(map(def_ids.__getitem__, map(id, definitions)), np.uint32, len(ops)),
            np.fromiter(map(node_ids.__getitem__, nodes), np.uint32, len(ops)),
            np.array(ts, dtype=np.float64),
            np.array(counts, dtype=np.int64),
            np.frombuffer(key, "S16"),
            text,
        )
