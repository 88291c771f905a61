"""Counts of named series per window and scope, with fleet-wide, order-independent removes.

Per series, window and scope (each node, and the fleet) one cell: a ``PrefixCounts`` for cidr
types (any CIDR block is two binary searches, as for the built-in counters) or a dict for string
keys. Counts may be negative.

``series_remove`` (SPEC section 8) removes every count of its key with ``ts`` at or before the
remove's ``ts``, whichever order adds and removes arrive in. Per key the largest remove ``ts``
seen, R, is kept, and the invariant is: a cell counts exactly the adds of its key with ts > R.
An add is counted only if its ts > R at apply time; a remove raising R from R0 to R1 subtracts
the counted adds with R0 < ts <= R1. For that each window keeps a ledger of the adds it counted
(key, node, exact ts, count) — numpy chunks, read only when a remove arrives — while queries
never look at it. A snapshot stores the ledgers and the removes; cells are rebuilt from them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.core.cidr import Block
from pipeline.core.prefix_counts import KEY_DTYPES, PrefixCounts, key_of
from pipeline.core.series import SeriesDef
from pipeline.core.series_columns import KINDS, SERIES_ADD, SERIES_REMOVE, SeriesColumns, SeriesOp

__all__ = ["SeriesOp", "SeriesCounts", "SERIES_ADD", "SERIES_REMOVE"]

#: What a count asks for: a CIDR block (cidr types) or one exact string key.
SeriesQuery = Block | str


class _StringCounts:
    """String keys to counts; the string series' cell."""

    __slots__ = ("values",)

    def __init__(self) -> None:
        self.values: dict[str, int] = {}

    def add(self, keys: np.ndarray, vals: np.ndarray) -> None:
        values = self.values
        for key, val in zip(keys.tolist(), vals.tolist(), strict=True):
            values[key] = values.get(key, 0) + val

    def total(self) -> int:
        return sum(self.values.values())

    def items(self) -> list[tuple[Any, int]]:
        return list(self.values.items())


Cell = PrefixCounts | _StringCounts


def _key_dtype(definition: SeriesDef) -> np.dtype:
    family = definition.family
    return np.dtype(object) if family is None else KEY_DTYPES[family]


def _key_array(definition: SeriesDef, keys: Sequence[int | str]) -> np.ndarray:
    if definition.family == 6:
        return np.frombuffer(b"".join(int(k).to_bytes(16, "big") for k in keys), "S16")
    if definition.family == 4:
        return np.array(keys, dtype=np.uint32)
    out = np.empty(len(keys), dtype=object)
    out[:] = list(keys)
    return out


@dataclass(slots=True)
class _Ledger:
    """The adds a window counted, in chunks of (keys, node ids, ts, counts)."""

    chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)

    def append(self, keys: np.ndarray, nodes: np.ndarray, ts: np.ndarray, counts: np.ndarray) -> None:
        self.chunks.append((keys, nodes, ts, counts))

    def columns(self, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """All rows as four arrays (merging the chunks into one)."""
        if not self.chunks:
            empty = np.empty(0, np.int64)
            return np.empty(0, dtype), empty.astype(np.uint32), empty.astype(np.float64), empty
        if len(self.chunks) > 1:
            merged = tuple(np.concatenate([chunk[i] for chunk in self.chunks]) for i in range(4))
            self.chunks = [merged]  # type: ignore[list-item]
        return self.chunks[0]


class _Series:
    """One series' windows, removes and node names."""

    def __init__(self, definition: SeriesDef) -> None:
        self.definition = definition
        self.windows: dict[int, tuple[dict[str | None, Cell], _Ledger]] = {}
        self.removed: dict[Any, float] = {}
        self.nodes: list[str] = []
        self._node_ids: dict[str, int] = {}

    def node_id(self, node: str) -> int:
        found = self._node_ids.get(node)
        if found is None:
            found = self._node_ids[node] = len(self.nodes)
            self.nodes.append(node)
        return found

    def _cell(self, cells: dict[str | None, Cell], scope: str | None) -> Cell:
        cell = cells.get(scope)
        if cell is None:
            family = self.definition.family
            cell = cells[scope] = _StringCounts() if family is None else PrefixCounts(family)
        return cell

    def _count_rows(self, start: int, keys: np.ndarray, nodes: np.ndarray, vals: np.ndarray) -> None:
        """Add rows of one window to its node cells and its fleet cell."""
        cells = self.windows.setdefault(start, ({}, _Ledger()))[0]
        self._cell(cells, None).add(keys, vals)
        for node_id in np.unique(nodes).tolist():
            mine = nodes == node_id
            self._cell(cells, self.nodes[node_id]).add(keys[mine], vals[mine])

    def add(self, keys: np.ndarray, nodes: np.ndarray, ts: np.ndarray, counts: np.ndarray, oldest: int) -> None:
        """Count adds (``nodes`` are this series' node ids) whose key was not removed at or after
        their ts, in windows still kept."""
        if self.removed:
            live = self.live(keys, ts)
            keys, nodes, ts, counts = keys[live], nodes[live], ts[live], counts[live]
        size = self.definition.interval
        start = np.floor(ts / size).astype(np.int64) * size
        for window_start in np.unique(start[start >= oldest]).tolist():
            rows = start == window_start
            self._count_rows(window_start, keys[rows], nodes[rows], counts[rows])
            self.windows[window_start][1].append(keys[rows], nodes[rows], ts[rows], counts[rows])

    def live(self, keys: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """Per row: is it after its key's remove ts? Only rows of removed keys are looked up."""
        live = np.ones(len(keys), dtype=bool)
        hit = np.flatnonzero(np.isin(keys, _key_array(self.definition, list(self.removed))))
        if len(hit):
            removed_at = [self.removed[k] for k in _key_values(self.definition, keys[hit])]
            live[hit] = ts[hit] > np.array(removed_at, dtype=np.float64)
        return live

    def remove(self, key: Any, ts: float) -> None:
        """Raise the key's remove ts to ``ts``, subtracting the counted adds it now covers."""
        before = self.removed.get(key, -np.inf)
        if ts <= before:
            return
        self.removed[key] = ts
        family, size = self.definition.family, self.definition.interval
        wanted = key if family is None else key_of(family, key)
        for start, (_, ledger) in list(self.windows.items()):
            if start > ts or start + size <= before:
                continue
            keys, nodes, times, counts = ledger.columns(_key_dtype(self.definition))
            hit = (keys == wanted) & (times > before) & (times <= ts)
            if hit.any():
                self._count_rows(start, keys[hit], nodes[hit], -counts[hit])

    def expire(self, oldest: int) -> None:
        for start in [s for s in self.windows if s < oldest]:
            del self.windows[start]
        self.removed = {k: r for k, r in self.removed.items() if r >= oldest}

    def count(self, query: SeriesQuery, starts: Iterable[int], node: str | None) -> int:
        total = 0
        for start in starts:
            window = self.windows.get(start)
            cell = None if window is None else window[0].get(node)
            if cell is None:
                continue
            if isinstance(cell, _StringCounts):
                assert isinstance(query, str)
                total += cell.values.get(query, 0)
            else:
                assert isinstance(query, Block)
                total += cell.range_sum(query.lo, query.hi)
        return total


class SeriesCounts:
    """Every series' counts, keyed by the whole definition (a name defined differently in a
    misconfigured worker's deltas never mixes into the definition that counts)."""

    def __init__(self) -> None:
        self._series: dict[SeriesDef, _Series] = {}

    def _of(self, definition: SeriesDef) -> _Series:
        found = self._series.get(definition)
        if found is None:
            found = self._series[definition] = _Series(definition)
        return found

    def apply(self, columns: SeriesColumns, now_s: float) -> None:
        """Apply a delta's series events: removes (rare) one by one, adds column-wise per series
        (removes and adds commute, so order is free)."""
        if not len(columns):
            return
        removes = columns.kind == KINDS.index(SERIES_REMOVE)
        any_remove = bool(removes.any())
        if any_remove:
            for _, definition, _, ts, key, _ in columns.ops(removes):
                self._of(definition).remove(key, ts)
        for index, definition in enumerate(columns.defs):
            rows = columns.series == index
            if any_remove:
                rows &= ~removes
            if not rows.any():
                continue
            series = self._of(definition)
            nodes = columns.node[rows]
            used = np.unique(nodes)
            node_ids = np.zeros(len(columns.nodes), dtype=np.uint32)  # delta's node index -> the series'
            node_ids[used] = [series.node_id(columns.nodes[i]) for i in used.tolist()]
            series.add(
                columns.keys_of(definition, rows),
                node_ids[nodes],
                columns.ts[rows],
                columns.count[rows],
                definition.windows.oldest_kept_start(now_s),
            )

    def apply_ops(self, ops: Sequence[SeriesOp], now_s: float) -> None:
        """``apply`` for per-event operations (tests and tools that build events by hand)."""
        self.apply(SeriesColumns.from_ops(ops), now_s)

    def count(
        self,
        definition: SeriesDef,
        query: SeriesQuery,
        startv: int,
        endv: int,
        at: float,
        now_s: float,
        node: str | None,
    ) -> int:
        """Sum over window indices ``startv..endv`` (relative to ``at``) for ``query`` on ``node``
        (None: the fleet); windows older than the series keeps at ``now_s`` count 0."""
        series = self._series.get(definition)
        if series is None:
            return 0
        windows = definition.windows
        oldest = windows.oldest_kept_start(now_s)
        starts = [windows.start_of_index(at, i) for i in range(startv, endv + 1)]
        return series.count(query, [s for s in starts if s >= oldest], node)

    def expire(self, now_s: float) -> None:
        for definition, series in self._series.items():
            series.expire(definition.windows.oldest_kept_start(now_s))

    def definitions(self) -> list[SeriesDef]:
        return list(self._series)

    def window_cells(self, definition: SeriesDef, start: int) -> dict[str | None, Cell]:
        """The cells of one window by scope (empty if nothing was counted there)."""
        series = self._series.get(definition)
        window = None if series is None else series.windows.get(start)
        return {} if window is None else window[0]

    # ---- snapshots ------------------------------------------------------------------------------
    def export(self) -> list[dict[str, Any]]:
        """JSON-ready state: per series its removes and ledgers (cells are rebuilt from them)."""
        out = []
        for definition, series in self._series.items():
            windows = []
            for start, (_, ledger) in series.windows.items():
                keys, nodes, ts, counts = ledger.columns(_key_dtype(definition))
                windows.append([start, _keys_out(definition, keys), nodes.tolist(), ts.tolist(), counts.tolist()])
            out.append(
                {
                    "def": definition.as_dict(),
                    "nodes": series.nodes,
                    "removed": [[_key_out(definition, k), r] for k, r in series.removed.items()],
                    "windows": windows,
                }
            )
        return out

    @classmethod
    def restore(cls, exported: list[dict[str, Any]]) -> SeriesCounts:
        """Inverse of ``export``."""
        store = cls()
        for item in exported:
            definition = SeriesDef.from_dict(item["def"])
            series = store._of(definition)
            for node in item["nodes"]:
                series.node_id(node)
            series.removed = {_key_in(definition, k): r for k, r in item["removed"]}
            for start, keys, nodes, ts, counts in item["windows"]:
                key_values = [_key_in(definition, k) for k in keys]
                key_array = _key_array(definition, key_values)
                ts_array = np.array(ts, dtype=np.float64)
                node_array, count_array = np.array(nodes, dtype=np.uint32), np.array(counts, dtype=np.int64)
                series.windows.setdefault(start, ({}, _Ledger()))[1].append(
                    key_array, node_array, ts_array, count_array
                )
                live = series.live(key_array, ts_array)
                series._count_rows(start, key_array[live], node_array[live], count_array[live])
        return store


def _key_values(definition: SeriesDef, keys: np.ndarray) -> list[Any]:
    """Stored keys as the Python values ``removed`` is keyed by (int addresses, strings)."""
    if definition.family == 6:
        raw = keys.tobytes()
        return [int.from_bytes(raw[i : i + 16], "big") for i in range(0, len(raw), 16)]
    return keys.tolist()


def _key_out(definition: SeriesDef, key: Any) -> Any:
    return str(key) if definition.family == 6 else key


def _key_in(definition: SeriesDef, key: Any) -> Any:
    return int(key) if definition.family is not None else key


def _keys_out(definition: SeriesDef, keys: np.ndarray) -> list[Any]:
    values = _key_values(definition, keys)
    return [str(k) for k in values] if definition.family == 6 else values
