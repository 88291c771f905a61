"""Events per node as the replica applies them: the counter behind the dashboard's events/s.

Every worker applies every delta, so any worker's tally covers the whole fleet. Counts are
cumulative since the replica was built (a rate is the difference of two readings) and kept in one
array indexed by node, so a reading of thousands of nodes is one small copy.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from pipeline.core.delta import Delta

__all__ = ["NodeTally"]


class NodeTally:
    """Events (windowed and session) applied so far, per node name."""

    def __init__(self) -> None:
        self._index: dict[str, int] = {}
        self._names: list[str] = []
        self._counts = np.zeros(16, np.int64)

    def add(self, delta: Delta) -> None:
        """Count the events of an applied delta (one bincount per address family)."""
        per_node = np.zeros(len(delta.nodes), np.int64)
        for cols in (delta.v4, delta.v6):
            if len(cols):
                per_node += np.bincount(cols.node, minlength=len(delta.nodes))
        for name, count in zip(delta.nodes, per_node.tolist(), strict=True):
            if count:
                self._add(name, count)
        for name, count in Counter(op[1] for op in delta.sessions).items():
            self._add(name, count)

    def _add(self, name: str, count: int) -> None:
        slot = self._slot(name)  # may grow the array: index it only afterwards
        self._counts[slot] += count

    def _slot(self, name: str) -> int:
        slot = self._index.get(name)
        if slot is None:
            slot = self._index[name] = len(self._names)
            self._names.append(name)
            if slot == len(self._counts):
                self._counts = np.concatenate((self._counts, np.zeros(slot, np.int64)))
        return slot

    def names(self) -> list[str]:
        """Node names in slot order: a reading's element ``i`` belongs to ``names()[i]``."""
        return list(self._names)

    def reading(self) -> np.ndarray:
        """A copy of the cumulative counts, one per known node; later readings only grow longer."""
        return self._counts[: len(self._names)].copy()
