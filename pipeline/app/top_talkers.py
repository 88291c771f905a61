"""The dashboard's top talkers: the fleet's current and previous window of every monitor, at the
window summaries' prefix levels (``summarize_window``), read from this worker's replica.

Ranking a big window costs a sort of its addresses, so a result is reused for ``max_age_s``:
however many pages poll, the worker ranks at most once per that interval.
"""

from __future__ import annotations

from typing import Any

from pipeline.core.counts import WindowedCounts
from pipeline.core.summaries import summarize_window
from pipeline.core.windows import Monitor

__all__ = ["TopTalkers"]


class TopTalkers:
    """Cached rankings of ``rows`` entries per prefix level."""

    def __init__(self, monitors: tuple[Monitor, ...], rows: int, max_age_s: float) -> None:
        self.monitors, self.rows, self.max_age_s = monitors, rows, max_age_s
        self._ranked: list[dict[str, Any]] = []
        self._ranked_at = float("-inf")

    def ranking(self, counts: WindowedCounts, now_s: float) -> list[dict[str, Any]]:
        """Per monitor, its current and previous window: bounds, totals and top talkers."""
        if now_s - self._ranked_at >= self.max_age_s or now_s < self._ranked_at:
            self._ranked = [self._monitor(counts, monitor, now_s) for monitor in self.monitors]
            self._ranked_at = now_s
        return self._ranked

    def _monitor(self, counts: WindowedCounts, monitor: Monitor, now_s: float) -> dict[str, Any]:
        current = monitor.window_start(now_s)
        windows = []
        for label, start in (("current", current), ("previous", current - monitor.size_s)):
            summary = summarize_window(counts, monitor, start, None, self.rows, now_s)
            windows.append(
                {
                    "label": label,
                    "start": start,
                    "end": start + monitor.size_s,
                    "kept": start >= monitor.oldest_kept_start(now_s),
                    "totals": summary["totals"],
                    "top": summary["top"],
                }
            )
        return {"monitor": monitor.name, "windows": windows}
