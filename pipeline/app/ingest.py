"""The ingest step: a batch of event messages of one partition becomes ONE delta operation.

The owner of events partition p decodes the messages it has not written yet (its cursor starts
right after the last source offset the replica applied), writes their delta to state partition p
and their rejections to the dead-letter topic. It never applies the delta itself: every worker,
this one included, applies it when it comes back from the changelog, so every replica applies the
same records in the same order. The broker's append time of each message (the events topic uses
LogAppendTime) is the clock for too_late / future_timestamp, so re-processing a message after a
crash decides exactly as before.

A delta claims that its messages continue the partition from ``prev_offset`` with nothing left
out, so the batch must be contiguous. Faust's delivery is not always (a rebalance can drop
buffered messages while later ones still arrive): offsets missing between the cursor and a
message are read directly from Kafka before the batch is decoded (``RangeReader``); what Kafka
does not return there (transaction markers, deleted records) is truly not a message.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple

import orjson

from pipeline.app.range_reader import RangeReader
from pipeline.core.decoding import BatchDecoder
from pipeline.core.delta import CHAIN_START, encode_delta
from pipeline.core.events import SeriesLookup, dead_letter_record
from pipeline.core.replica import Replica
from pipeline.settings import Settings

__all__ = ["Ingester", "SourceMessage"]

log = logging.getLogger(__name__)

#: topic, key, value, partition -> a future that resolves when the broker has the record.
Send = Callable[[str, bytes | None, bytes, int | None], Awaitable[Awaitable[Any]]]


class SourceMessage(NamedTuple):
    """What ingest needs of one consumed events message."""

    partition: int
    offset: int
    timestamp_ms: int
    value: bytes | None


class Ingester:
    """Turns batches of source messages into delta operations and dead letters."""

    def __init__(
        self,
        settings: Settings,
        replica: Callable[[], Replica],
        send: Send,
        reader: RangeReader,
        series: SeriesLookup | None = None,
    ) -> None:
        """``series`` finds a series' definition among those this worker has read (series events
        of any other name are dead-lettered ``unknown_series``)."""
        self.settings = settings
        self._replica = replica
        self._send = send
        self._reader = reader
        self.decoder = BatchDecoder(settings.monitors, settings.max_future_s, settings.decoder, series)
        self._cursor: dict[int, int] = {}  # events partition -> last source offset written
        #: One writer per partition: the agent, or a direct read of a stalled partition (``stalls.py``).
        self._locks: dict[int, asyncio.Lock] = {}
        self.stats = Counter[str]()
        self.dead_letter_reasons = Counter[str]()  # for the metrics: dead letters by reason
        self._pending: set[asyncio.Future[Any]] = set()
        #: Set when a write failed for good: the worker must stop rather than lose a delta.
        self.failure: BaseException | None = None

    def forget(self, partitions: Sequence[int]) -> None:
        """Partitions revoked: resume them from the replica if they come back."""
        for partition in partitions:
            self._cursor.pop(partition, None)

    def last_written(self, partition: int) -> int:
        """The last source offset of ``partition`` this worker wrote a delta for (before its first
        batch: the last one the replica applied); what the consumer lag is measured against."""
        return self._cursor.get(partition, self._replica().last_applied(partition))

    async def ingest(self, messages: Sequence[SourceMessage]) -> None:
        """Deltas (about ``batch_max_events`` events each) for ``messages``, per partition."""
        by_partition: dict[int, list[SourceMessage]] = {}
        for message in messages:
            by_partition.setdefault(message.partition, []).append(message)
        for partition, batch in by_partition.items():
            async with self._locks.setdefault(partition, asyncio.Lock()):
                await self._ingest_partition(partition, batch)

    async def _ingest_partition(self, partition: int, messages: list[SourceMessage]) -> None:
        cursor = self._cursor.get(partition)
        if cursor is None:
            cursor = self._replica().last_applied(partition)
            log.info(
                "events partition %d: resuming after offset %d (delivered from %d)",
                partition,
                cursor,
                messages[0].offset,
            )
        # Strictly increasing offsets only: Faust re-delivers after a rewind (a rejoin seeks back
        # to the committed offset), possibly within one batch.
        fresh, last = [], cursor
        for message in messages:
            if message.offset > last:
                fresh.append(message)
                last = message.offset
        self.stats["redelivered"] += len(messages) - len(fresh)
        if not fresh:
            return
        fresh = await self._contiguous(partition, cursor, fresh)
        for chunk in self._chunks(fresh):
            await self._write(partition, cursor, chunk)
            cursor = chunk[-1].offset
            self._cursor[partition] = cursor
            await asyncio.sleep(0)  # queries may run between deltas

    async def _contiguous(self, partition: int, cursor: int, messages: list[SourceMessage]) -> list[SourceMessage]:
        """``messages`` with every offset Faust skipped since ``cursor`` read back from Kafka."""
        out: list[SourceMessage] = []
        expected = 0 if cursor == CHAIN_START else cursor + 1
        for message in messages:
            if message.offset > expected:
                topic = self.settings.events_topic
                records = await self._reader.read(topic, partition, expected, message.offset)
                if records:
                    self.stats["refetched"] += len(records)
                    log.warning(
                        "events partition %d: offsets %d..%d were not delivered; read %d messages directly",
                        partition,
                        expected,
                        message.offset - 1,
                        len(records),
                    )
                out += [SourceMessage(partition, r.offset, r.timestamp, r.value) for r in records]
            out.append(message)
            expected = message.offset + 1
        return out

    def _chunks(self, messages: list[SourceMessage]) -> list[list[SourceMessage]]:
        """Groups of whole messages of about ``batch_max_events`` events each (counted cheaply)."""
        chunks: list[list[SourceMessage]] = [[]]
        events = 0
        for message in messages:
            size = message.value.count(b'"event"') if message.value else 0
            if chunks[-1] and events + size > self.settings.batch_max_events:
                chunks.append([])
                events = 0
            chunks[-1].append(message)
            events += size
        return chunks

    async def _write(self, partition: int, prev: int, messages: list[SourceMessage]) -> None:
        """Dead letters, then the delta; Faust flushes the producer before committing offsets."""
        decode = functools.partial(
            self.decoder.decode,
            partition,
            prev,
            [m.value for m in messages],
            [m.offset for m in messages],
            [m.timestamp_ms for m in messages],
        )
        # The native decoder releases the GIL: on another core it overlaps the event loop's work
        # (applying the state log, Faust's I/O, queries) instead of blocking it.
        delta, rejected = await asyncio.to_thread(decode) if self.decoder.name == "native" else decode()
        topic, deadletter_topic = self.settings.events_topic, self.settings.deadletter_topic
        for offset, rejection in rejected:
            self.dead_letter_reasons[rejection.reason] += 1
            letter = orjson.dumps(dead_letter_record(rejection, topic, partition, offset))
            self._track(await self._send(deadletter_topic, None, letter, None))
        self._track(await self._send(self.settings.state_topic, None, encode_delta(delta), partition))
        self.stats["events"] += delta.event_count + len(delta.sessions) + len(delta.series)
        self.stats["dead_letters"] += len(rejected)
        self.stats["deltas"] += 1

    def _track(self, future: Awaitable[Any]) -> None:
        """Keep the send's future so a failed write stops the worker instead of losing a delta."""
        fut = asyncio.ensure_future(future)
        self._pending.add(fut)
        fut.add_done_callback(self._sent)

    def _sent(self, fut: asyncio.Future[Any]) -> None:
        self._pending.discard(fut)
        if not fut.cancelled() and fut.exception() is not None:
            self.stats["send_failures"] += 1
            self.failure = self.failure or fut.exception()
