"""The query agent's requests, read back from Kafka where Faust skipped them.

Around a rebalance Faust drops records it already fetched (a partition not active yet, a
generation that changed under it) while the consumer's position has moved past them, so those
requests would never be answered. The ingest agent makes its batches contiguous for the same
reason (``Ingester._contiguous``); this does it for requests: per requests partition it keeps the
next offset it expects (from the group's committed offset after an assignment), and when a
request arrives past it, the skipped ones are read back and answered first. A partition the group
never committed is read from its beginning, as the worker's consumer does (``earliest``): a new
group's first rebalance, or a takeover from a worker that died before its first commit, dropped
requests that were then never answered (one in a CI run of the SIGSTOP test, before its SIGSTOP).
A request answered twice (the previous owner answered it but had not committed) is harmless:
clients match by id.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka.errors import KafkaError

from pipeline.app.range_reader import RangeReader

__all__ = ["RequestGaps"]

log = logging.getLogger("pipeline.queries")


class RequestGaps:
    """``await missed(partition, offset)``: the records before ``offset`` that were never delivered."""

    def __init__(self, reader: RangeReader, topic: str, committed: Callable[[int], Awaitable[int | None]]) -> None:
        self._reader = reader
        self._topic = topic
        self._committed = committed  # the group's committed offset of a partition (None: none yet)
        self._next: dict[int, int] = {}
        self.read_back = 0

    def forget(self, partitions: Sequence[int]) -> None:
        """Partitions revoked: start again from the committed offset if they come back."""
        for partition in partitions:
            self._next.pop(partition, None)

    async def next_expected(self, partition: int) -> int:
        """The offset of the next request of ``partition`` to answer (from the committed offset
        until one was delivered)."""
        if partition not in self._next:
            committed = await self._committed(partition) or 0
            self._next.setdefault(partition, committed)  # unless a request arrived meanwhile
        return self._next[partition]

    def handled(self, partition: int, offset: int) -> None:
        """A request read outside Faust's delivery (``stalls.py``) was answered."""
        self._next[partition] = max(offset + 1, self._next.get(partition, 0))

    def answered(self, partition: int, offset: int) -> bool:
        """Whether Faust delivers a request already answered since the partition was assigned
        (read directly while Faust held it back)."""
        return offset < self._next.get(partition, 0)

    async def missed(self, partition: int, offset: int) -> list[Any]:
        expected = self._next.get(partition)
        self._next[partition] = max(offset + 1, expected or 0)
        try:
            if expected is None:
                expected = await self._committed(partition) or 0  # none: from the beginning
            if offset <= expected:
                return []
            records = await self._reader.read(self._topic, partition, expected, offset)
        except KafkaError as exc:  # answering what did arrive comes first
            log.warning(
                "requests partition %d: cannot check for skipped requests before %d: %r", partition, offset, exc
            )
            return []
        if records:
            self.read_back += len(records)
            log.warning(
                "requests partition %d: offsets %d..%d were not delivered; read %d requests directly",
                partition,
                expected,
                offset - 1,
                len(records),
            )
        return records
