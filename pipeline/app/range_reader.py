"""Read a range of offsets of one partition directly, outside Faust's consumer.

Used where Faust's delivery cannot be trusted to be contiguous: offsets an ingest batch skipped
(a rebalance dropped them from Faust's buffers while later ones still arrived), and state records
a replica never saw (a gap in its chain).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

__all__ = ["RangeReader"]


class RangeReader:
    """``await read(topic, partition, start, stop)``: the committed records with ``start <= offset < stop``;
    ``await tail(topic, partition, count)``: those among the partition's last ``count`` offsets;
    ``await end_offsets(topic, partitions)``: the offset after each partition's last committed record
    (asked every few seconds, on one consumer kept until ``close``; reads are rare and get their own)."""

    def __init__(self, client_options: Callable[[], dict[str, Any]]) -> None:
        self._client_options = client_options
        self._offsets: AIOKafkaConsumer | None = None

    async def close(self) -> None:
        if self._offsets is not None:
            consumer, self._offsets = self._offsets, None
            await consumer.stop()

    async def read(self, topic: str, partition: int, start: int, stop: int) -> list[Any]:
        return await self._read(TopicPartition(topic, partition), lambda begin, end: (start, min(stop, end)))

    async def tail(self, topic: str, partition: int, count: int) -> tuple[list[Any], bool]:
        """The records, and whether they reach back to the partition's beginning."""
        reached: list[bool] = []

        def span(begin: int, end: int) -> tuple[int, int]:
            reached.append(end - count <= begin)
            return max(begin, end - count), end

        records = await self._read(TopicPartition(topic, partition), span)
        return records, reached[0]

    async def end_offsets(self, topic: str, partitions: list[int]) -> dict[int, int]:
        if self._offsets is None:
            self._offsets = await self._consumer()
        ends = await self._offsets.end_offsets([TopicPartition(topic, p) for p in partitions])
        return {tp.partition: end for tp, end in ends.items()}

    async def _consumer(self) -> AIOKafkaConsumer:
        consumer = AIOKafkaConsumer(
            **self._client_options(),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
        )
        await consumer.start()
        return consumer

    async def _read(self, tp: TopicPartition, span: Callable[[int, int], tuple[int, int]]) -> list[Any]:
        consumer = await self._consumer()
        try:
            consumer.assign([tp])
            begin = (await consumer.beginning_offsets([tp]))[tp]
            start, end = span(begin, (await consumer.end_offsets([tp]))[tp])
            start = max(start, begin)  # offsets the log no longer holds are not asked for
            consumer.seek(tp, start)
            out: list[Any] = []
            while await consumer.position(tp) < end:
                batches = await consumer.getmany(tp, timeout_ms=1000)
                out.extend(r for r in batches.get(tp, []) if start <= r.offset < end)
            return out
        finally:
            await consumer.stop()
