"""The open-session gauge per node, service and client address (``inbound_session_count``).

Unlike the windowed counters this is a level, not a sum over time: open +1, close -1 (never
below zero, so a close without its open is harmless), and ``node_reset`` zeroes a node when its
MTA restarts. Entries at zero are deleted, so memory follows the sessions open right now.
"""

from __future__ import annotations

from collections.abc import Iterable

from pipeline.core.cidr import Block
from pipeline.core.delta import SessionOp

__all__ = ["SessionGauge"]


class SessionGauge:
    """Open sessions by node -> service -> (family, address)."""

    def __init__(self) -> None:
        self._open: dict[str, dict[str, dict[tuple[int, int], int]]] = {}

    def apply(self, ops: Iterable[SessionOp]) -> None:
        """Apply session events in their stream order."""
        for kind, node, family, addr, service in ops:
            if kind == "reset":
                self._open.pop(node, None)
                continue
            by_addr = self._open.setdefault(node, {}).setdefault(service, {})
            key = (family, addr)
            current = by_addr.get(key, 0)
            if kind == "open":
                by_addr[key] = current + 1
            elif current > 1:
                by_addr[key] = current - 1
            else:
                by_addr.pop(key, None)

    def entries(self) -> list[tuple[str, str, int, int, int]]:
        """(node, service, family, address, open sessions) for every open entry; for snapshots."""
        return [
            (node, service, family, addr, count)
            for node, services in self._open.items()
            for service, by_addr in services.items()
            for (family, addr), count in by_addr.items()
        ]

    @classmethod
    def from_entries(cls, entries: Iterable[tuple[str, str, int, int, int]]) -> SessionGauge:
        gauge = cls()
        for node, service, family, addr, count in entries:
            gauge._open.setdefault(node, {}).setdefault(service, {})[(family, addr)] = count
        return gauge

    def count(self, block: Block, service: str, node: str | None) -> int:
        """Sessions open now from ``block`` to ``service`` on ``node`` (None: the whole fleet)."""
        nodes = self._open.values() if node is None else [self._open.get(node, {})]
        total = 0
        for services in nodes:
            for (family, addr), open_count in services.get(service, {}).items():
                if family == block.family and block.lo <= addr <= block.hi:
                    total += open_count
        return total
