"""An independent brute-force oracle over a generated event stream, for end-to-end tests.

It shares no code with the pipeline: addresses go through the standard library's ``ipaddress``,
windows through plain arithmetic, and every answer is a filtered sum over the list of events.
"""

from __future__ import annotations

import ipaddress
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

WINDOWED = {"connection": "connections", "reception": "receptions", "rejection": "rejections"}


def addr_of(text: str) -> tuple[int, int]:
    ip = ipaddress.ip_address(text)
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.version, int(ip)


def block_of(cidr: str | None, ip: str | None) -> tuple[int, int, int]:
    """(family, lo, hi) per SPEC section 5, via ipaddress."""
    if cidr is None or cidr.startswith("/"):
        family, value = addr_of(ip)  # type: ignore[arg-type]
        width = 32 if family == 4 else 128
        prefix = width if cidr is None else int(cidr[1:])
    else:
        text = cidr.replace("[", "").replace("]", "")
        addr, _, prefix_text = text.partition("/")
        family, value = addr_of(addr)
        prefix = int(prefix_text) if prefix_text else (32 if family == 4 else 128)
        if family == 4 and ":" in addr:
            prefix -= 96
    network = ipaddress.IPv4Network if family == 4 else ipaddress.IPv6Network
    net = network((value, prefix), strict=False)  # an int alone would be taken as IPv4
    return family, int(net.network_address), int(net.broadcast_address)


@dataclass
class Monitor:
    size: int
    count: int

    @property
    def name(self) -> str:
        return f"{self.size},{self.count}"

    def start(self, ts: float) -> int:
        return math.floor(ts / self.size) * self.size

    def oldest(self, now: float) -> int:
        return self.start(now) - (self.count - 1) * self.size


@dataclass
class Stream:
    """A generated stream: the messages to publish and the events each monitor must count."""

    monitors: list[Monitor]
    t0: float
    messages: list[tuple[bytes, bytes]] = field(default_factory=list)
    counted: list[dict[str, Any]] = field(default_factory=list)  # valid windowed events, with "kept" monitors
    sessions: list[dict[str, Any]] = field(default_factory=list)  # valid session events in per-node order
    bad: dict[str, int] = field(default_factory=dict)  # expected dead-letter reasons -> count
    ips: list[str] = field(default_factory=list)

    def count(
        self,
        op: str,
        monitor: Monitor,
        block: tuple[int, int, int],
        startv: int,
        endv: int,
        at: float,
        node: str | None,
    ) -> int:
        family, lo, hi = block
        starts = {monitor.start(at) - k * monitor.size for k in range(startv, endv + 1)}
        total = 0
        for e in self.counted:
            if (
                WINDOWED[e["event"]] == op
                and monitor.name in e["kept"]
                and e["family"] == family
                and lo <= e["addr"] <= hi
                and (node is None or e["node"] == node)
                and monitor.start(e["ts"]) in starts
            ):
                total += e.get("n", 1)
        return total

    def open_sessions(self, block: tuple[int, int, int], service: str, node: str | None) -> int:
        level: dict[tuple[str, str, int, int], int] = {}
        for e in self.sessions:
            if e["event"] == "node_reset":
                for key in [k for k in level if k[0] == e["node"]]:
                    del level[key]
                continue
            key = (e["node"], e.get("service", "SMTP"), e["family"], e["addr"])
            level[key] = max(0, level.get(key, 0) + (1 if e["event"] == "session_open" else -1))
        family, lo, hi = block
        return sum(
            v
            for (nd, svc, fam, addr), v in level.items()
            if svc == service and fam == family and lo <= addr <= hi and (node is None or nd == node)
        )


def _ip_pool(rng: random.Random) -> list[str]:
    pool = [f"203.0.113.{i}" for i in range(1, 40)]  # an abusive /24
    pool += [f"198.51.100.{rng.randrange(256)}" for _ in range(30)]
    pool += [f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}" for _ in range(300)]
    pool += [f"2001:db8:bad:1::{i:x}" for i in range(1, 30)]  # an abusive /64
    pool += [
        f"2001:db8:{rng.randrange(65536):x}:{rng.randrange(65536):x}::{rng.randrange(65536):x}" for _ in range(150)
    ]
    pool += [f"::ffff:203.0.113.{i}" for i in range(1, 10)]  # IPv4-mapped: counts as IPv4
    return pool


def generate(
    monitors: list[Monitor], t0: float, n_events: int, seed: int, nodes: int = 4, horizon_s: float = 240.0
) -> Stream:
    """Events whose fate is certain for ``horizon_s`` seconds after ``t0`` (no window expires
    under them mid-test), ~3% malformed, singles and batches, one node per message."""
    rng = random.Random(seed)
    stream = Stream(monitors, t0)
    pool = _ip_pool(rng)
    stream.ips = pool
    span = max(m.size * m.count for m in monitors)
    node_names = [f"mta-{i}" for i in range(1, nodes + 1)]

    def fate(ts: float) -> set[str] | None:
        kept = set()
        for m in monitors:
            if m.start(ts) >= m.oldest(t0 + horizon_s):
                kept.add(m.name)
            elif m.start(ts) >= m.oldest(t0):
                return None  # would expire during the test: ambiguous, don't use
        return kept

    def good_ts() -> tuple[float, set[str]]:
        while True:
            ts = round(t0 - rng.random() * span * 1.1, 3) if rng.random() < 0.5 else round(t0 - rng.random() * 400, 3)
            kept = fate(ts)
            if kept:
                return ts, kept

    def bad_event() -> tuple[Any, str]:
        kind = rng.randrange(8)
        ip = rng.choice(pool)
        base = {"node": rng.choice(node_names), "ts": t0, "ip": ip, "event": "connection"}
        if kind == 0:
            return {k: v for k, v in base.items() if k != "ip"}, "missing_field"
        if kind == 1:
            return {**base, "n": 0}, "invalid_field"
        if kind == 2:
            return {**base, "ip": "300.1.2.3"}, "invalid_ip"
        if kind == 3:
            return {**base, "event": "teleport"}, "unknown_event"
        if kind == 4:
            return {**base, "ts": t0 + 3600}, "future_timestamp"
        if kind == 5:
            return {**base, "ts": t0 - span - 7200}, "too_late"
        if kind == 6:
            return {**base, "ts": "yesterday"}, "invalid_field"
        return 42, "not_an_object"

    produced = 0
    while produced < n_events:
        node = rng.choice(node_names)
        size = 1 if rng.random() < 0.3 else rng.randint(2, 400)
        batch: list[Any] = []
        for _ in range(size):
            r = rng.random()
            if r < 0.03:
                value, reason = bad_event()
                stream.bad[reason] = stream.bad.get(reason, 0) + 1
                batch.append(value)
            elif r < 0.08:
                ip = rng.choice(pool)
                kind = rng.choice(
                    ["session_open", "session_open", "session_close", "node_reset"]
                    if r > 0.0795
                    else ["session_open", "session_close"]
                )
                ev = {"node": node, "ts": t0, "ip": ip, "event": kind, "service": rng.choice(["SMTP", "ECStream"])}
                batch.append(ev)
                family, addr = addr_of(ip)
                stream.sessions.append({**ev, "family": family, "addr": addr})
            else:
                ip = rng.choice(pool)
                ts, kept = good_ts()
                ev: dict[str, Any] = {
                    "node": node,
                    "ts": ts,
                    "ip": ip,
                    "event": rng.choice(["connection", "connection", "reception", "rejection"]),
                }
                if rng.random() < 0.3:
                    ev["n"] = rng.randint(1, 50)
                if rng.random() < 0.05:
                    ev["extra"] = {"ignored": True}
                batch.append(ev)
                family, addr = addr_of(ip)
                stream.counted.append({**ev, "family": family, "addr": addr, "kept": kept})
        produced += size
        value = orjson.dumps(batch[0] if size == 1 else batch)
        stream.messages.append((node.encode(), value))
        if rng.random() < 0.005:
            stream.messages.append((node.encode(), b"{not json"))
            stream.bad["invalid_json"] = stream.bad.get("invalid_json", 0) + 1
    return stream


def random_requests(stream: Stream, count: int, seed: int) -> list[tuple[dict[str, Any], Callable[[float], int]]]:
    """(request, expected(now)) pairs over every op, monitor, cidr form, range, scope and ``at``.

    The expectation takes the clock at send time: a request without ``at`` means "now"."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        op = rng.choice(["connections", "connections", "receptions", "rejections", "inbound_session_count"])
        ip = rng.choice(stream.ips)
        family = 4 if (":" not in ip or ip.startswith("::ffff:")) else 6
        width = 32 if family == 4 else 128
        form = rng.randrange(5)
        request: dict[str, Any] = {"op": op}
        if form == 0:
            cidr = None
        elif form == 1:
            cidr = f"/{rng.randint(0, width)}"
        elif form == 2:
            plain = ip.replace("::ffff:", "")
            prefix = rng.randint(0, width)
            cidr = f"[{plain}]/{prefix}" if family == 6 and rng.random() < 0.5 else f"{plain}/{prefix}"
        elif form == 3:
            cidr = ip.replace("::ffff:", "")
        else:
            cidr = "0.0.0.0/0" if family == 4 else "::/0"
        if cidr is None or cidr.startswith("/"):
            request["ip"] = ip
        elif rng.random() < 0.3:
            request["ip"] = rng.choice(stream.ips)  # irrelevant when the cidr is absolute
        if cidr is not None:
            request["cidr"] = cidr
        cluster = rng.random() < 0.5
        node = None if cluster else f"mta-{rng.randint(1, 4)}"
        request["cluster"] = cluster
        if node:
            request["node"] = node
        block = block_of(cidr, request.get("ip"))
        if op == "inbound_session_count":
            service = rng.choice(["SMTP", "ECStream"])
            if service != "SMTP" or rng.random() < 0.5:
                request["service"] = service
            expected = _const(stream.open_sessions(block, service, node))
        else:
            monitor = rng.choice(stream.monitors)
            request["monitor"] = monitor.name if rng.random() < 0.9 else monitor.name.replace(",", ", ")
            a, b = sorted(rng.randrange(monitor.count) for _ in range(2))
            if rng.random() < 0.7:
                request["startv"], request["endv"] = a, b
            at = None
            if rng.random() < 0.5:
                at = stream.t0 - rng.random() * monitor.size * monitor.count
                request["at"] = at
            expected = _windowed(stream, op, monitor, block, request.get("startv", 0), request.get("endv", 0), at, node)
        out.append((request, expected))
    return out


def _const(value: int) -> Callable[[float], int]:
    return lambda _now: value


def _windowed(
    stream: Stream,
    op: str,
    monitor: Monitor,
    block: tuple[int, int, int],
    startv: int,
    endv: int,
    at: float | None,
    node: str | None,
) -> Callable[[float], int]:
    return lambda now: stream.count(op, monitor, block, startv, endv, now if at is None else at, node)


def add_talker(stream: Stream, ip: str, node: str, ts: float, messages: int, n: int) -> int:
    """``messages`` single connection events of ``n`` each from ``ip`` at ``ts`` (kept by every
    monitor): a top talker the tests know. Returns the connections added."""
    family, addr = addr_of(ip)
    event = {"node": node, "ts": ts, "ip": ip, "event": "connection", "n": n}
    for _ in range(messages):
        stream.messages.append((node.encode(), orjson.dumps(event)))
        stream.counted.append({**event, "family": family, "addr": addr, "kept": {m.name for m in stream.monitors}})
    return messages * n
