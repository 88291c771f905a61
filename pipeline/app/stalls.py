"""Partitions whose records Faust stopped handing over, read directly instead: the owned events and
requests partitions (to their agent) and every partition of the state topic (to the replica).

After a takeover of a partition that never had an offset committed, Faust fetched and dropped its
records and never delivered them (requests unanswered in 3 of 3 runs of
``test_sigkill_before_any_request_was_committed``): the cause, a seek to the committed offset that
skips such partitions, is fixed in ``transport.py``. This guard stays as the net under any such
stall of Faust's delivery: every ``STALL_CHECK_S`` a ``StallGuard`` asks the broker for the end
offset of each partition this worker owns (none while the group rebalances) and compares it
with what the agent has done; a partition that is behind and has not moved for ``STALL_S`` is
read directly (``RangeReader``) and handed to the same code the agent runs,
``REPAIR_MAX_MESSAGES`` at a time, with one WARNING line per stall. (With the cause still in, it
answered those requests 17 s after they were sent instead of never.) A false alarm (a partition
merely slow) costs one direct read: deltas are idempotent per source offset, and a request
already answered is not answered again.

The state topic is guarded too: a replica that stops getting its last delta finds no gap (no later
delta shows one missing) and would answer short for good. In one CI rehearsal one of two workers
applied 24 of 25 deltas and answered short for the test's whole 120 s.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from aiokafka.errors import KafkaError

from pipeline.app.range_reader import RangeReader

__all__ = ["REPAIR_MAX_MESSAGES", "STALL_CHECK_S", "STALL_S", "StallClock", "StallGuard"]

log = logging.getLogger("pipeline.worker")

#: How often the owned partitions' end offsets are asked for.
STALL_CHECK_S = 2.0
#: Behind and unmoved this long: Faust is taken not to deliver the partition. Longer than a
#: rebalance's pause (a few seconds), shorter than a client's default timeout (20 s).
STALL_S = 8.0
#: Messages read directly per partition and check.
REPAIR_MAX_MESSAGES = 1_000
#: A direct read that takes longer is given up until the next check (the broker is away).
_READ_TIMEOUT_S = 30.0


class StallClock:
    """Since when each partition has been behind without moving (no Kafka, no Faust)."""

    def __init__(self, stall_s: float = STALL_S) -> None:
        self.stall_s = stall_s
        self._since: dict[int, tuple[int, float]] = {}  # partition -> (last done offset, since)
        self._warned: set[int] = set()
        self._no_messages: dict[int, int] = {}  # partition -> offsets up to here hold none

    def stalled(self, done: dict[int, int], ends: dict[int, int], now_s: float) -> list[int]:
        """Partitions of ``done`` (the last offset handled) whose end (the offset after the last
        record) is past it, with ``done`` unchanged for ``stall_s``; the others start afresh."""
        out = []
        for partition in sorted(done):
            last, end = max(done[partition], self._no_messages.get(partition, -1)), ends.get(partition)
            seen = self._since.get(partition)
            if end is None or end - 1 <= last:
                self._since.pop(partition, None)
                self._warned.discard(partition)
            elif seen is None or seen[0] != last:
                self._since[partition] = (last, now_s)
            elif now_s - seen[1] >= self.stall_s:
                out.append(partition)
        for partition in set(self._since) - set(done):  # no longer owned
            del self._since[partition]
            self._warned.discard(partition)
            self._no_messages.pop(partition, None)
        return out

    def read_up_to(self, partition: int, last: int) -> None:
        """The guard itself handled ``partition`` up to ``last``: that is no sign of Faust
        delivering again, so the partition stays stalled (read again at the next check)."""
        seen = self._since.get(partition)
        if seen is not None:
            self._since[partition] = (last, seen[1])

    def no_messages(self, partition: int, until: int) -> None:
        """A direct read found no message up to ``until`` (transaction markers, deleted
        records): nothing there is behind."""
        self._no_messages[partition] = until

    def first_warning(self, partition: int) -> bool:
        """Whether this stall of ``partition`` has not been reported yet."""
        if partition in self._warned:
            return False
        self._warned.add(partition)
        return True


#: The last offset handled of each of the given partitions.
Done = Callable[[list[int]], Awaitable[dict[int, int]]]
#: Handles records of one partition read directly, as the agent would.
Handle = Callable[[int, list[Any]], Awaitable[None]]


class StallGuard:
    """``await check(owned, now_s)`` for one agent's topic: reads and hands over what is stalled."""

    def __init__(
        self,
        reader: RangeReader,
        topic: str,
        source: str,
        done: Done,
        handle: Handle,
        *,
        everywhere: int = 0,
        stall_s: float = STALL_S,
        max_messages: int = REPAIR_MAX_MESSAGES,
    ) -> None:
        """``source`` names the topic's role in metrics (``events``, ``requests``, ``state``);
        ``everywhere`` is the topic's partition count when every worker reads all of it (a global
        table's changelog), 0 when a worker reads only the partitions it owns."""
        self._reader = reader
        self.source = source
        self.everywhere = everywhere
        self._max_messages = max_messages
        self.topic = topic
        self._done = done
        self._handle = handle
        self.clock = StallClock(stall_s)
        self.read_directly = 0

    def watched(self, assigned: Collection[Any]) -> list[int]:
        """The partitions to check, given this worker's assignment (empty while it rebalances)."""
        if self.everywhere:
            return list(range(self.everywhere)) if assigned else []
        return sorted(tp.partition for tp in assigned if tp.topic == self.topic)

    async def check(self, owned: list[int], now_s: float) -> None:
        try:
            await self._check(owned, now_s)
        except (KafkaError, OSError, TimeoutError) as exc:  # the watchdog reports an outage
            log.debug("%s: stall check skipped: %r", self.topic, exc)

    async def _check(self, owned: list[int], now_s: float) -> None:
        done = await self._done(owned) if owned else {}
        ends = await asyncio.wait_for(self._reader.end_offsets(self.topic, owned), _READ_TIMEOUT_S) if owned else {}
        for partition in self.clock.stalled(done, ends, now_s):
            start = done[partition] + 1
            if self.clock.first_warning(partition):
                log.warning(
                    "%s partition %d: nothing delivered past offset %d for %.0f s while the log ends at %d; "
                    "reading it directly",
                    self.topic,
                    partition,
                    done[partition],
                    self.clock.stall_s,
                    ends[partition] - 1,
                )
            stop = min(ends[partition], start + self._max_messages)
            records = await asyncio.wait_for(self._reader.read(self.topic, partition, start, stop), _READ_TIMEOUT_S)
            self.read_directly += len(records)
            if records:
                await self._handle(partition, records)
                self.clock.read_up_to(partition, records[-1].offset)
            else:
                self.clock.no_messages(partition, stop - 1)
