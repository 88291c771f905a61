"""Events/s for the dashboard's chart: periodic readings of the replica's ``NodeTally``.

A bounded number of readings is kept, and a series names only the busiest nodes (the rest are
summed as "others"), so the chart's data stays the same size with ten nodes or ten thousand.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from pipeline.core.tally import NodeTally

__all__ = ["RateHistory"]


class RateHistory:
    """The last ``keep`` readings of one tally (a new tally object starts the history again)."""

    def __init__(self, keep: int) -> None:
        self._readings: deque[tuple[float, np.ndarray]] = deque(maxlen=keep)
        self._tally: NodeTally | None = None

    def record(self, now_s: float, tally: NodeTally) -> None:
        if tally is not self._tally:  # a replica restored from a snapshot counts from zero again
            self._readings.clear()
            self._tally = tally
        if self._readings and now_s <= self._readings[-1][0]:
            return  # the wall clock stepped back: no interval to divide by
        self._readings.append((now_s, tally.reading()))

    def series(self, top: int) -> dict[str, Any]:
        """Events/s per interval between readings: the fleet, the ``top`` nodes with the most
        events over the whole span, and all other nodes together."""
        if self._tally is None or len(self._readings) < 2:
            return {"times": [], "fleet": [], "nodes": [], "others": [], "active_nodes": 0}
        times = np.array([t for t, _ in self._readings])
        width = len(self._readings[-1][1])
        cumulative = np.zeros((len(self._readings), width), np.int64)
        for row, (_, reading) in enumerate(self._readings):
            cumulative[row, : len(reading)] = reading
        events = np.diff(cumulative, axis=0)
        rates = events / np.diff(times)[:, None]
        per_node = events.sum(axis=0)
        busiest = [i for i in np.argsort(-per_node, kind="stable")[:top].tolist() if per_node[i] > 0]
        names = self._tally.names()
        fleet = rates.sum(axis=1)
        shown = rates[:, busiest].sum(axis=1)
        return {
            "times": _rounded(times[1:]),
            "fleet": _rounded(fleet),
            "nodes": [{"node": names[i], "rates": _rounded(rates[:, i])} for i in busiest],
            "others": _rounded(np.maximum(fleet - shown, 0)),
            "active_nodes": int(np.count_nonzero(per_node)),
        }


def _rounded(values: np.ndarray) -> list[float]:
    return np.round(values, 1).tolist()
