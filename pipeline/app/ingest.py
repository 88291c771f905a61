"""The ingest step: a batch of event messages of one partition becomes ONE delta operation.

The owner of events partition p decodes the messages it has not seen (the per-partition cursor
starts right after the last source offset the replica applied), writes their delta to state
partition p and their rejections to the dead-letter topic. It never applies the delta itself:
every worker, this one included, applies it when it comes back from the changelog, so every
replica applies the same records in the same order. The broker's append time of each message
(the events topic uses LogAppendTime) is the clock for too_late / future_timestamp, so
re-processing a message after a crash decides exactly as before and writes the same delta.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple

import orjson

from pipeline.core.delta import Delta, delta_from_decoded, encode_delta
from pipeline.core.events import DecodedBatch, EventDecoder, dead_letter_record
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
    timestamp_s: float
    value: bytes


class Ingester:
    """Turns batches of source messages into delta operations and dead letters."""

    def __init__(self, settings: Settings, replica: Callable[[], Replica], send: Send) -> None:
        self.settings = settings
        self._replica = replica
        self._send = send
        self._decoder = EventDecoder(max_future_s=settings.max_future_s)
        self._cursor: dict[int, int] = {}  # events partition -> last source offset written
        self.stats = Counter[str]()
        self.pending: set[Awaitable[Any]] = set()
        #: Set when a write failed for good: the worker must stop rather than lose a delta.
        self.failure: BaseException | None = None

    def forget(self, partitions: Sequence[int]) -> None:
        """Partitions revoked: resume them from the replica if they come back."""
        for partition in partitions:
            self._cursor.pop(partition, None)

    async def ingest(self, messages: Sequence[SourceMessage]) -> None:
        """One delta per partition (capped at ``batch_max_events``) for ``messages``."""
        by_partition: dict[int, list[SourceMessage]] = {}
        for message in messages:
            by_partition.setdefault(message.partition, []).append(message)
        for partition, batch in by_partition.items():
            await self._ingest_partition(partition, batch)

    async def _ingest_partition(self, partition: int, messages: list[SourceMessage]) -> None:
        cursor = self._cursor.get(partition)
        if cursor is None:
            cursor = self._replica().last_applied(partition)
            log.info(
                "events partition %d: first message at offset %d, state applied up to %d",
                partition,
                messages[0].offset,
                cursor,
            )
        decoded, dead, ends = DecodedBatch(), [], []
        prev = cursor
        for message in messages:
            if message.offset <= cursor:
                self.stats["redelivered"] += 1
                continue
            oldest = min(m.oldest_kept_start(message.timestamp_s) for m in self.settings.monitors)
            before = len(decoded.rejected)
            self._decoder.decode(message.value, now_s=message.timestamp_s, oldest_kept_s=oldest, into=decoded)
            for rejection in decoded.rejected[before:]:
                letter = dead_letter_record(rejection, self.settings.events_topic, partition, message.offset)
                dead.append(orjson.dumps(letter))
            ends.append((message.offset, len(decoded.node), len(decoded.sessions)))
            cursor = message.offset
            if len(decoded.node) + len(decoded.sessions) >= self.settings.batch_max_events:
                await self._write(delta_from_decoded(decoded, partition, ends, prev), dead)
                decoded, dead, ends, prev = DecodedBatch(), [], [], cursor
            await asyncio.sleep(0)  # queries may run between messages
        if ends:
            await self._write(delta_from_decoded(decoded, partition, ends, prev), dead)
        self._cursor[partition] = cursor

    async def _write(self, delta: Delta, dead: list[bytes]) -> None:
        """Dead letters and the delta are queued in this order; Faust flushes before committing."""
        for letter in dead:
            self._track(await self._send(self.settings.deadletter_topic, None, letter, None))
        self._track(await self._send(self.settings.state_topic, b"delta", encode_delta(delta), delta.partition))
        self.stats["events"] += delta.event_count + len(delta.sessions)
        self.stats["dead_letters"] += len(dead)
        self.stats["deltas"] += 1

    def _track(self, future: Awaitable[Any]) -> None:
        """Keep the send's future so a failed write stops the worker instead of losing a delta."""
        fut = asyncio.ensure_future(future)
        self.pending.add(fut)
        fut.add_done_callback(self._sent)

    def _sent(self, fut: asyncio.Future[Any]) -> None:
        self.pending.discard(fut)
        if not fut.cancelled() and fut.exception() is not None:
            self.stats["send_failures"] += 1
            self.failure = self.failure or fut.exception()
