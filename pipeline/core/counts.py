"""The windowed counter store: per monitor, window, scope, metric and family, exact per-CIDR sums.

Scopes are each node (``"node", name``) and the fleet (``None``). A delta is applied with one
sort per monitor and family; windows older than a monitor keeps are skipped on apply and freed
by ``expire``. Queries sum ``PrefixCounts.range_sum`` over the requested window indices.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import orjson

from pipeline.core.cidr import Block
from pipeline.core.delta import Delta, FamilyColumns
from pipeline.core.prefix_counts import KEY_DTYPES, PrefixCounts
from pipeline.core.windows import Monitor

__all__ = ["WindowedCounts", "CellKey", "METRIC_NAMES"]

_SNAPSHOT_MAGIC = b"IAS1"
_HEADER_LEN = struct.Struct(">I")

METRIC_NAMES: tuple[str, ...] = ("connection", "reception", "rejection")
_N_METRICS = len(METRIC_NAMES)


@dataclass(frozen=True, slots=True)
class CellKey:
    """Address of one ``PrefixCounts`` inside a window; ``node`` None is the fleet scope."""

    node: str | None
    metric: int
    family: int


def _by_metric_node_second(cols: FamilyColumns, n_nodes: int) -> FamilyColumns:
    """The rows sorted by (metric, node, second): one sort for every monitor, because a window
    is a non-decreasing function of the second.

    The three are packed into one key of the smallest unsigned type that holds it, so a batch
    spanning a few minutes gets numpy's linear radix sort (16-bit keys).
    """
    base = int(cols.sec.min())
    span = int(cols.sec.max()) - base + 1
    if _N_METRICS * max(n_nodes, 1) * span >= 2**63:  # cannot pack into int64 (absurd clock spread)
        order = np.lexsort((cols.sec, cols.node, cols.metric))
    else:
        packed = (cols.metric.astype(np.int64) * n_nodes + cols.node) * span + (cols.sec - base)
        order = np.argsort(packed.astype(np.min_scalar_type(int(packed.max()))), kind="stable")
    return FamilyColumns(
        cols.family, cols.sec[order], cols.metric[order], cols.node[order], cols.key[order], cols.n[order]
    )


class WindowedCounts:
    """All monitors' windows; the unit every worker replicates from the delta log."""

    def __init__(self, monitors: tuple[Monitor, ...]) -> None:
        self.monitors = monitors
        self._windows: dict[Monitor, dict[int, dict[CellKey, PrefixCounts]]] = {m: {} for m in monitors}

    def apply(self, delta: Delta, now_s: float) -> None:
        """Count a delta's windowed events into every monitor whose window is still kept."""
        for cols in (delta.v4, delta.v6):
            if len(cols):
                ordered = _by_metric_node_second(cols, len(delta.nodes))
                for monitor in self.monitors:
                    self._apply_family(monitor, ordered, delta.nodes, now_s)

    def _apply_family(self, monitor: Monitor, cols: FamilyColumns, nodes: list[str], now_s: float) -> None:
        """``cols`` sorted by (metric, node, second), so each (window, metric, node) is one run."""
        size = monitor.size_s
        win = cols.sec // size
        oldest = monitor.oldest_kept_start(now_s) // size
        keep = win >= oldest
        sel: slice | np.ndarray = slice(None)
        if not keep.all():
            if not keep.any():
                return
            sel = np.flatnonzero(keep)
            win = win[sel]
        metric, node, key, n = cols.metric[sel], cols.node[sel], cols.key[sel], cols.n[sel]
        change = (win[1:] != win[:-1]) | (metric[1:] != metric[:-1]) | (node[1:] != node[:-1])
        starts = np.concatenate(([0], np.flatnonzero(change) + 1))
        ends = np.append(starts[1:], len(win)).tolist()
        windows = self._windows[monitor]
        family = cols.family
        runs = zip(
            starts.tolist(), ends, win[starts].tolist(), metric[starts].tolist(), node[starts].tolist(), strict=True
        )
        for start, end, w, metric_code, node_index in runs:
            cells = windows.setdefault(w * size, {})
            keys, vals = key[start:end], n[start:end]
            for scope in (nodes[node_index], None):
                cell_key = CellKey(scope, metric_code, family)
                cell = cells.get(cell_key)
                if cell is None:
                    cell = cells[cell_key] = PrefixCounts(family)
                cell.add(keys, vals)

    def count(
        self,
        monitor: Monitor,
        metric: int,
        block: Block,
        startv: int,
        endv: int,
        at: float,
        now_s: float,
        node: str | None,
    ) -> int:
        """Sum over window indices ``startv..endv`` (relative to ``at``) of events inside ``block``."""
        windows = self._windows[monitor]
        oldest = monitor.oldest_kept_start(now_s)
        cell_key = CellKey(node, metric, block.family)
        total = 0
        for index in range(startv, endv + 1):
            start = monitor.start_of_index(at, index)
            if start < oldest:
                continue
            cell = windows.get(start, {}).get(cell_key)
            if cell is not None:
                total += cell.range_sum(block.lo, block.hi)
        return total

    def expire(self, now_s: float) -> int:
        """Drop windows no monitor keeps any more; returns how many were freed."""
        freed = 0
        for monitor, windows in self._windows.items():
            oldest = monitor.oldest_kept_start(now_s)
            for start in [s for s in windows if s < oldest]:
                del windows[start]
                freed += 1
        return freed

    def window_cells(self, monitor: Monitor, start: int) -> dict[CellKey, PrefixCounts]:
        """The cells of one window (empty if nothing was counted there)."""
        return self._windows[monitor].get(start, {})

    def window_starts(self, monitor: Monitor) -> Iterator[int]:
        return iter(sorted(self._windows[monitor]))

    @property
    def nbytes(self) -> int:
        return sum(
            cell.nbytes for windows in self._windows.values() for cells in windows.values() for cell in cells.values()
        )

    def to_bytes(self) -> bytes:
        """A compact snapshot: an orjson index of cells, then each cell's keys and counts."""
        index, arrays = [], []
        for monitor, windows in self._windows.items():
            for start, cells in windows.items():
                for key, cell in cells.items():
                    keys, vals = cell.merged()
                    index.append([monitor.name, start, key.node, key.metric, key.family, len(keys)])
                    arrays += [keys.tobytes(), vals.tobytes()]
        header = orjson.dumps(index)
        return b"".join([_SNAPSHOT_MAGIC, _HEADER_LEN.pack(len(header)), header, *arrays])

    @classmethod
    def from_bytes(cls, raw: bytes, monitors: tuple[Monitor, ...]) -> WindowedCounts:
        """Inverse of ``to_bytes``; cells of monitors no longer configured are dropped."""
        if raw[:4] != _SNAPSHOT_MAGIC:
            raise ValueError("not an inbound-audit counts snapshot (bad magic)")
        (header_len,) = _HEADER_LEN.unpack_from(raw, 4)
        offset = 8 + header_len
        store = cls(monitors)
        by_name = {m.name: m for m in monitors}
        for name, start, node, metric, family, length in orjson.loads(raw[8:offset]):
            keys = np.frombuffer(raw, KEY_DTYPES[family], length, offset)
            offset += keys.nbytes
            vals = np.frombuffer(raw, np.int64, length, offset)
            offset += vals.nbytes
            if name in by_name:
                cell = PrefixCounts.from_sorted(family, keys, vals)
                store._windows[by_name[name]].setdefault(start, {})[CellKey(node, metric, family)] = cell
        return store
