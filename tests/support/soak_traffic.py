"""The soak's steady event stream: one ``EventPublisher`` per MTA node, a mixed stream of IPv4 and
IPv6 events of every kind, session events, and a share of malformed events and messages.

Every event is recorded (``SoakRecord``) as it is handed to its publisher; ``close`` waits for
every publisher to deliver everything, so the record is what reached the events topic (at least
once). Malformed events carry a ``soak_seq`` so their dead letters can be matched one by one.
Event times lie up to 20 s before now, so no event is too late or in the future by the broker's
clock, and every window checked at the end is still kept by the checked monitors.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from soak_record import SoakRecord

from pipeline.clients.publisher import EventPublisher
from pipeline.settings import Settings

__all__ = ["Traffic", "ip_pool", "SERVICES"]

SERVICES = ("SMTP", "IMAP")
WINDOWED_KINDS = ("connection", "connection", "reception", "rejection")
MALFORMED_SHARE = 0.02
SESSION_SHARE = 0.05
RAW_MESSAGE_SHARE = 0.02  # of publishing ticks: one whole malformed message besides the stream


def ip_pool(rng: random.Random) -> list[str]:
    """Addresses in a few /16s and /24s, IPv6 /64s, and IPv4-mapped IPv6 (which counts as IPv4)."""
    pool = []
    for a in (10, 172, 198):
        for b in rng.sample(range(256), 2):
            pool += [f"{a}.{b}.{c}.{rng.randrange(1, 255)}" for c in rng.sample(range(256), 2) for _ in range(4)]
    for prefix in ("2001:db8:1:2", "2001:db8:ffff:0"):
        pool += [f"{prefix}::{rng.randrange(1, 65535):x}" for _ in range(8)]
    pool += [f"::ffff:{ip}" for ip in rng.sample([p for p in pool if ":" not in p], 6)]
    return pool


def _malformed(rng: random.Random, node: str, ip: str, seq: int) -> tuple[Any, str]:
    """A bad event (as published) and the reason it must be dead-lettered with."""
    base = {"soak_seq": seq, "node": node, "ts": time.time(), "ip": ip, "event": "connection"}
    kind = rng.randrange(7)
    if kind == 0:
        return {k: v for k, v in base.items() if k != "ip"}, "missing_field"
    if kind == 1:
        return {**base, "ip": "300.1.2.3"}, "invalid_ip"
    if kind == 2:
        return {**base, "event": "teleport"}, "unknown_event"
    if kind == 3:
        return {**base, "n": 0}, "invalid_field"
    if kind == 4:
        return {**base, "ts": "yesterday"}, "invalid_field"
    if kind == 5:
        return {**base, "event": "session_open", "service": 7}, "invalid_field"
    return f"soak_seq:{seq}", "not_an_object"


class Traffic:
    """Publishes ``rate`` events/s over ``nodes`` publishers until stopped; records all of it."""

    def __init__(self, settings: Settings, nodes: int, rate: int, seed: int, record: SoakRecord) -> None:
        self.settings = settings
        self.rng = random.Random(seed)
        self.nodes = [f"soak-{i}" for i in range(1, nodes + 1)]
        self.rate = rate
        self.record = record
        self.ips = ip_pool(self.rng)
        self.session_ips = self.rng.sample(self.ips, 12)
        self.publishers: dict[str, EventPublisher] = {}
        self._locks = {node: asyncio.Lock() for node in self.nodes}
        self._raw: AIOKafkaProducer | None = None
        self._seq = 0

    async def start(self) -> None:
        for node in self.nodes:
            self.publishers[node] = await self._publisher(node)
        self._raw = AIOKafkaProducer(bootstrap_servers=self.settings.bootstrap, acks="all", linger_ms=0)
        await self._raw.start()

    async def _publisher(self, node: str) -> EventPublisher:
        publisher = EventPublisher(self.settings, node, batch_size=500, max_backoff_s=2.0)
        await publisher.start()  # sends node_reset, which the gauge oracle must see too
        self.record.session({"node": node, "ts": time.time(), "ip": "0.0.0.0", "event": "node_reset"})
        return publisher

    async def restart_publisher(self, rng: random.Random) -> str:
        """An MTA's publisher closes (delivering everything) and a new one starts (node_reset)."""
        node = rng.choice(self.nodes)
        async with self._locks[node]:
            await self.publishers[node].close(timeout_s=None)
            self.publishers[node] = await self._publisher(node)
        return node

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _event(self, node: str) -> tuple[dict[str, Any] | str, tuple[int, str] | None]:
        """One event to publish, and (its soak_seq, its dead-letter reason) if it is malformed."""
        rng = self.rng
        r = rng.random()
        if r < MALFORMED_SHARE:
            seq = self._next_seq()
            event, reason = _malformed(rng, node, rng.choice(self.ips), seq)
            return event, (seq, reason)
        now = time.time()
        if r < MALFORMED_SHARE + SESSION_SHARE:
            kind = rng.choice(("session_open", "session_open", "session_close"))
            ip = rng.choice(self.session_ips)
            return {"node": node, "ts": now, "ip": ip, "event": kind, "service": rng.choice(SERVICES)}, None
        windowed: dict[str, Any] = {
            "node": node,
            "ts": round(now - rng.random() * 20, 3),
            "ip": rng.choice(self.ips),
            "event": rng.choice(WINDOWED_KINDS),
        }
        if rng.random() < 0.3:
            windowed["n"] = rng.randint(2, 20)
        return windowed, None

    async def run(self, stop: asyncio.Event) -> None:
        """Ticks of 0.1 s, each publishing a tenth of the rate spread over the nodes."""
        per_tick = max(1, self.rate // 10)
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        while not stop.is_set():
            by_node: dict[str, list[tuple[dict[str, Any] | str, tuple[int, str] | None]]] = {}
            for _ in range(per_tick):
                node = self.rng.choice(self.nodes)
                by_node.setdefault(node, []).append(self._event(node))
            for node, events in by_node.items():
                async with self._locks[node]:
                    for event, bad in events:
                        await self._publish(node, event, bad)
            if self.rng.random() < RAW_MESSAGE_SHARE:
                await self._raw_malformed_message()
            next_tick += 0.1
            await asyncio.sleep(max(0.0, next_tick - loop.time()))

    async def _publish(self, node: str, event: dict[str, Any] | str, bad: tuple[int, str] | None) -> None:
        if isinstance(event, str):  # an array element that is not an object: only raw bytes say that
            await self._send_raw(node, f'["{event}"]'.encode())
        else:
            await self.publishers[node].publish(event)
        if bad is not None:
            self.record.bad(*bad)
        elif isinstance(event, dict) and event["event"].startswith("session"):
            self.record.session(event)
        elif isinstance(event, dict):
            self.record.windowed(event)

    async def _raw_malformed_message(self) -> None:
        """A whole message that is not JSON (one dead letter for the message)."""
        seq = self._next_seq()
        node = self.rng.choice(self.nodes)
        await self._send_raw(node, f'{{"soak_seq": {seq}, "node": "{node}", "ts'.encode())
        self.record.bad(seq, "invalid_json")

    async def _send_raw(self, node: str, value: bytes) -> None:
        """Until acknowledged: the broker may be restarting."""
        assert self._raw is not None
        while True:
            try:
                await self._raw.send_and_wait(self.settings.events_topic, value, key=node.encode())
                return
            except KafkaError:
                await asyncio.sleep(1.0)

    async def close(self) -> None:
        """Deliver everything published (as long as it takes), then disconnect."""
        for node in self.nodes:
            async with self._locks[node]:
                await self.publishers[node].close(timeout_s=None)
        if self._raw is not None:
            await self._raw.stop()
