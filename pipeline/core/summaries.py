"""Window summaries for the windows topic (SPEC section 6), driven by the clock.

A window is summarised once, ``window_grace_s`` after its end, per monitor and scope (the fleet,
and each node that saw traffic in it): totals per metric and the top talkers at IPv4 /32 and /24
and IPv6 /128 and /64, ranked by all events together.
"""

from __future__ import annotations

import numpy as np
import orjson

from pipeline.core.cidr import Block
from pipeline.core.counts import METRIC_NAMES, WindowedCounts
from pipeline.core.prefix_counts import PrefixCounts, keys_to_ints
from pipeline.core.windows import Monitor
from pipeline.settings import Settings

__all__ = ["SummaryClock", "summarize_window", "resume_start", "TOP_LEVELS", "TAKEOVER_HOLD_S"]

#: (label, family, prefix length) of the standard top-talker levels.
TOP_LEVELS: tuple[tuple[str, int, int], ...] = (
    ("ipv4/32", 4, 32),
    ("ipv4/24", 4, 24),
    ("ipv6/128", 6, 128),
    ("ipv6/64", 6, 64),
)


def _prefix_ids(family: int, keys: np.ndarray, prefix: int) -> np.ndarray:
    """Keys truncated to ``prefix`` bits as uint64 (IPv6 prefixes up to /64 only)."""
    if family == 4:
        return keys.astype(np.uint64) >> np.uint64(32 - prefix)
    top = np.frombuffer(keys.tobytes(), dtype=">u8").reshape(-1, 2)[:, 0].astype(np.uint64)
    return top >> np.uint64(64 - prefix)


def _top(cells: dict[int, PrefixCounts], family: int, prefix: int, limit: int) -> list[dict[str, object]]:
    per_metric: list[tuple[int, np.ndarray, np.ndarray]] = []
    for metric, cell in cells.items():
        keys, vals = cell.merged()
        per_metric.append((metric, keys, vals))
    if not per_metric:
        return []
    all_keys = np.concatenate([k for _, k, _ in per_metric])
    width = 32 if family == 4 else 128
    exact = prefix == width
    ids = all_keys if exact else _prefix_ids(family, all_keys, prefix)
    metric_codes = np.concatenate([np.full(len(k), m, np.int64) for m, k, _ in per_metric])
    vals = np.concatenate([v for _, _, v in per_metric])
    uniq, inverse = np.unique(ids, return_inverse=True)
    totals = np.bincount(inverse, weights=vals).astype(np.int64)
    best = np.argsort(-totals, kind="stable")[:limit]
    rows = []
    for index in best.tolist():
        member = inverse == index
        by_metric = np.bincount(metric_codes[member], weights=vals[member], minlength=len(METRIC_NAMES))
        if exact:
            value = keys_to_ints(family, uniq[index : index + 1])[0]
        else:
            value = int(uniq[index]) << (width - prefix)
        block = Block(family, prefix, value, value | ((1 << (width - prefix)) - 1))
        row: dict[str, object] = {"cidr": str(block)}
        row.update({name: int(by_metric[m]) for m, name in enumerate(METRIC_NAMES)})
        row["total"] = int(totals[index])
        rows.append(row)
    return rows


def summarize_window(
    counts: WindowedCounts, monitor: Monitor, start: int, node: str | None, limit: int, closed_at: float
) -> dict[str, object]:
    """The summary of one window and scope."""
    cells = counts.window_cells(monitor, start)
    totals = {name: 0 for name in METRIC_NAMES}
    by_family: dict[int, dict[int, PrefixCounts]] = {4: {}, 6: {}}
    for key, cell in cells.items():
        if key.node == node:
            totals[METRIC_NAMES[key.metric]] += cell.total()
            by_family[key.family][key.metric] = cell
    summary: dict[str, object] = {
        "monitor": monitor.name,
        "window_start": start,
        "window_end": start + monitor.size_s,
        "scope": "cluster" if node is None else "node",
    }
    if node is not None:
        summary["node"] = node
    summary["totals"] = totals
    summary["top"] = {label: _top(by_family[fam], fam, prefix, limit) for label, fam, prefix in TOP_LEVELS}
    summary["closed_at"] = closed_at
    return summary


#: Closed windows stay in memory this long after their summary is due, so that a worker taking over
#: the summaries from one that died (a session timeout plus a rebalance) still holds them.
TAKEOVER_HOLD_S = 60.0


def resume_start(windows: Monitor, last: int | None, now_s: float, settings: Settings) -> int:
    """Where a new publisher continues: after the last summarised window, or at the oldest one still
    held if that is later (``last`` None: never summarised, from the current window)."""
    if last is None:
        return windows.window_start(now_s)
    held_since = now_s - settings.window_grace_s - TAKEOVER_HOLD_S
    return max(last + windows.size_s, windows.oldest_kept_start(held_since))


class SummaryClock:
    """Which windows are due for a summary, per monitor, from where the publisher resumed.

    Inactive until ``resume``: only the one worker that publishes summaries keeps positions, and it
    resumes after the last window the windows topic already holds, so a window is summarised once
    whichever worker publishes it.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._next: dict[Monitor, int] = {}

    def resume(self, last_summarised: dict[str, int], now_s: float) -> list[str]:
        """Continue after each monitor's last summarised window (the current window for a monitor
        never summarised); returns one line per run of windows freed before anyone summarised them."""
        lost = []
        for monitor in self._settings.monitors:
            self._next[monitor] = resume_start(monitor, last_summarised.get(monitor.name), now_s, self._settings)
            last = last_summarised.get(monitor.name)
            if last is not None and self._next[monitor] > last + monitor.size_s:
                lost.append(
                    f"monitor {monitor.name}: windows {last + monitor.size_s}..{self._next[monitor] - monitor.size_s} "
                    "closed while no worker held them; they have no summary"
                )
        return lost

    def pause(self) -> None:
        self._next = {}

    def due(
        self, counts: WindowedCounts, now_s: float, counted_s: float | None = None
    ) -> tuple[list[tuple[str, bytes]], dict[Monitor, int]]:
        """(monitor, encoded summary) of every window closed since the last ``advance``, and where to
        advance once they are published. ``counted_s``: every event that reached Kafka before it is
        counted, so windows ending ``window_grace_s`` before it are complete (default: ``now_s``)."""
        out: list[tuple[str, bytes]] = []
        until = now_s if counted_s is None else min(now_s, counted_s)
        grace = self._settings.window_grace_s
        upto = {}
        for monitor, start in self._next.items():
            while start + monitor.size_s + grace <= until:
                nodes = sorted({k.node for k in counts.window_cells(monitor, start) if k.node is not None})
                for node in [None, *nodes]:
                    summary = summarize_window(counts, monitor, start, node, self._settings.top_talkers, now_s)
                    out.append((monitor.name, orjson.dumps(summary)))
                start += monitor.size_s
            upto[monitor] = start
        return out, upto

    def advance(self, upto: dict[Monitor, int]) -> None:
        if self._next:
            self._next.update(upto)

    def expire(self, counts: WindowedCounts, now_s: float) -> None:
        """Free windows once every worker is past summarising them.

        Expiring at ``now`` would drop a one-window monitor's (``60,1``) window the moment it
        closes, before it is summarised. Queries never see the difference (they ignore windows
        older than the kept ones)."""
        counts.expire(now_s - self._settings.window_grace_s - TAKEOVER_HOLD_S)
