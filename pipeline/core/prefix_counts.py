"""Exact counts per address, answering the sum over ANY address range in O(log n).

One ``PrefixCounts`` holds one (monitor, window, scope, metric, family) cell. Addresses are kept
as a sorted, de-duplicated numpy array with a running-sum array beside it, so a CIDR block —
whatever its mask — is one contiguous key range and its count is ``cum[j] - cum[i]`` after two
binary searches. Inserts are buffered and merged in bulk (amortised O(log n) per address), which
keeps the per-event cost vectorised instead of one dict update per prefix level.

IPv4 addresses are ``uint32``; IPv6 addresses are 16-byte big-endian strings (``S16``), whose
byte order equals numeric order.

A merge sorts the buffered inserts and folds them into the sorted keys. numpy does it by sorting
the whole cell again; the native module (where built) sorts only the new keys and merges in one
pass, several times faster: merges run on the event loop that also answers queries.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np

from pipeline.core.native import NATIVE

__all__ = ["PrefixCounts", "KEY_DTYPES", "key_of", "keys_to_ints", "Merge", "merge_numpy", "merge_native", "MERGE"]

#: numpy key dtype per address family.
KEY_DTYPES: dict[int, np.dtype] = {4: np.dtype(np.uint32), 6: np.dtype("S16")}

#: Buffered inserts are merged once they pass this many, or half the merged keys, times the cell's
#: spread factor: cells fed the same events (the same metric in each monitor's window) would
#: otherwise all merge on the same delta, one long pause instead of several short ones.
_MERGE_MIN = 65_536
_MERGE_SPREAD = (1.0, 1.5, 1.25, 1.75, 1.125, 1.625, 1.375, 1.875)
_spread_dealer = itertools.cycle(_MERGE_SPREAD)

#: The largest address per family: a block from 0 to it is the whole family (``/0``).
_FAMILY_MAX = {4: (1 << 32) - 1, 6: (1 << 128) - 1}


def key_of(family: int, value: int) -> np.generic:
    """The numpy scalar that sorts like ``value`` within ``family``'s key array."""
    if family == 4:
        return np.uint32(value)
    return np.bytes_(value.to_bytes(16, "big"))


def keys_to_ints(family: int, keys: np.ndarray) -> list[int]:
    """Back from a key array to Python ints (summaries and export only, never per event)."""
    if family == 4:
        return [int(k) for k in keys]
    raw = keys.tobytes()
    return [int.from_bytes(raw[i : i + 16], "big") for i in range(0, len(raw), 16)]


#: (family, keys, vals, pending keys, pending vals) -> merged (keys, vals, running sums).
Merge = Callable[[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


def merge_numpy(
    family: int, keys: np.ndarray, vals: np.ndarray, pending_keys: np.ndarray, pending_vals: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The reference merge: one stable sort of everything, then a sum per run of equal keys."""
    all_keys = np.concatenate((keys, pending_keys))
    all_vals = np.concatenate((vals, pending_vals)).astype(np.int64, copy=False)
    if not len(all_keys):
        return all_keys, all_vals, np.zeros(1, dtype=np.int64)
    order = np.argsort(all_keys, kind="stable")
    sorted_keys = all_keys[order]
    starts = np.flatnonzero(np.concatenate(([True], sorted_keys[1:] != sorted_keys[:-1])))
    merged_vals = np.add.reduceat(all_vals[order], starts)
    return sorted_keys[starts], merged_vals, np.concatenate((np.zeros(1, dtype=np.int64), np.cumsum(merged_vals)))


def merge_native(
    family: int, keys: np.ndarray, vals: np.ndarray, pending_keys: np.ndarray, pending_vals: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The compiled merge (``pipeline/native/src/merge.rs``): same result as ``merge_numpy``."""
    assert NATIVE is not None
    dtype = KEY_DTYPES[family]
    raw = NATIVE.merge_counts(
        dtype.itemsize,
        np.ascontiguousarray(keys, dtype).tobytes(),
        np.ascontiguousarray(vals, np.int64).tobytes(),
        np.ascontiguousarray(pending_keys, dtype).tobytes(),
        np.ascontiguousarray(pending_vals, np.int64).tobytes(),
    )
    merged_keys, merged_vals, cum = raw
    return np.frombuffer(merged_keys, dtype), np.frombuffer(merged_vals, np.int64), np.frombuffer(cum, np.int64)


#: The merge every cell uses: the compiled one where it was built.
MERGE: Merge = merge_native if NATIVE is not None else merge_numpy


class PrefixCounts:
    """Sorted unique keys with counts and running sums, plus a buffer of unmerged inserts."""

    __slots__ = (
        "family",
        "keys",
        "vals",
        "cum",
        "_pending_keys",
        "_pending_vals",
        "_pending_len",
        "_pending_sum",
        "_spread",
    )

    def __init__(self, family: int) -> None:
        self.family = family
        self.keys = np.empty(0, dtype=KEY_DTYPES[family])
        self.vals = np.empty(0, dtype=np.int64)
        self.cum = np.zeros(1, dtype=np.int64)
        self._pending_keys: list[np.ndarray] = []
        self._pending_vals: list[np.ndarray] = []
        self._pending_len = 0
        self._pending_sum = 0
        self._spread = next(_spread_dealer)

    @classmethod
    def from_sorted(cls, family: int, keys: np.ndarray, vals: np.ndarray) -> PrefixCounts:
        """A cell from already sorted, unique keys (a snapshot), without re-sorting."""
        cell = cls(family)
        cell.keys, cell.vals = keys, vals
        cell.cum = np.concatenate((np.zeros(1, dtype=np.int64), np.cumsum(vals)))
        return cell

    def add(self, keys: np.ndarray, vals: np.ndarray) -> None:
        """Buffer ``vals[i]`` more events for ``keys[i]``; merge when the buffer gets large."""
        if len(keys) == 0:
            return
        self._pending_keys.append(keys)
        self._pending_vals.append(vals)
        self._pending_len += len(keys)
        self._pending_sum += int(vals.sum())
        if self._pending_len > max(_MERGE_MIN, len(self.keys) // 2) * self._spread:
            self.compact()

    def compact(self) -> None:
        """Merge the buffered inserts into the sorted arrays."""
        if not self._pending_len:
            return
        pending_keys = np.concatenate(self._pending_keys)
        pending_vals = np.concatenate(self._pending_vals)
        self._pending_keys, self._pending_vals, self._pending_len, self._pending_sum = [], [], 0, 0
        self.keys, self.vals, self.cum = MERGE(self.family, self.keys, self.vals, pending_keys, pending_vals)

    def range_sum(self, lo: int, hi: int) -> int:
        """Total count of addresses ``lo <= a <= hi`` (an inclusive CIDR block)."""
        if lo == 0 and hi == _FAMILY_MAX[self.family]:
            return self.total()
        lo_key, hi_key = key_of(self.family, lo), key_of(self.family, hi)
        total = 0
        if self._pending_len:
            keys, vals = self._pending()
            total = int(vals[(keys >= lo_key) & (keys <= hi_key)].sum())
        i = int(np.searchsorted(self.keys, lo_key, "left"))
        j = int(np.searchsorted(self.keys, hi_key, "right"))
        return total + int(self.cum[j] - self.cum[i])

    def _pending(self) -> tuple[np.ndarray, np.ndarray]:
        """The buffered inserts as one pair of arrays, joined on the first query that needs them.

        A query scans them (one vectorised pass) and never merges them: a merge sorts, and queries
        right after ingest paid for one in every cell they touched (``bench_pipeline.py``, idle
        p99 median of 3 x 500 requests, alternating runs: 10.5 and 10.5 ms merging at query time
        once pending inserts passed 1/8 of the cell, 8.0 and 8.1 ms scanning)."""
        if len(self._pending_keys) > 1:
            self._pending_keys = [np.concatenate(self._pending_keys)]
            self._pending_vals = [np.concatenate(self._pending_vals)]
        return self._pending_keys[0], self._pending_vals[0]

    def total(self) -> int:
        return int(self.cum[-1]) + self._pending_sum

    def merged(self) -> tuple[np.ndarray, np.ndarray]:
        """All (key, count) pairs, merged; for summaries and snapshots."""
        self.compact()
        return self.keys, self.vals

    @property
    def nbytes(self) -> int:
        pending = sum(k.nbytes + v.nbytes for k, v in zip(self._pending_keys, self._pending_vals, strict=True))
        return self.keys.nbytes + self.vals.nbytes + self.cum.nbytes + pending

    def __len__(self) -> int:
        self.compact()
        return len(self.keys)
