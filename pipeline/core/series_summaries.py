"""Window summaries of the named series (SPEC section 6, for section 8's series).

When a series' window closes (``window_grace_s`` after its end), one summary per scope — the
fleet, and each node that counted in it — goes to the windows topic beside the monitors':
``{"series", "type", "window_start", "window_end", "scope", ["node",] "total", "top",
"closed_at"}``, ``top`` being the keys with the largest counts (``{"key", "count"}``, at most
``top_talkers``; cidr keys as addresses, counted after ``prefix_len`` truncation).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

import orjson

from pipeline.core.prefix_counts import PrefixCounts, keys_to_ints
from pipeline.core.series import SeriesDef
from pipeline.core.series_counts import SeriesCounts
from pipeline.core.summaries import TAKEOVER_HOLD_S, resume_start
from pipeline.settings import Settings

__all__ = ["SeriesSummaryClock", "summarize_series_window"]


def _top(definition: SeriesDef, cell: object, limit: int) -> list[dict[str, object]]:
    if isinstance(cell, PrefixCounts):
        keys, vals = cell.merged()
        family = definition.family
        assert family is not None
        items = list(zip(keys_to_ints(family, keys), vals.tolist(), strict=True))
        named = [(str(ipaddress.ip_address(k) if family == 6 else ipaddress.IPv4Address(k)), v) for k, v in items]
    else:
        named = cell.items()  # type: ignore[attr-defined]
    ranked = sorted(named, key=lambda item: (-item[1], item[0]))[:limit]
    return [{"key": key, "count": count} for key, count in ranked]


def summarize_series_window(
    counts: SeriesCounts, definition: SeriesDef, start: int, node: str | None, limit: int, closed_at: float
) -> dict[str, object]:
    """The summary of one series window and scope."""
    cell = counts.window_cells(definition, start).get(node)
    summary: dict[str, object] = {
        "series": definition.name,
        "type": definition.type,
        "window_start": start,
        "window_end": start + definition.interval,
        "scope": "cluster" if node is None else "node",
    }
    if node is not None:
        summary["node"] = node
    summary["total"] = 0 if cell is None else cell.total()
    summary["top"] = [] if cell is None else _top(definition, cell, limit)
    summary["closed_at"] = closed_at
    return summary


class SeriesSummaryClock:
    """Per series, the next window to summarise, from where the publisher resumed (as
    ``SummaryClock`` does for the monitors); a series defined later starts at its current window."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._last: dict[str, int] | None = None  # None: not publishing
        self._next: dict[SeriesDef, int] = {}

    def resume(self, last_summarised: dict[str, int]) -> None:
        self._last, self._next = dict(last_summarised), {}

    def pause(self) -> None:
        self._last, self._next = None, {}

    def due(
        self, counts: SeriesCounts, definitions: Iterable[SeriesDef], now_s: float, counted_s: float
    ) -> tuple[list[tuple[str, bytes]], dict[SeriesDef, int]]:
        """(series name, encoded summary) of every series window closed (and counted, see
        ``SummaryClock.due``) since the last ``advance``, and where to advance once published."""
        out: list[tuple[str, bytes]] = []
        upto: dict[SeriesDef, int] = {}
        if self._last is None:
            return out, upto
        until, grace = min(now_s, counted_s), self._settings.window_grace_s
        for definition in definitions:
            size = definition.interval
            start = self._next.get(definition)
            if start is None:
                start = resume_start(definition.windows, self._last.get(definition.name), now_s, self._settings)
            while start + size + grace <= until:
                cells = counts.window_cells(definition, start)
                nodes = sorted(scope for scope in cells if scope is not None)
                for node in [None, *nodes]:
                    summary = summarize_series_window(
                        counts, definition, start, node, self._settings.top_talkers, now_s
                    )
                    out.append((definition.name, orjson.dumps(summary)))
                start += size
            upto[definition] = start
        return out, upto

    def advance(self, upto: dict[SeriesDef, int]) -> None:
        if self._last is not None:
            self._next.update(upto)

    def expire(self, counts: SeriesCounts, now_s: float) -> None:
        """Free series windows once every worker is past summarising them (see ``SummaryClock``)."""
        counts.expire(now_s - self._settings.window_grace_s - TAKEOVER_HOLD_S)
