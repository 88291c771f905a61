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
    """``await read(topic, partition, start, stop)``: the records with ``start <= offset < stop``."""

    def __init__(self, client_options: Callable[[], dict[str, Any]]) -> None:
        self._client_options = client_options

    async def read(self, topic: str, partition: int, start: int, stop: int) -> list[Any]:
        consumer = AIOKafkaConsumer(
            **self._client_options(),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
        )
        tp = TopicPartition(topic, partition)
        await consumer.start()
        try:
            consumer.assign([tp])
            consumer.seek(tp, start)
            end = min(stop, (await consumer.end_offsets([tp]))[tp])
            out: list[Any] = []
            while await consumer.position(tp) < end:
                batches = await consumer.getmany(tp, timeout_ms=1000)
                out.extend(r for r in batches.get(tp, []) if start <= r.offset < stop)
            return out
        finally:
            await consumer.stop()
