"""The fleet table's store on its own (no broker): a gap in the state log is held, repaired by
re-reading the partition, and crossed only when the log no longer has the missing delta."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from pipeline.app.state_table import FleetStateManager
from pipeline.core.cidr import Block
from pipeline.core.delta import delta_from_decoded, encode_delta
from pipeline.core.events import DecodedBatch
from pipeline.core.replica import Replica
from pipeline.core.windows import Monitor

MONITOR = Monitor(60, 1)
NOW = 1_764_000_030.0
ALL_V4 = Block(4, 0, 0, 2**32 - 1)


def record(first: int, last: int, prev: int) -> bytes:
    """A delta for source messages ``first..last`` of events partition 0, one event of n=offset+1 each."""
    offsets = list(range(first, last + 1))
    decoded = DecodedBatch(
        node=["a"] * len(offsets),
        ts=[NOW] * len(offsets),
        family=[4] * len(offsets),
        addr=[1] * len(offsets),
        metric=[0] * len(offsets),
        n=[o + 1 for o in offsets],
    )
    ends = [(o, i + 1, 0) for i, o in enumerate(offsets)]
    return encode_delta(delta_from_decoded(decoded, 0, ends, prev))


class LogReader:
    """Serves the state partition's records as Kafka still holds them."""

    def __init__(self, log: dict[int, bytes]) -> None:
        self.log = log
        self.reads: list[tuple[int, int]] = []

    async def read(self, topic: str, partition: int, start: int, stop: int) -> list[Any]:
        self.reads.append((start, stop))
        return [SimpleNamespace(offset=o, value=v) for o, v in sorted(self.log.items()) if start <= o < stop]


async def manager_with(reader: LogReader) -> FleetStateManager:
    table = SimpleNamespace(
        name="fleet",
        loop=asyncio.get_running_loop(),
        changelog_topic=SimpleNamespace(get_topic_name=lambda: "state"),
    )
    manager = FleetStateManager(table)  # type: ignore[arg-type]
    manager.new_replica = lambda: Replica((MONITOR,))
    manager.clock = lambda: NOW
    manager.reader = reader  # type: ignore[assignment]
    return manager


def total(manager: FleetStateManager) -> int:
    return manager.replica.counts.count(MONITOR, 0, ALL_V4, 0, 0, NOW, NOW, None)


async def settle(manager: FleetStateManager) -> None:
    for _ in range(100):
        if not manager.held:
            return
        await asyncio.sleep(0.01)


async def test_a_missed_record_is_read_back_before_the_held_ones_are_applied() -> None:
    log = {0: record(0, 1, -1), 1: record(2, 3, 1), 2: record(4, 4, 3)}
    reader = LogReader(log)
    manager = await manager_with(reader)
    manager.apply_record(0, 0, log[0])
    manager.apply_record(0, 2, log[2])  # record 1 never arrived: a gap
    assert manager.held and total(manager) == 1 + 2
    manager.apply_record(0, 3, record(5, 5, 4))  # arrives while held: waits behind the gap
    await settle(manager)
    assert reader.reads == [(1, 2)]
    assert (manager.held, manager.health.gaps) == ({}, 1)
    assert total(manager) == sum(range(1, 7))  # every message exactly once
    assert manager.positions[0] == 3


async def test_a_gap_the_log_no_longer_holds_is_crossed_not_waited_on_forever() -> None:
    log = {0: record(0, 1, -1), 2: record(4, 4, 3)}  # record 1 deleted
    manager = await manager_with(LogReader(log))
    manager.apply_record(0, 0, log[0])
    manager.apply_record(0, 2, log[2])
    await settle(manager)
    assert manager.held == {}
    assert total(manager) == 1 + 2 + 5  # what the log still had, each once
    assert manager.replica.next_offset(0) == 5
