"""What an MTA links in to report its traffic: buffered, batched, ordered, with backpressure.

Events are encoded when published (so a bad event fails at the caller, not later in a batch),
buffered, and sent as SPEC batches (JSON arrays of at most 10,000 events and 1 MiB, key = node)
when ``batch_size`` events are waiting or the oldest has waited ``linger_s``. One sender sends
batches in order, so a node's ``session_open`` always precedes its ``session_close``. When the
broker is slow and ``max_pending`` events are waiting, ``publish`` blocks: the MTA slows down
instead of the publisher growing without bound. Transient Kafka errors are retried with
exponential backoff; delivery is at least once (a batch whose ack was lost may be sent twice).

When Kafka stops answering, the publisher drops its producer (whose own reconnect loop would try
ten times a second, logging each failure), says so in one WARNING, probes the bootstrap servers
with exponential backoff up to ``max_backoff_s``, and connects anew once one answers (a probe
never counts a socket connected to itself, see ``reachability``), with one more WARNING.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, KafkaTimeoutError

from pipeline.core.events import MAX_BATCH_EVENTS, MAX_MESSAGE_BYTES
from pipeline.errors import InboundAuditError
from pipeline.kafka.connection import client_options, connection_error
from pipeline.kafka.outage_log import OutageLog, install_log_gate
from pipeline.kafka.reachability import reachable, require_reachable
from pipeline.settings import Settings

__all__ = ["EventPublisher", "encode_batches", "DEFAULT_CLOSE_TIMEOUT_S"]

log = logging.getLogger(__name__)

DEFAULT_CLOSE_TIMEOUT_S = 30.0


def encode_batches(
    encoded: list[bytes], max_events: int = MAX_BATCH_EVENTS, max_bytes: int = MAX_MESSAGE_BYTES
) -> Iterator[bytes]:
    """JSON-array message values from already-encoded events, each within both SPEC limits."""
    chunk: list[bytes] = []
    size = 2  # the brackets
    for event in encoded:
        if chunk and (len(chunk) >= max_events or size + len(event) + 1 > max_bytes):
            yield b"[" + b",".join(chunk) + b"]"
            chunk, size = [], 2
        chunk.append(event)
        size += len(event) + 1
    if chunk:
        yield b"[" + b",".join(chunk) + b"]"


def _transient(exc: KafkaError) -> bool:
    return isinstance(exc, KafkaTimeoutError) or bool(getattr(exc, "retriable", False))


class EventPublisher:
    """One MTA node's event stream; ``async with EventPublisher(settings, "mta-1") as events:``."""

    def __init__(
        self,
        settings: Settings,
        node: str,
        *,
        bootstrap: str | None = None,
        batch_size: int = 1000,
        linger_s: float = 0.05,
        max_pending: int = 100_000,
        max_retries: int = 8,
        retry_backoff_s: float = 0.1,
        max_backoff_s: float = 10.0,
        request_timeout_s: float = 5.0,
        reset_on_start: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH_EVENTS:
            raise ValueError(f"batch_size must be 1..{MAX_BATCH_EVENTS}, got {batch_size}")
        if max_pending < batch_size:
            raise ValueError("max_pending must be at least batch_size")
        self.settings = settings
        self.node = node
        self.bootstrap = bootstrap or settings.bootstrap
        self.batch_size = batch_size
        self.linger_s = linger_s
        self.max_pending = max_pending
        self.max_retries = max_retries
        self.retry_backoff_s = retry_backoff_s
        self.max_backoff_s = max_backoff_s
        self.request_timeout_s = request_timeout_s
        self.reset_on_start = reset_on_start
        self.clock = clock
        self.sent_events = 0
        self.sent_messages = 0
        self.dropped_events = 0
        self._outage = OutageLog(log, f"publisher {node}", self.bootstrap)
        self._key = node.encode()
        self._buffer: list[bytes] = []
        self._pending = 0  # buffered + being sent
        self._flushing = 0
        self._failure: BaseException | None = None
        self._producer: AIOKafkaProducer | None = None
        self._sender: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()  # the buffer is not empty
        self._full = asyncio.Event()  # send now: a batch is full or a flush waits
        self._space = asyncio.Event()  # pending fell below max_pending
        self._idle = asyncio.Event()  # nothing pending
        self._idle.set()

    async def __aenter__(self) -> EventPublisher:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Connect, then announce the node's (re)start: SPEC says its open sessions are gone."""
        install_log_gate()
        await require_reachable(self.bootstrap)
        try:
            self._producer = await self._connect()
        except KafkaError as exc:
            raise await connection_error(self.settings, exc, self.bootstrap) from exc
        self._sender = asyncio.create_task(self._send_loop(), name=f"publisher-{self.node}")
        if self.reset_on_start:
            await self.publish({"ts": self.clock(), "ip": "0.0.0.0", "event": "node_reset"})
            await self.flush()

    async def _connect(self) -> AIOKafkaProducer:
        """A started producer. Not idempotent: an idempotent aiokafka producer retries a batch for as
        long as the broker is down, so neither a send nor ``stop()`` would ever return."""
        producer = AIOKafkaProducer(
            **client_options(self.settings, self.bootstrap),
            linger_ms=0,
            acks="all",
            request_timeout_ms=int(self.request_timeout_s * 1000),
            max_request_size=MAX_MESSAGE_BYTES + (64 << 10),
        )
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        return producer

    async def close(self, timeout_s: float | None = DEFAULT_CLOSE_TIMEOUT_S) -> None:
        """Deliver what was published, waiting at most ``timeout_s`` (None: as long as it takes), then
        disconnect. Events not delivered by then are dropped: counted in ``dropped_events``, with a WARNING."""
        try:
            if self._sender is not None and self._failure is None:
                try:
                    await asyncio.wait_for(self.flush(), timeout_s)
                except TimeoutError:
                    self.dropped_events = self._pending
                    log.warning(
                        "publisher %s: closed after %g s with %d events not delivered to %s",
                        self.node,
                        timeout_s,
                        self.dropped_events,
                        self.bootstrap,
                    )
        finally:
            if self._sender is not None:
                self._sender.cancel()
                await asyncio.gather(self._sender, return_exceptions=True)
                self._sender = None
            if self._producer is not None:
                await self._producer.stop()
                self._producer = None

    def _check(self) -> None:
        if self._failure is not None:
            raise InboundAuditError(f"publishing to {self.settings.events_topic} failed: {self._failure!r}")
        if self._sender is None:
            raise InboundAuditError("publisher is not started (use 'async with' or start())")

    async def publish(self, event: dict[str, Any]) -> None:
        """Buffer one SPEC event (``node`` defaults to this publisher's); blocks while the buffer is full."""
        self._check()
        # A copy: orjson's bytes keep its 4 KiB output buffer, 40 times what a buffered event needs.
        encoded = bytes(memoryview(orjson.dumps(event if "node" in event else {"node": self.node, **event})))
        if len(encoded) + 2 > MAX_MESSAGE_BYTES:
            raise ValueError(f"event of {len(encoded)} bytes cannot fit a {MAX_MESSAGE_BYTES}-byte message")
        while self._pending >= self.max_pending:
            self._space.clear()
            await self._space.wait()
            self._check()
        self._buffer.append(encoded)
        self._pending += 1
        self._idle.clear()
        self._wake.set()
        if len(self._buffer) >= self.batch_size:
            self._full.set()

    async def flush(self) -> None:
        """Return once every event published before the call is acknowledged by Kafka."""
        self._check()
        self._flushing += 1
        self._full.set()
        try:
            await self._idle.wait()
        finally:
            self._flushing -= 1
        self._check()

    async def _send_loop(self) -> None:
        assert self._producer is not None
        loop = asyncio.get_running_loop()
        try:
            while True:
                await self._wake.wait()
                deadline = loop.time() + self.linger_s
                while len(self._buffer) < self.batch_size and not self._flushing and loop.time() < deadline:
                    try:
                        await asyncio.wait_for(self._full.wait(), deadline - loop.time())
                    except TimeoutError:
                        break
                batch, self._buffer = self._buffer, []
                self._wake.clear()
                self._full.clear()
                for value in encode_batches(batch, self.batch_size):
                    await self._send(value)
                    self.sent_messages += 1
                self.sent_events += len(batch)
                self._pending -= len(batch)
                self._space.set()
                if not self._pending:
                    self._idle.set()
        except KafkaError as exc:
            self._failure = exc
            for event in (self._space, self._idle):
                event.set()

    async def _send(self, value: bytes) -> None:
        """Send one message until it is acknowledged: a broker that answers but fails gets
        ``max_retries`` retries with backoff; a broker that is gone is waited for (``_reconnect``)."""
        attempt = 0
        while True:
            assert self._producer is not None
            try:
                await self._producer.send_and_wait(self.settings.events_topic, value, key=self._key)
                self._outage.came_back()
                return
            except KafkaError as exc:
                if not _transient(exc):
                    raise
                failure = exc
            if not await reachable(self.bootstrap):
                self._outage.went_down(failure)
                await self._reconnect()
                attempt = 0
            elif attempt < self.max_retries:
                await asyncio.sleep(self._backoff(attempt))
                attempt += 1
            else:
                raise failure

    def _backoff(self, attempt: int) -> float:
        return min(self.retry_backoff_s * 2**attempt, self.max_backoff_s)

    async def _reconnect(self) -> None:
        """Drop the producer, probe with exponential backoff until Kafka answers, connect anew."""
        assert self._producer is not None
        await self._producer.stop()
        attempt = 0
        while True:
            await asyncio.sleep(self._backoff(attempt))
            attempt += 1
            if not await reachable(self.bootstrap):
                continue
            try:
                self._producer = await self._connect()
                return
            except KafkaError:
                continue

    def _windowed(self, event: str, ip: str, ts: float | None, n: int) -> dict[str, Any]:
        out: dict[str, Any] = {"ts": self.clock() if ts is None else ts, "ip": ip, "event": event}
        if n != 1:
            out["n"] = n
        return out

    def _session(self, event: str, ip: str, service: str, ts: float | None) -> dict[str, Any]:
        return {"ts": self.clock() if ts is None else ts, "ip": ip, "event": event, "service": service}

    async def connection(self, ip: str, ts: float | None = None, n: int = 1) -> None:
        """An inbound session was accepted from ``ip``."""
        await self.publish(self._windowed("connection", ip, ts, n))

    async def reception(self, ip: str, ts: float | None = None, n: int = 1) -> None:
        """A message from ``ip`` was accepted."""
        await self.publish(self._windowed("reception", ip, ts, n))

    async def rejection(self, ip: str, ts: float | None = None, n: int = 1) -> None:
        """A message from ``ip`` was refused."""
        await self.publish(self._windowed("rejection", ip, ts, n))

    async def session_open(self, ip: str, service: str = "SMTP", ts: float | None = None) -> None:
        """A session from ``ip`` to ``service`` is now open (feeds ``inbound_session_count``)."""
        await self.publish(self._session("session_open", ip, service, ts))

    async def session_close(self, ip: str, service: str = "SMTP", ts: float | None = None) -> None:
        """That session ended."""
        await self.publish(self._session("session_close", ip, service, ts))

    async def series_add(self, series: str, key: str, count: int = 1, ts: float | None = None) -> None:
        """Add ``count`` (negative subtracts) to ``key`` of the named series (SPEC section 8)."""
        event = {"ts": self.clock() if ts is None else ts, "event": "series_add", "series": series, "key": key}
        if count != 1:
            event["count"] = count
        await self.publish(event)

    async def series_remove(self, series: str, key: str, ts: float | None = None) -> None:
        """Remove, fleet-wide, every count of ``key`` in the series up to ``ts`` (default now)."""
        await self.publish(
            {"ts": self.clock() if ts is None else ts, "event": "series_remove", "series": series, "key": key}
        )
