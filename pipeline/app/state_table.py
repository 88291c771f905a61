"""The fleet's counts as a Faust global table whose changelog is an operation log of deltas.

Faust's ``SetTable`` logs *operations* (add, discard) through ``ChangeloggedObject`` /
``ChangeloggedObjectManager`` instead of a key's new value; this table does the same with one
operation, "apply this delta", so one changelog record carries a whole batch of events however
many addresses it touches. As a global table (with every changelog partition a standby on every
worker) each worker replays every partition and holds the whole fleet's counts — per node (local)
and for the fleet (cluster) — and the session gauge, and answers any query from memory.

Faust delivers changelog records more than once (recoveries re-read, at-least-once writers
re-process), so the store never trusts it: each delta is judged by ``Replica`` against the source
offsets already applied (duplicate, overlap cut, or gap). A gap is never skipped silently: later
deltas of that partition are held, the changelog partition is re-read from the last good record
by a plain consumer, and only if the log no longer holds the missing delta is the gap crossed,
with an ERROR line.

The store's "persisted offset" of a changelog partition is the last record it applied; a local
snapshot (``pipeline.core.snapshot``) restores it, so recovery after a restart replays only the tail.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from aiokafka.errors import KafkaError
from faust.tables.objects import ChangeloggedObject, ChangeloggedObjectManager
from faust.tables.table import Table
from faust.types import TP, EventT
from faust.types.tables import GlobalTableT
from yarl import URL

from pipeline.app.range_reader import RangeReader
from pipeline.core.delta import Delta, decode_delta
from pipeline.core.replica import Replica

__all__ = ["FLEET_KEY", "FleetState", "FleetStateManager", "FleetStateTable", "Health"]

log = logging.getLogger(__name__)

#: The one object of the table: the whole fleet's state.
FLEET_KEY = "fleet"


class Health:
    """Counters the worker reports (stats line, metrics)."""

    def __init__(self) -> None:
        self.deltas_applied = 0
        self.deltas_duplicate = 0
        self.gaps = 0
        self.undecodable = 0


class FleetState(ChangeloggedObject):
    """The replica as a changelogged object; ``apply_changelog_event`` merges one delta."""

    replica: Replica

    def __post_init__(self) -> None:
        manager: FleetStateManager = self.manager  # type: ignore[assignment]
        self.replica = manager.new_replica()

    def sync_from_storage(self, value: Any) -> None:
        """Never replaced from storage: the live replica is always the newest state."""

    def as_stored_value(self) -> Any:
        return self.replica

    def apply_changelog_event(self, operation: int, value: Any) -> None:
        raise NotImplementedError("deltas are applied by FleetStateManager.apply_changelog_batch")


class FleetStateManager(ChangeloggedObjectManager):
    """Store of the fleet-state table: applies delta records exactly once per source message."""

    ValueType = FleetState

    #: Set by ``FleetStateTable`` before the store is used.
    new_replica: Callable[[], Replica]
    clock: Callable[[], float] = time.time
    reader: RangeReader | None = None

    def __init__(self, table: Table, **kwargs: Any) -> None:
        super().__init__(table, **kwargs)
        self.url = URL(f"fleet-state://{self.table_name}")  # what Faust's log lines show for a store
        self.positions: dict[int, int] = {}  # changelog partition -> last record applied
        self.held: dict[int, list[tuple[int, Delta]]] = {}  # changelog partition -> deltas after a gap
        self.health = Health()
        self.recovered = asyncio.Event()
        self.on_recovered: list[Callable[[], None]] = []
        self._repairs: dict[int, asyncio.Task[None]] = {}

    @property
    def replica(self) -> Replica:
        state: FleetState = self[FLEET_KEY]  # type: ignore[assignment]
        return state.replica

    def restore(self, replica: Replica, positions: dict[int, int]) -> None:
        """Start from a snapshot: its replica, and the changelog records it reflects."""
        state: FleetState = self[FLEET_KEY]  # type: ignore[assignment]
        state.replica = replica
        self.positions = dict(positions)

    # ---- the Store interface Faust uses ---------------------------------------------------------
    async def on_start(self) -> None:
        """Nothing to start: no Faust storage behind the replica."""

    def persisted_offset(self, tp: TP) -> int | None:
        return self.positions.get(tp.partition)

    def set_persisted_offset(self, tp: TP, offset: int) -> None:
        """Ignored: Faust calls it when a write is *sent*; only what was applied counts."""

    def reset_state(self) -> None:
        """Ignored: the replica is rebuilt only from the log, never dropped by a rebalance."""

    async def on_rebalance(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """Nothing to do: every worker keeps every partition (global table)."""

    async def on_recovery_completed(self, active_tps: set[TP], standby_tps: set[TP]) -> None:
        """Caught up, once a recovery covered every partition: an assignment made while Kafka did
        not list the state topic (``pipeline.app.assignor``) recovers nothing and proves nothing."""
        topic = self.table.changelog_topic.get_topic_name()
        covered = {tp.partition for tp in active_tps | standby_tps if tp.topic == topic}
        if len(covered) < (self.table.partitions or 1):
            return
        if not self.recovered.is_set():
            self.recovered.set()
            for callback in self.on_recovered:
                callback()

    def sync_from_storage(self) -> None:
        """Nothing is kept in Faust's storage."""

    def apply_changelog_batch(
        self, batch: Iterable[EventT], to_key: Callable[[Any], Any], to_value: Callable[[Any], Any]
    ) -> None:
        for event in batch:
            self.apply_record(event.message.partition, event.message.offset, event.message.value)

    # ---- the stall guard's view (``stalls.py``): a partition whose last deltas never arrive ------
    async def applied_through(self, partitions: list[int]) -> dict[int, int]:
        """The last record applied of each state partition (-1: none)."""
        return {partition: self.positions.get(partition, -1) for partition in partitions}

    async def apply_read(self, partition: int, records: list[Any]) -> None:
        """Records read from Kafka directly, applied as if Faust had delivered them."""
        for record in records:
            self.apply_record(partition, record.offset, record.value)

    # ---- exactly once per source message --------------------------------------------------------
    def apply_record(self, partition: int, offset: int, value: bytes | None) -> None:
        """Apply one changelog record (partition, offset) unless already reflected."""
        if offset <= self.positions.get(partition, -1):
            return
        try:
            delta = decode_delta(value)
        except ValueError as exc:
            self.health.undecodable += 1
            log.error("state record %d@%d is not a delta (%s); skipped", partition, offset, exc)
            self.positions[partition] = offset
            return
        if partition in self.held:
            self.held[partition].append((offset, delta))
            return
        self._apply(partition, offset, delta)

    def _apply(self, partition: int, offset: int, delta: Delta) -> None:
        outcome = self.replica.apply(delta, self.clock())
        if outcome == "gap":
            self._hold(partition, offset, delta)
            return
        if outcome == "applied":
            self.health.deltas_applied += 1
        else:
            self.health.deltas_duplicate += 1
        self.positions[partition] = offset

    def _hold(self, partition: int, offset: int, delta: Delta) -> None:
        self.health.gaps += 1
        self.held[partition] = [(offset, delta)]
        log.warning(
            "state partition %d: record %d continues source offset %d but this replica applied up to %s; "
            "holding it and re-reading the partition from record %d",
            partition,
            offset,
            delta.prev_offset,
            self.replica.applied.get(delta.partition),
            self.positions.get(partition, -1) + 1,
        )
        if self.reader is not None and partition not in self._repairs:
            self._repairs[partition] = asyncio.ensure_future(self._repair(partition))

    async def _repair(self, partition: int) -> None:
        """Re-read ``partition`` from the last good record up to the held one, then release."""
        assert self.reader is not None
        try:
            start = self.positions.get(partition, -1) + 1
            stop = self.held[partition][0][0]
            topic = self.table.changelog_topic.get_topic_name()
            while True:
                try:
                    records = await self.reader.read(topic, partition, start, stop)
                    break
                except KafkaError as exc:  # Kafka away for a moment: the held deltas wait, then retry
                    log.warning("state partition %d: re-reading for the gap failed (%r); retrying", partition, exc)
                    await asyncio.sleep(1.0)
            for record in records:
                try:
                    outcome = self.replica.apply(decode_delta(record.value), self.clock())
                except ValueError:
                    outcome = "duplicate"
                if outcome != "gap":
                    self.positions[partition] = record.offset
        finally:
            self._repairs.pop(partition, None)
        # After the repair is unregistered: a new gap met while releasing starts its own repair.
        self._release(partition)

    def _release(self, partition: int) -> None:
        held = self.held.pop(partition, [])
        for i, (offset, delta) in enumerate(held):
            if self.replica.judge(delta) == "gap":
                log.error(
                    "state partition %d: source offsets %s..%d of events partition %d are not in the log any more; "
                    "counting on without them",
                    partition,
                    self.replica.next_offset(delta.partition),
                    delta.prev_offset,
                    delta.partition,
                )
                self.replica.skip_gap(delta, self.clock())
                self.positions[partition] = offset
                continue
            self._apply(partition, offset, delta)
            if partition in self.held:  # a new gap: keep the rest behind it
                self.held[partition].extend(held[i + 1 :])
                return
        log.info("state partition %d: gap repaired", partition)


class FleetStateTable(Table, GlobalTableT):  # type: ignore[misc]
    """A global table of one ``FleetState``, changelogged as an operation log (never compacted)."""

    def __init__(self, *args: Any, new_replica: Callable[[], Replica], **kwargs: Any) -> None:
        self._new_replica = new_replica
        super().__init__(*args, **kwargs)
        self._changelog_compacting = False
        self._changelog_deleting = True

    def _changelog_topic_name(self) -> str:
        """Our state topic (Faust's assignor asks this, not ``changelog_topic``, for a global table)."""
        return self.changelog_topic.get_topic_name()

    def _new_store(self) -> FleetStateManager:
        manager = FleetStateManager(self)
        manager.new_replica = self._new_replica
        return manager

    @property
    def manager(self) -> FleetStateManager:
        return self.data  # type: ignore[return-value]
