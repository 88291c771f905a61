"""Window summaries on the windows topic exactly once per window and scope (SPEC section 6), whichever
worker publishes them.

The owner of events partition 0 publishes. All publishers of a group share one Kafka transactional
id, so a worker taking over fences the one before it (a dead one's open transaction is aborted, a
paused one can no longer commit), then reads back the last summary each monitor has on the topic
and resumes after it. Each tick's summaries go out in one transaction, keyed by monitor, so a
monitor's (or series') summaries stay in order on one partition. Readers use ``isolation_level=read_committed``.

A window is summarised once every events partition is counted up to ``window_grace_s`` after its
end (the publisher notes the partitions' end offsets each second and waits until the replica has
applied them), so a summary made during a takeover or a backlog has the window's whole count. It
waits at most ``MAX_COUNT_WAIT_S`` (a partition nobody ingests must not stop the summaries).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from pipeline.app.range_reader import RangeReader
from pipeline.core.replica import Replica
from pipeline.core.series import SeriesDef
from pipeline.core.series_summaries import SeriesSummaryClock
from pipeline.core.summaries import SummaryClock
from pipeline.settings import Settings

__all__ = ["SummaryPublisher", "last_summarised"]

log = logging.getLogger("pipeline.summaries")

#: The longest a due window waits for the events partitions to be counted (< TAKEOVER_HOLD_S).
MAX_COUNT_WAIT_S = 30.0

#: How many records to read back from the end of a windows partition at first (then 4x more, up to the max).
_TAIL_RECORDS = 1_000
_MAX_TAIL_RECORDS = 256_000


async def last_summarised(
    settings: Settings, reader: RangeReader, partitions: set[int], wanted: set[str]
) -> dict[str, int]:
    """The start of the last summarised window per monitor or series name in ``wanted``, from the
    committed end of the windows topic (read back at most ``_MAX_TAIL_RECORDS`` per partition: a
    name not found by then, say a series defined since, starts afresh)."""
    found: dict[str, int] = {}
    for partition in sorted(partitions):
        count = _TAIL_RECORDS
        while True:
            records, whole = await reader.tail(settings.windows_topic, partition, count)
            for record in records:
                summary = orjson.loads(record.value)
                name, start = summary.get("monitor", summary.get("series")), summary.get("window_start")
                if name in wanted and isinstance(start, int):
                    found[name] = max(start, found.get(name, start))
            if whole or wanted <= found.keys() or count >= _MAX_TAIL_RECORDS:
                break
            count *= 4
    return found


class SummaryPublisher:
    """``await tick(owner, counts, now_s)`` once a second on every worker; only the owner publishes."""

    def __init__(self, settings: Settings, client_options: Callable[[], dict[str, Any]], reader: RangeReader) -> None:
        self._settings = settings
        self._client_options = client_options
        self._reader = reader
        self.clock = SummaryClock(settings)
        self.series_clock = SeriesSummaryClock(settings)
        self._producer: AIOKafkaProducer | None = None
        self._offsets: AIOKafkaConsumer | None = None  # for the events partitions' end offsets
        self._events_partitions: list[TopicPartition] = []
        self._marks: deque[tuple[float, dict[int, int]]] = deque()  # (time, end offset per partition)
        self._failing = False
        self.published = 0

    async def tick(self, owner: bool, replica: Replica, series: list[SeriesDef], now_s: float) -> None:
        self.clock.expire(replica.counts, now_s)
        self.series_clock.expire(replica.series, now_s)
        if not owner:
            await self.stop()
            return
        try:
            if self._producer is None:
                await self._take_over(series, now_s)
            await self._publish_due(replica, series, now_s)
        except KafkaError as exc:
            if not self._failing:  # one line per outage, not one per second
                log.warning("window summaries not published, retrying every second: %s", exc)
            self._failing = True
            await self.stop()
        else:
            if self._failing:
                log.info("window summaries published again")
            self._failing = False

    async def _publish_due(self, replica: Replica, series: list[SeriesDef], now_s: float) -> None:
        counted_s = await self._counted_until(replica, now_s)
        due, upto = self.clock.due(replica.counts, now_s, counted_s)
        series_due, series_upto = self.series_clock.due(replica.series, series, now_s, counted_s)
        due += series_due
        if due:
            assert self._producer is not None
            async with self._producer.transaction():
                for monitor, value in due:
                    await self._producer.send(self._settings.windows_topic, value, key=monitor.encode())
            self.published += len(due)
        self.clock.advance(upto)
        self.series_clock.advance(series_upto)

    async def _counted_until(self, replica: Replica, now_s: float) -> float:
        """The latest time before which every event that reached Kafka is counted in ``replica``."""
        assert self._offsets is not None
        ends = await self._offsets.end_offsets(self._events_partitions)
        self._marks.append((now_s, {tp.partition: end for tp, end in ends.items()}))
        counted = now_s - MAX_COUNT_WAIT_S
        while self._marks and all(replica.last_applied(p) >= end - 1 for p, end in self._marks[0][1].items()):
            counted = max(counted, self._marks.popleft()[0])
        while self._marks and self._marks[0][0] < now_s - MAX_COUNT_WAIT_S:
            self._marks.popleft()
        return counted

    async def _take_over(self, series: list[SeriesDef], now_s: float) -> None:
        producer = AIOKafkaProducer(
            **self._client_options(),
            transactional_id=f"{self._settings.group_id}.summaries",
            enable_idempotence=True,
            acks="all",
        )
        offsets = AIOKafkaConsumer(**self._client_options(), enable_auto_commit=False)
        try:
            await producer.start()  # fences the previous publisher
            await offsets.start()
            partitions = await producer.partitions_for(self._settings.windows_topic)
            wanted = {m.name for m in self._settings.monitors} | {d.name for d in series}
            last = await last_summarised(self._settings, self._reader, partitions, wanted)
            events = await producer.partitions_for(self._settings.events_topic)
        except BaseException:
            await producer.stop()
            await offsets.stop()
            raise
        self._producer, self._offsets = producer, offsets
        self._events_partitions = [TopicPartition(self._settings.events_topic, p) for p in sorted(events)]
        for line in self.clock.resume(last, now_s):
            log.warning("%s", line)
        self.series_clock.resume(last)
        log.info("publishing window summaries, resuming after %s", last or "nothing (none published yet)")

    async def stop(self) -> None:
        """Stop publishing (no longer the owner, a failure, or the worker stops)."""
        self.clock.pause()
        self.series_clock.pause()
        self._marks.clear()
        producer, offsets, self._producer, self._offsets = self._producer, self._offsets, None, None
        if producer is not None:
            await producer.stop()
        if offsets is not None:
            await offsets.stop()
