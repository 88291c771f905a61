"""Audit requests during the soak, and the bookkeeping of their replies.

What is checked, precisely: every request with a usable ``reply_to`` must get a reply with its
``id``. A client re-sends a request (same id) when no reply came within ``RETRY_AFTER_S``, up to
``MAX_SENDS`` sends, as a caller would after ``AuditTimeout``; a request still without a reply
after that is *unanswered* (a lost reply). Replies are at least once, so more replies than sends
are counted as *repeated*, not as errors. Each reply must be what the request asks for: ``ok``
with a count for a valid request (the value itself is checked after the soak, when it no longer
depends on ingest lag), the SPEC error code for a faulty one. A request without a usable
``reply_to`` must be dead-lettered instead (checked from the dead-letter topic).
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka.errors import KafkaError
from harness import reply_channel

from pipeline.settings import Settings

__all__ = ["RequestDriver", "SentRequest", "RETRY_AFTER_S", "MAX_SENDS"]

RETRY_AFTER_S = 30.0
MAX_SENDS = 4


@dataclass
class SentRequest:
    """One request and what came back for it."""

    id: str
    raw: bytes
    expect: str  # "ok", an error code, or "deadletter:<reason>"
    sends: int = 0
    last_sent: float = 0.0
    replies: list[dict[str, Any]] = field(default_factory=list)

    @property
    def routable(self) -> bool:
        return not self.expect.startswith("deadletter:")


class RequestDriver:
    """Sends a seeded mix of requests at ``rate``/s on the bus; collects replies on its own topic."""

    def __init__(self, settings: Settings, ips: list[str], nodes: list[str], monitors: list[str], seed: int) -> None:
        self.settings = settings
        self.rng = random.Random(seed)
        self.ips, self.nodes, self.monitors = ips, nodes, monitors
        self.reply_topic = f"{settings.reply_topic_prefix}.soak-{uuid.uuid4().hex[:8]}"
        self.sent: dict[str, SentRequest] = {}
        self.stray_replies = 0  # replies whose id no request of ours has
        self._waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}

    async def start(self) -> None:
        self.producer, self.consumer = await reply_channel(self.settings.bootstrap, self.reply_topic, 50, acks="all")
        self._reader = asyncio.create_task(self._read())

    async def stop(self) -> None:
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)
        await self.consumer.stop()
        await self.producer.stop()

    async def _read(self) -> None:
        while True:
            try:
                batches = await self.consumer.getmany(timeout_ms=200)
            except KafkaError:
                await asyncio.sleep(1.0)  # the broker is restarting
                continue
            for records in batches.values():
                for record in records:
                    reply = orjson.loads(record.value)
                    request = self.sent.get(str(reply.get("id")))
                    if request is None:
                        self.stray_replies += 1
                        continue
                    request.replies.append(reply)
                    waiter = self._waiters.pop(request.id, None)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(reply)

    async def _send(self, request: SentRequest, partition: int | None = None) -> None:
        """Until the broker has it (it may be restarting)."""
        while True:
            try:
                await self.producer.send_and_wait(
                    self.settings.requests_topic, request.raw, key=request.id.encode(), partition=partition
                )
                break
            except KafkaError:
                await asyncio.sleep(1.0)
        request.sends += 1
        request.last_sent = time.monotonic()

    def _new(self, body: dict[str, Any] | bytes, expect: str) -> SentRequest:
        request_id = uuid.uuid4().hex
        if isinstance(body, dict):
            raw = orjson.dumps({"id": request_id, **body})
        else:
            raw = body.replace(b"@ID@", request_id.encode())
        request = SentRequest(request_id, raw, expect)
        self.sent[request_id] = request
        return request

    async def ask(self, body: dict[str, Any], partition: int | None = None, timeout_s: float = 60.0) -> dict[str, Any]:
        """One valid request, waiting for its reply (the warm-up and the final checks use this)."""
        request = self._new({"reply_to": self.reply_topic, **body}, "ok")
        waiter = asyncio.get_running_loop().create_future()
        self._waiters[request.id] = waiter
        await self._send(request, partition)
        return await asyncio.wait_for(waiter, timeout_s)

    async def warm_up(self, partitions: int) -> None:
        """One answered request on every requests partition, so every partition has a committed
        offset before any fault (the README's known Faust takeover stall)."""
        probe = {"op": "connections", "monitor": self.monitors[0], "cidr": "0.0.0.0/0", "cluster": True}
        await asyncio.gather(*(self.ask(probe, partition=p) for p in range(partitions)))
        await asyncio.sleep(2.0)  # past Faust's 1 s commit interval

    def _random(self) -> SentRequest:
        rng, reply_to = self.rng, self.reply_topic
        body: dict[str, Any] = {
            "reply_to": reply_to,
            "op": rng.choice(("connections", "receptions", "rejections")),
            "monitor": rng.choice(self.monitors),
            "ip": rng.choice(self.ips),
            "cidr": rng.choice(("/32", "/24", "/16", "/0")),
            "at": time.time(),
        }
        if rng.random() < 0.5:
            body["cluster"] = True
        else:
            body["node"] = rng.choice(self.nodes)
        r = rng.random()
        if r < 0.04:
            return self._new({**body, "monitor": "120,5"}, "unknown_monitor")
        if r < 0.08:
            return self._new({**body, "cidr": "10.0.0.1/33"}, "invalid_cidr")
        if r < 0.10:
            return self._new({**body, "startv": 2, "endv": 1}, "invalid_range")
        if r < 0.12:
            return self._new({**body, "op": "teleport"}, "unknown_op")
        if r < 0.14:
            return self._new(
                b'{"id": "@ID@", "reply_to": "' + reply_to.encode() + b'", "op": ', "deadletter:invalid_json"
            )
        if r < 0.16:
            return self._new({k: v for k, v in body.items() if k != "reply_to"}, "deadletter:missing_reply_to")
        if r < 0.18:
            internal = {**body, "reply_to": self.settings.state_topic}
            return self._new(internal, "deadletter:reply_to_internal_topic")
        if r < 0.5:
            body["op"] = "inbound_session_count"
            body.pop("monitor")
        return self._new(body, "ok")

    async def run(self, stop: asyncio.Event, rate: float) -> None:
        """Send at ``rate``/s until stopped; re-send what went unanswered for ``RETRY_AFTER_S``."""
        while not stop.is_set():
            await self._send(self._random())
            await self._retry_overdue()
            await asyncio.sleep(1.0 / rate)

    async def _retry_overdue(self) -> None:
        now = time.monotonic()
        for request in list(self.sent.values()):
            if (
                request.routable
                and not request.replies
                and request.sends < MAX_SENDS
                and now - request.last_sent > RETRY_AFTER_S
            ):
                await self._send(request)

    async def settle(self) -> None:
        """After the soak: keep re-sending until every routable request has a reply or used all
        its sends and waited ``RETRY_AFTER_S`` after the last one."""
        while any(r.routable and not r.replies and r.sends < MAX_SENDS for r in self.sent.values()) or any(
            r.routable and not r.replies and time.monotonic() - r.last_sent < RETRY_AFTER_S for r in self.sent.values()
        ):
            await self._retry_overdue()
            await asyncio.sleep(1.0)

    def wrong_replies(self) -> list[str]:
        """Replies that are not what their request asks for (shape, id, ok or error code)."""
        wrong = []
        for request in self.sent.values():
            for reply in request.replies:
                if not request.routable:
                    wrong.append(f"a reply to an unroutable request: {reply}")
                elif request.expect == "ok":
                    if reply.get("ok") is not True or type(reply.get("value")) is not int or reply["value"] < 0:
                        wrong.append(f"{request.raw!r} -> {reply}")
                elif reply.get("ok") is not False or reply.get("error", {}).get("code") != request.expect:
                    wrong.append(f"{request.raw!r} (want {request.expect}) -> {reply}")
        return wrong
