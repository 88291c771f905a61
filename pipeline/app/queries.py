"""The query step: one audit request in, exactly one reply out on its ``reply_to`` (or a dead letter).

Answers come from this worker's replica of the whole fleet, so any worker answers any request.
Replies go out in the background on a zero-linger producer: a slow or missing reply topic must
not hold up the requests behind it. A request whose ``reply_to`` names one of inbound-audit's own
topics is dead-lettered (``reply_to_internal_topic``): nothing a request says makes a worker
write into them.

A ``series_define`` of a new series is answered only after its record was written to the series
topic and read back: the catalog then says which definition came first in the log, so two
workers defining one name differently at the same moment answer ``ok`` and ``series_conflict``,
never ``ok`` twice. (Over HTTP only known definitions are confirmed; nothing is written.)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from prometheus_client import Histogram

from pipeline.core.events import Rejection, dead_letter_record
from pipeline.core.query import Unroutable, answer, parse_request, read_envelope, reply_error, reply_value
from pipeline.core.replica import Replica
from pipeline.core.series import SeriesCatalog, SeriesDef
from pipeline.core.series_query import (
    SERIES_DEFINE,
    SeriesCountRequest,
    SeriesDefineRequest,
    answer_series_count,
    conflict,
)
from pipeline.errors import AuditError
from pipeline.kafka.retry import patient_bootstrap
from pipeline.settings import Settings

__all__ = ["Responder"]

#: Tries to deliver one reply before it is dead-lettered ``undeliverable_reply``.
REPLY_ATTEMPTS = 4
#: Tries to write one request's dead letter (backing off up to 5 s: about a minute in all).
DEAD_LETTER_ATTEMPTS = 10

log = logging.getLogger(__name__)

#: Writes a definition and returns the one that counts once it was read back.
Publish = Callable[[AIOKafkaProducer, SeriesDef], Awaitable[SeriesDef]]

#: Answers take microseconds (two binary searches per window) up to milliseconds (wide ranges).
LATENCY_BUCKETS_S = (1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 0.1, 1.0)


class Responder:
    """Answers requests from the replica; owns the reply producer."""

    def __init__(
        self,
        settings: Settings,
        replica: Callable[[], Replica],
        clock: Callable[[], float],
        catalog: Callable[[], SeriesCatalog],
        publish: Publish,
    ) -> None:
        self.settings = settings
        self._replica = replica
        self._clock = clock
        self._catalog = catalog
        self._publish = publish
        self._internal = {
            settings.events_topic,
            settings.requests_topic,
            settings.state_topic,
            settings.deadletter_topic,
            settings.windows_topic,
            settings.series_topic,
        }
        self.producer: AIOKafkaProducer | None = None
        self._replies: set[asyncio.Task[None]] = set()
        self.stats = Counter[str]()
        self.dead_letter_reasons = Counter[str]()
        #: Time to validate and answer one request (bus or HTTP); registered by ``web.py``.
        self.latency = Histogram(
            "inbound_audit_query_latency_seconds",
            "Time to validate and answer one audit request.",
            registry=None,
            buckets=LATENCY_BUCKETS_S,
        )

    async def start(self, client_options: dict[str, Any]) -> None:
        # No linger: a reply is one record someone is waiting for. A short metadata wait so a
        # reply topic that does not exist fails fast (and is dead-lettered).
        self.producer = AIOKafkaProducer(**client_options, linger_ms=0, acks=1, request_timeout_ms=5000)
        patient_bootstrap(self.producer.client, self.settings.kafka_timeout_s)
        await self.producer.start()

    async def stop(self) -> None:
        if self._replies:
            await asyncio.wait(self._replies, timeout=2.0)
        if self.producer is not None:
            await self.producer.stop()

    def handle(self, partition: int, offset: int, raw: bytes | None) -> None:
        """Answer one request; the reply (or dead letter) is sent in the background: a slow reply
        topic must not hold up the requests behind it, nor, through Faust's shared consumer, the
        events (awaiting each dead letter here was tried: the worker fuzz's ingest then crawled).
        ``stop`` lets what is still being sent finish."""
        try:
            obj, reply_to = read_envelope(raw)
            if reply_to in self._internal:
                raise Unroutable(
                    "reply_to_internal_topic", f"reply_to {reply_to!r} is one of inbound-audit's own topics"
                )
        except Unroutable as exc:
            self.stats["unroutable"] += 1
            self._background(self._dead_letter(Rejection(exc.reason, exc.detail, raw or b""), partition, offset))
            return
        request_id = obj.get("id")
        key = request_id.encode() if isinstance(request_id, str) else None
        if obj.get("op") == SERIES_DEFINE:
            self._background(self._define(obj, reply_to, key, partition, offset, raw or b""))
            return
        try:
            value = reply_value(request_id, self.evaluate(obj))
        except AuditError as exc:
            value = reply_error(request_id, exc)
        self._background(self._reply(reply_to, key, value, partition, offset, raw or b""))

    def evaluate(self, obj: dict[str, Any]) -> int:
        """The value a routable request asks for (raises ``AuditError``); the bus and HTTP share it,
        so both give the same answers and are counted and timed alike."""
        started = time.perf_counter()
        op = obj.get("op")
        try:
            request = parse_request(obj, self.settings.monitors, self._catalog(), self.settings.longest_span_s)
            replica = self._replica()
            if isinstance(request, SeriesDefineRequest):
                if request.new:
                    raise AuditError("invalid_request", "a new series is defined on the request topic only")
                value = 1
            elif isinstance(request, SeriesCountRequest):
                value = answer_series_count(request, replica.series, self._clock())
            else:
                value = answer(request, replica.counts, replica.gauge, self._clock())
        except AuditError as exc:
            self.stats[f"{op}:{exc.code}" if isinstance(op, str) else exc.code] += 1
            raise
        finally:
            self.stats["requests"] += 1
            self.latency.observe(time.perf_counter() - started)
        self.stats[f"{request.op}:ok"] += 1
        return value

    async def _define(
        self, obj: dict[str, Any], reply_to: str, key: bytes | None, partition: int, offset: int, raw: bytes
    ) -> None:
        """A series_define: written and read back first when new, then answered."""
        request_id = obj.get("id")
        try:
            request = parse_request(obj, self.settings.monitors, self._catalog(), self.settings.longest_span_s)
            assert isinstance(request, SeriesDefineRequest)
            if request.new:
                assert self.producer is not None
                winner = await self._publish(self.producer, request.definition)
                if winner != request.definition:
                    raise conflict(request.definition, winner)
            value = reply_value(request_id, 1)
            self.stats[f"{SERIES_DEFINE}:ok"] += 1
        except AuditError as exc:
            value = reply_error(request_id, exc)
            self.stats[f"{SERIES_DEFINE}:{exc.code}"] += 1
        except (KafkaError, TimeoutError) as exc:
            log.error(
                "series_define %r not answered: the definition could not be written and read back (%r)", request_id, exc
            )
            return
        finally:
            self.stats["requests"] += 1
        await self._reply(reply_to, key, value, partition, offset, raw)

    def _background(self, coro: Any) -> asyncio.Future[None]:
        task = asyncio.ensure_future(coro)
        self._replies.add(task)
        task.add_done_callback(self._replies.discard)
        return task

    async def _reply(
        self, reply_to: str, key: bytes | None, value: bytes, partition: int, offset: int, raw: bytes
    ) -> None:
        assert self.producer is not None
        for attempt in range(REPLY_ATTEMPTS):
            try:
                await self.producer.send_and_wait(reply_to, value, key=key)
                return
            except KafkaError as exc:
                failure = exc
                # A topic that does not exist will not appear by waiting; anything else (a broker
                # restart, this process paused past its timeouts) is worth another try.
                if not await self._topic_exists(reply_to):
                    break
                await asyncio.sleep(0.5 * 2**attempt)
        detail = f"cannot deliver the reply to {reply_to!r}: {failure!r}"
        await self._dead_letter(Rejection("undeliverable_reply", detail, raw), partition, offset)

    async def _topic_exists(self, topic: str) -> bool:
        assert self.producer is not None
        try:
            metadata = await self.producer.client.fetch_all_metadata()
        except KafkaError:
            return True  # cannot tell: assume it does and try again
        return topic in metadata.topics()

    def _dead_letter(self, rejection: Rejection, partition: int, offset: int) -> Coroutine[Any, Any, None]:
        """Counted at once, so the metrics agree with the request counters whenever they are read;
        the returned coroutine writes the letter."""
        self.stats["dead_letters"] += 1
        self.dead_letter_reasons[rejection.reason] += 1
        letter = dead_letter_record(rejection, self.settings.requests_topic, partition, offset)
        return self._write_dead_letter(letter, partition, offset)

    async def _write_dead_letter(self, letter: dict[str, Any], partition: int, offset: int) -> None:
        assert self.producer is not None
        for attempt in range(DEAD_LETTER_ATTEMPTS):
            try:
                await self.producer.send_and_wait(self.settings.deadletter_topic, orjson.dumps(letter))
                return
            except KafkaError as exc:
                failure = exc
                await asyncio.sleep(min(0.5 * 2**attempt, 5.0))  # a broker restart takes ~30 s here
        log.error("cannot dead-letter request %d@%d: %r", partition, offset, failure)
