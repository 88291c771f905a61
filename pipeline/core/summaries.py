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

__all__ = ["SummaryClock", "summarize_window", "TOP_LEVELS"]

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


class SummaryClock:
    """Remembers, per monitor, the last window summarised, so each closes exactly once here."""

    def __init__(self, settings: Settings, now_s: float) -> None:
        self._settings = settings
        self._next: dict[Monitor, int] = {m: m.window_start(now_s) for m in settings.monitors}

    def due(self, counts: WindowedCounts, now_s: float) -> list[bytes]:
        """Encoded summaries of every window that closed since the last call."""
        out: list[bytes] = []
        grace = self._settings.window_grace_s
        for monitor, start in self._next.items():
            while start + monitor.size_s + grace <= now_s:
                nodes = sorted({k.node for k in counts.window_cells(monitor, start) if k.node is not None})
                for node in [None, *nodes]:
                    summary = summarize_window(counts, monitor, start, node, self._settings.top_talkers, now_s)
                    out.append(orjson.dumps(summary))
                start += monitor.size_s
            self._next[monitor] = start
        return out

    def tick(self, counts: WindowedCounts, now_s: float) -> list[bytes]:
        """Summaries due now, then expiry of the windows they covered.

        A window is freed only after its summary: expiring at ``now`` would drop a one-window
        monitor's (``60,1``) window the moment it closes, ``window_grace_s`` before it is summarised.
        Queries never see the difference (they ignore windows older than the kept ones)."""
        out = self.due(counts, now_s)
        counts.expire(now_s - self._settings.window_grace_s)
        return out
