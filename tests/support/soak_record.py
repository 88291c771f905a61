"""The soak's independent record of what it published, and the oracle's answers over it.

Counts are kept per (node, op, family, address, minute): every checked monitor's window size is
a multiple of 60 s, so any window is a sum of minutes. Addresses go through ``audit_oracle``
(the standard library's ``ipaddress``), never through the pipeline's code.
"""

from __future__ import annotations

import ipaddress
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from audit_oracle import WINDOWED, Monitor, Stream, addr_of

__all__ = ["Block", "SoakRecord", "blocks_of", "window_sum"]

#: (family, first address, last address, the cidr text a query names it by)
Block = tuple[int, int, int, str]

IPV4_PREFIXES = (32, 24, 16, 0)
IPV6_PREFIXES = (128, 64, 0)


def _block(family: int, addr: int, prefix: int) -> Block:
    width = 32 if family == 4 else 128
    host_bits = width - prefix
    lo = (addr >> host_bits) << host_bits
    hi = lo | ((1 << host_bits) - 1)
    return family, lo, hi, f"{_text(family, lo)}/{prefix}"


def _text(family: int, addr: int) -> str:
    return str(ipaddress.IPv4Address(addr) if family == 4 else ipaddress.IPv6Address(addr))


def blocks_of(ips: list[str]) -> list[Block]:
    """Every block the soak checks: each address at /32, /24, /16, /0 (IPv6 /128, /64, /0)."""
    out: set[Block] = set()
    for ip in ips:
        family, addr = addr_of(ip)
        for prefix in IPV4_PREFIXES if family == 4 else IPV6_PREFIXES:
            out.add(_block(family, addr, prefix))
    return sorted(out)


@dataclass
class SoakRecord:
    """Everything handed to a publisher (or acknowledged by the broker, for raw messages)."""

    counts: Counter[tuple[str, str, int, int, int]] = field(default_factory=Counter)
    sessions: list[dict[str, Any]] = field(default_factory=list)
    malformed: dict[int, str] = field(default_factory=dict)  # soak_seq -> expected dead-letter reason
    events: int = 0  # valid events published (windowed and session)

    def windowed(self, event: dict[str, Any]) -> None:
        family, addr = addr_of(event["ip"])
        minute = int(event["ts"] // 60) * 60
        self.counts[(event["node"], WINDOWED[event["event"]], family, addr, minute)] += event.get("n", 1)
        self.events += 1

    def session(self, event: dict[str, Any]) -> None:
        family, addr = addr_of(event["ip"])
        self.sessions.append({**event, "family": family, "addr": addr})
        self.events += 1

    def bad(self, seq: int, reason: str) -> None:
        self.malformed[seq] = reason

    def minute_totals(self, blocks: list[Block]) -> dict[tuple[Block, str | None, str], Counter[int]]:
        """(block, node or None for the fleet, op) -> minute -> count, for every checked block."""
        by_addr: dict[tuple[int, int], list[Block]] = {}  # the blocks each address lies in
        out: dict[tuple[Block, str | None, str], Counter[int]] = defaultdict(Counter)
        for (node, op, family, addr, minute), n in self.counts.items():
            key = (family, addr)
            if key not in by_addr:
                by_addr[key] = [b for b in blocks if b[0] == family and b[1] <= addr <= b[2]]
            for block in by_addr[key]:
                out[(block, node, op)][minute] += n
                out[(block, None, op)][minute] += n
        return out

    def open_sessions(self, block: Block, service: str, node: str | None) -> int:
        """The session gauge the record implies (``audit_oracle``'s replay of the session events)."""
        return Stream([], 0.0, sessions=self.sessions).open_sessions(block[:3], service, node)


def window_sum(minutes: Counter[int], monitor: Monitor, at: float, startv: int, endv: int) -> int:
    """What ``startv..endv`` of ``monitor`` counts, relative to ``at``, from per-minute totals."""
    newest = monitor.start(at) - startv * monitor.size + monitor.size
    oldest = monitor.start(at) - endv * monitor.size
    return sum(n for minute, n in minutes.items() if oldest <= minute < newest)
