"""The worker: wires the counting core to Kafka with aiokafka. No domain logic lives here.

Four loops share one process:

* ingest   — group consumer on the events topic; per fetched batch and partition: decode,
             publish ONE delta to the state topic (same partition number), dead-letter the bad
             events, commit. Before touching a newly assigned partition it waits until the
             replica has read the state topic to its end and resumes right after the last
             delta applied for that partition (so a crash between "delta sent" and "offset
             committed" never counts a batch twice).
* replicate — reads every partition of the state topic (no group) into this worker's replica,
             so every worker can answer any query, local or fleet-wide, from memory.
* queries  — group consumer on the requests topic; answers each request once on its reply_to.
* clock    — expires old windows and, on the worker owning events partition 0, publishes a
             summary per monitor, window and scope when a window closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from pipeline.core.delta import decode_delta, delta_from_decoded, encode_delta
from pipeline.core.events import DecodedBatch, EventDecoder, Rejection, dead_letter_record
from pipeline.core.query import Unroutable, answer, parse_request, read_envelope, reply_error, reply_value
from pipeline.core.replica import Replica
from pipeline.core.snapshot import Snapshot, encode_snapshot, read_snapshot, write_bytes_atomically
from pipeline.core.summaries import SummaryClock
from pipeline.errors import AuditError
from pipeline.settings import Settings

__all__ = ["Worker"]

log = logging.getLogger(__name__)

Clock = Callable[[], float]


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: Worker) -> None:
        self._worker = worker

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._worker.give_up([tp.partition for tp in revoked])

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self._worker.take_over(assigned)


class Worker:
    """One member of the fleet-wide pipeline; start with ``run()`` (or ``start``/``stop``)."""

    def __init__(self, settings: Settings, bootstrap: str, *, clock: Clock = time.time) -> None:
        self.settings = settings
        self.bootstrap = bootstrap
        self.clock = clock
        self.replica = Replica(settings.monitors)
        self.decoder = EventDecoder(max_future_s=settings.max_future_s)
        self.summaries = SummaryClock(settings, clock())
        self.ingest_lock = asyncio.Lock()
        self.owned: set[int] = set()
        self.ready = asyncio.Event()
        self._state_end: dict[int, int] = {}
        self._state_positions: dict[int, int] = {}
        self._state_consumer: AIOKafkaConsumer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self.stats = Counter[str]()
        self.failure: BaseException | None = None
        self._replies: set[asyncio.Task[None]] = set()
        self._owner_producers: dict[int, AIOKafkaProducer] = {}
        self._caught_up = asyncio.Condition()

    # ---- life cycle -------------------------------------------------------------------------
    async def start(self) -> None:
        common: dict[str, Any] = {"bootstrap_servers": self.bootstrap}
        self.producer = AIOKafkaProducer(**common, linger_ms=5, acks="all")
        # Replies: no linger, and a short metadata wait so a bad reply_to fails fast.
        self.reply_producer = AIOKafkaProducer(**common, linger_ms=0, acks=1, request_timeout_ms=5000)
        # Only committed deltas count: a batch whose transaction was aborted (or whose owner was
        # fenced off as a zombie) is never applied.
        self._state_consumer = AIOKafkaConsumer(
            **common,
            enable_auto_commit=False,
            isolation_level="read_committed",
            fetch_max_bytes=64 << 20,
            max_partition_fetch_bytes=16 << 20,
        )
        self.events_consumer = AIOKafkaConsumer(
            **common,
            group_id=f"{self.settings.group_id}.events",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=4 << 20,
        )
        self.requests_consumer = AIOKafkaConsumer(
            **common,
            group_id=f"{self.settings.group_id}.queries",
            enable_auto_commit=True,
            # A new group (or one whose only member died before committing) must still answer
            # the requests already waiting: every routable request gets exactly one reply.
            auto_offset_reset="earliest",
            fetch_max_wait_ms=100,
        )
        for client in (self.producer, self.reply_producer, self._state_consumer):
            await client.start()
        await self._start_replication()
        await self.events_consumer.start()
        self.events_consumer.subscribe([self.settings.events_topic], listener=_Rebalance(self))
        await self.requests_consumer.start()
        self.requests_consumer.subscribe([self.settings.requests_topic])
        self._tasks = [
            asyncio.create_task(self._replicate_loop(), name="replicate"),
            asyncio.create_task(self._ingest_loop(), name="ingest"),
            asyncio.create_task(self._query_loop(), name="queries"),
            asyncio.create_task(self._clock_loop(), name="clock"),
        ]
        for task in self._tasks:
            task.add_done_callback(self._on_loop_done)

    def _on_loop_done(self, task: asyncio.Task[None]) -> None:
        """A loop must never end on its own: fail the whole worker loudly so it gets restarted."""
        if task.cancelled() or self._stopping.is_set():
            return
        self.failure = task.exception() or RuntimeError(f"{task.get_name()} loop ended")
        log.critical("%s loop failed; stopping the worker", task.get_name(), exc_info=self.failure)
        self._stopping.set()

    def _log_stats(self) -> None:
        log.info(
            "stats: counted %d events, dead-lettered %d, answered %d requests",
            self.stats["events"],
            self.stats["dead_letters"],
            self.stats["requests"],
        )

    async def stop(self) -> None:
        self._stopping.set()
        self._log_stats()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.settings.snapshot_interval_s and self.ready.is_set():
            await self._save_snapshot()
        for client in (self.events_consumer, self.requests_consumer, self._state_consumer):
            if client is not None:
                await client.stop()
        for producer in (self.producer, self.reply_producer, *self._owner_producers.values()):
            await producer.stop()

    async def run(self) -> None:
        """Run until SIGINT/SIGTERM."""
        await self.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stopping.set)
        log.info("worker ready on %s", self.bootstrap)
        try:
            await self._stopping.wait()
        finally:
            await self.stop()
        if self.failure is not None:
            raise SystemExit(f"inbound-audit worker failed: {self.failure!r}")

    # ---- replication --------------------------------------------------------------------------
    async def _start_replication(self) -> None:
        consumer = self._state_consumer
        assert consumer is not None
        partitions = await _partitions_of(consumer, self.settings.state_topic)
        tps = [TopicPartition(self.settings.state_topic, p) for p in partitions]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        self._state_end = {tp.partition: off for tp, off in ends.items()}
        snapshot = await self._usable_snapshot(consumer, tps, ends)
        if snapshot is None:
            await consumer.seek_to_beginning(*tps)
            return
        self.replica = snapshot.replica
        for tp in tps:
            consumer.seek(tp, snapshot.positions[tp.partition])
        self._state_positions = dict(snapshot.positions)
        behind = sum(ends[tp] - snapshot.positions[tp.partition] for tp in tps)
        log.info("replica restored from %s; %d state offsets left to replay", self.settings.snapshot_path, behind)

    async def _usable_snapshot(
        self, consumer: AIOKafkaConsumer, tps: list[TopicPartition], ends: dict[TopicPartition, int]
    ) -> Snapshot | None:
        """The local snapshot if the state topic still holds everything after its positions."""
        if not self.settings.snapshot_interval_s:
            return None
        snapshot = read_snapshot(self.settings.snapshot_path, self.settings.monitors, self.settings.state_topic)
        if snapshot is None or set(snapshot.positions) != {tp.partition for tp in tps}:
            return None
        starts = await consumer.beginning_offsets(tps)
        if all(starts[tp] <= snapshot.positions[tp.partition] <= ends[tp] for tp in tps):
            return snapshot
        log.info("ignoring %s: the state topic no longer matches it", self.settings.snapshot_path)
        return None

    async def _save_snapshot(self) -> None:
        """Snapshot the replica with positions never ahead of it (deltas re-read are skipped)."""
        snapshot = Snapshot(self.settings.state_topic, dict(self._state_positions), self.replica)
        raw = encode_snapshot(snapshot)
        await asyncio.to_thread(write_bytes_atomically, self.settings.snapshot_path, raw)
        log.info("replica snapshot written (%d bytes)", len(raw))

    def _state_position(self, partition: int) -> int:
        return self._state_positions.get(partition, 0)

    async def _replicate_loop(self) -> None:
        consumer = self._state_consumer
        assert consumer is not None
        tps = sorted(consumer.assignment())
        next_snapshot = self.clock() + self.settings.snapshot_interval_s
        while True:
            batches = await consumer.getmany(timeout_ms=200, max_records=1000)
            now = self.clock()
            for tp, records in batches.items():
                for record in records:
                    try:
                        self.replica.apply(decode_delta(record.value), now)
                    except ValueError:
                        log.exception("skipping undecodable state record %s@%d", tp, record.offset)
                    await asyncio.sleep(0)  # queries may run between deltas
            # The consumer's position, not the last record's offset + 1: transaction markers
            # occupy offsets too, and the end offset counts them.
            moved = False
            for tp in tps:
                position = await consumer.position(tp)
                moved |= position != self._state_positions.get(tp.partition)
                self._state_positions[tp.partition] = position
            if moved or not self.ready.is_set():
                await self._mark_caught_up()
            if moved and self.settings.snapshot_interval_s and now >= next_snapshot:
                await self._save_snapshot()
                next_snapshot = now + self.settings.snapshot_interval_s

    async def _mark_caught_up(self) -> None:
        async with self._caught_up:
            if not self.ready.is_set() and all(self._state_position(p) >= end for p, end in self._state_end.items()):
                self.ready.set()
                log.info("replica caught up with %s; answering queries", self.settings.state_topic)
            self._caught_up.notify_all()

    async def _wait_state_until(self, partition: int, offset: int) -> None:
        async with self._caught_up:
            await self._caught_up.wait_for(lambda: self._state_position(partition) >= offset)

    # ---- ingest ------------------------------------------------------------------------------
    async def take_over(self, assigned: list[TopicPartition]) -> None:
        """Resume each newly assigned events partition right after its last applied delta.

        The partition's transactional producer starts first: that fences off any previous owner
        still running (its open transaction is aborted), so the state partition's end read next
        is final, and the replica is caught up to it before any event is read.
        """
        consumer = self._state_consumer
        assert consumer is not None
        for tp in assigned:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap,
                transactional_id=f"{self.settings.group_id}.events-{tp.partition}",
                linger_ms=5,
                max_request_size=16 << 20,
            )
            await producer.start()
            self._owner_producers[tp.partition] = producer
        state_tps = [TopicPartition(self.settings.state_topic, tp.partition) for tp in assigned]
        ends = await consumer.end_offsets(state_tps) if state_tps else {}
        committed = {tp: await self.events_consumer.committed(tp) for tp in assigned}
        for tp in assigned:
            await self._wait_state_until(tp.partition, ends[TopicPartition(self.settings.state_topic, tp.partition)])
            resume = self.replica.next_offset(tp.partition)
            candidates = [o for o in (resume, committed[tp]) if o is not None]
            if candidates:
                self.events_consumer.seek(tp, max(candidates))
            else:
                await self.events_consumer.seek_to_beginning(tp)
            self.owned.add(tp.partition)
        log.info("owning events partitions %s", sorted(self.owned))

    async def give_up(self, partitions: list[int]) -> None:
        """Stop owning ``partitions`` once the batch in flight (if any) is published."""
        async with self.ingest_lock:
            for partition in partitions:
                self.owned.discard(partition)
                producer = self._owner_producers.pop(partition, None)
                if producer is not None:
                    await producer.stop()

    async def _ingest_loop(self) -> None:
        consumer = self.events_consumer
        await self.ready.wait()
        while True:
            batches = await consumer.getmany(timeout_ms=200, max_records=500)
            if not batches:
                continue
            async with self.ingest_lock:
                work = [(tp, records) for tp, records in batches.items() if tp.partition in self.owned and records]
                # Each partition has its own transactional producer, so one partition's commit
                # round trip overlaps the decoding of the others.
                await asyncio.gather(*(self._ingest_partition(tp, records) for tp, records in work))
                offsets = {tp: records[-1].offset + 1 for tp, records in work}
                if offsets:
                    with contextlib.suppress(KafkaError):
                        await consumer.commit(offsets)

    async def _ingest_partition(self, tp: TopicPartition, records: list[Any]) -> None:
        """Count ``records`` as one delta per ``batch_max_events`` events (deltas stay small)."""

        batch, dead, ends = DecodedBatch(), [], []
        for i, record in enumerate(records):
            # The broker's append time (the events topic uses LogAppendTime) is the reference
            # clock for too_late / future_timestamp, so a replay decides exactly as before.
            now_s = record.timestamp / 1000.0
            before = len(batch.rejected)
            self.decoder.decode(record.value or b"", now_s=now_s, oldest_kept_s=self._oldest_kept(now_s), into=batch)
            for rejection in batch.rejected[before:]:
                dead.append(orjson.dumps(dead_letter_record(rejection, tp.topic, tp.partition, record.offset)))
            ends.append((record.offset, len(batch.node), len(batch.sessions)))
            if len(batch.node) + len(batch.sessions) >= self.settings.batch_max_events or i == len(records) - 1:
                await self._publish_delta(tp, batch, dead, ends)
                batch, dead, ends = DecodedBatch(), [], []
            # Let queries in between messages: decoding a whole fetch at once would hold them up.
            await asyncio.sleep(0)

    async def _publish_delta(
        self, tp: TopicPartition, batch: DecodedBatch, dead: list[bytes], ends: list[tuple[int, int, int]]
    ) -> None:
        delta = delta_from_decoded(batch, tp.partition, ends, self.replica.last_applied(tp.partition))
        self.stats["events"] += delta.event_count + len(delta.sessions)
        self.stats["dead_letters"] += len(dead)
        # One transaction: the delta (which marks the batch done) and its dead letters are
        # published together or not at all.
        producer = self._owner_producers[tp.partition]
        async with producer.transaction():
            for value in dead:
                await producer.send(self.settings.deadletter_topic, value)
            await producer.send(self.settings.state_topic, encode_delta(delta), partition=tp.partition)

    def _oldest_kept(self, now_s: float) -> float:
        return min(m.oldest_kept_start(now_s) for m in self.settings.monitors)

    # ---- queries -----------------------------------------------------------------------------
    async def _query_loop(self) -> None:
        await self.ready.wait()
        consumer = self.requests_consumer
        while True:
            batches = await consumer.getmany(timeout_ms=200, max_records=1000)
            for tp, records in batches.items():
                for record in records:
                    await self._handle_request(tp, record)

    async def _handle_request(self, tp: TopicPartition, record: Any) -> None:
        try:
            obj, reply_to = read_envelope(record.value)
        except Unroutable as exc:
            await self._dead_letter(Rejection(exc.reason, exc.detail, record.value or b""), tp, record.offset)
            return
        request_id = obj.get("id")
        try:
            request = parse_request(obj, self.settings.monitors)
            value = reply_value(request_id, answer(request, self.replica.counts, self.replica.gauge, self.clock()))
        except AuditError as exc:
            value = reply_error(request_id, exc)
        key = request_id.encode() if isinstance(request_id, str) else None
        self.stats["requests"] += 1
        # Sent in the background: a reply topic that does not exist must not stall other answers.
        task = asyncio.create_task(self._reply(reply_to, key, value, tp, record))
        self._replies.add(task)
        task.add_done_callback(self._replies.discard)

    async def _reply(self, reply_to: str, key: bytes | None, value: bytes, tp: TopicPartition, record: Any) -> None:
        try:
            await self.reply_producer.send_and_wait(reply_to, value, key=key)
        except KafkaError as exc:
            detail = f"cannot deliver the reply to {reply_to!r}: {exc!r}"
            await self._dead_letter(Rejection("undeliverable_reply", detail, record.value or b""), tp, record.offset)

    async def _dead_letter(self, rejection: Rejection, tp: TopicPartition, offset: int) -> None:
        letter = dead_letter_record(rejection, tp.topic, tp.partition, offset)
        await self.producer.send(self.settings.deadletter_topic, orjson.dumps(letter))

    # ---- clock -------------------------------------------------------------------------------
    async def _clock_loop(self) -> None:
        await self.ready.wait()
        logged: dict[str, int] = {}
        while True:
            await asyncio.sleep(1.0)
            if self.stats != logged:
                logged = dict(self.stats)
                self._log_stats()
            now = self.clock()
            self.replica.counts.expire(now)
            summaries = self.summaries.due(self.replica.counts, now)
            if 0 in self.owned:
                for value in summaries:
                    await self.producer.send(self.settings.windows_topic, value)


async def _partitions_of(consumer: AIOKafkaConsumer, topic: str) -> list[int]:
    for _ in range(50):
        partitions = consumer.partitions_for_topic(topic)
        if partitions:
            return sorted(partitions)
        await consumer._client.force_metadata_update()  # noqa: SLF001 - no public refresh in aiokafka
        await asyncio.sleep(0.1)
    raise KafkaError(f"topic {topic!r} does not exist; run 'inbound-audit topics'")
