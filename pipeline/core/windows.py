"""Monitors ("SIZE,COUNT") and epoch-aligned tumbling-window arithmetic (SPEC section 2).

A window is identified by its start second; window index 0 is the one containing the reference
time, index k the one k windows earlier. Everything here is integer arithmetic on seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Monitor", "parse_monitor", "parse_monitors"]


@dataclass(frozen=True, slots=True)
class Monitor:
    """A ring of ``count`` tumbling windows of ``size_s`` seconds."""

    size_s: int
    count: int

    @property
    def name(self) -> str:
        return f"{self.size_s},{self.count}"

    @property
    def span_s(self) -> int:
        return self.size_s * self.count

    def window_start(self, ts: float) -> int:
        """Start second of the window holding ``ts`` (floor, so negative-safe)."""
        return math.floor(ts / self.size_s) * self.size_s

    def start_of_index(self, at: float, index: int) -> int:
        """Start second of window ``index`` counted back from the window holding ``at``."""
        return self.window_start(at) - index * self.size_s

    def oldest_kept_start(self, now: float) -> int:
        """Start of the oldest window still kept at ``now``; anything earlier is expired."""
        return self.start_of_index(now, self.count - 1)

    def __str__(self) -> str:
        return self.name


def parse_monitor(text: str) -> Monitor:
    """Parse ``"300,6"`` (spaces tolerated); raise ``ValueError`` naming the bad text."""
    if not isinstance(text, str):
        raise ValueError(f"monitor must be a string like '300,6', got {text!r}")
    parts = text.split(",")
    if len(parts) != 2:
        raise ValueError(f"monitor {text!r} is not 'SIZE,COUNT' (e.g. '300,6')")
    values = []
    for part in parts:
        part = part.strip()
        if not part.isdigit() or not part.isascii():
            raise ValueError(f"monitor {text!r}: {part!r} is not a positive integer")
        values.append(int(part))
    size_s, count = values
    if size_s < 1 or count < 1:
        raise ValueError(f"monitor {text!r}: SIZE and COUNT must both be >= 1")
    return Monitor(size_s, count)


def parse_monitors(text: str) -> tuple[Monitor, ...]:
    """Parse the space-separated ``INBOUND_AUDIT_MONITORS`` list (tolerating ``"300, 6"``)."""
    normalized = ",".join(p.strip() for p in text.split(","))
    monitors: list[Monitor] = []
    for token in normalized.split():
        monitor = parse_monitor(token)
        if monitor not in monitors:
            monitors.append(monitor)
    if not monitors:
        raise ValueError("no monitor configured (expected e.g. '60,1 300,6 1800,4')")
    return tuple(monitors)
