"""The Faust application, built from ``Settings`` in one place (no import-time globals).

* ``ingest`` agent   — events topic; each batch of messages of a partition becomes ONE delta
                        operation on the fleet-state table (``ingest.py``).
* fleet-state table  — a global operation-changelog table (``state_table.py``) on the state topic:
                        every worker replays every partition and holds the whole fleet's counts.
* series table       — a global table (``series_table.py``) on the compacted series topic: the
                        named series' definitions, first per name in log order.
* ``queries`` agent  — requests topic; one reply per request on its ``reply_to`` (``queries.py``).
* timers             — expire old windows, publish window summaries, snapshot the replica,
                        read owned partitions Faust stopped delivering (``stalls.py``),
                        watch the broker connection, log a stats line.

Processing guarantee: Faust's ``at_least_once`` with operations that are idempotent per source
offset. Faust's ``exactly_once`` was measured to crash the surviving worker on ProducerFenced
when a peer rejoins and to cost ~12 s per recovery; here a re-processed message writes a delta
that every replica recognises and cuts (``pipeline.core.replica``), so counts are exactly once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import faust
from faust.exceptions import ConsumerNotStarted
from mode import Service

from pipeline.app.assignor import Assignor
from pipeline.app.ingest import Ingester, SourceMessage
from pipeline.app.queries import Responder
from pipeline.app.range_reader import RangeReader
from pipeline.app.request_gaps import RequestGaps
from pipeline.app.series_table import SeriesDefinitions, SeriesTable
from pipeline.app.stalls import STALL_CHECK_S, StallGuard
from pipeline.app.state_table import FleetStateManager, FleetStateTable
from pipeline.app.summary_publisher import SummaryPublisher
from pipeline.app.transport import Transport
from pipeline.app.web import register_web
from pipeline.core.replica import Replica
from pipeline.core.series import SeriesCatalog
from pipeline.core.snapshot import Snapshot, encode_snapshot, write_bytes_atomically
from pipeline.kafka.connection import client_options, faust_broker_options
from pipeline.kafka.group_members import committed_offset, member_client_id
from pipeline.kafka.outage_log import OutageLog, install_log_gate
from pipeline.kafka.reachability import broker_answers
from pipeline.settings import Settings

__all__ = ["AuditApp", "build_app"]

TableT = TypeVar("TableT", FleetStateTable, SeriesTable)

log = logging.getLogger("pipeline.worker")

#: Messages per ingest batch (and at most this long to fill one): with SPEC batches of up to
#: 10,000 events this amortises Faust's per-message cost; ``batch_max_events`` caps a delta.
TAKE_MESSAGES = 200
TAKE_WITHIN_S = 0.05


@dataclass
class AuditApp:
    """The Faust app and the parts the worker command and tests reach into."""

    settings: Settings
    bootstrap: str
    app: faust.App
    table: FleetStateTable
    series_table: SeriesTable
    ingester: Ingester
    responder: Responder
    summaries: SummaryPublisher
    request_gaps: RequestGaps
    reader: RangeReader
    clock: Callable[[], float] = time.time
    stall_guards: tuple[StallGuard, ...] = ()
    cluster_id: str = ""
    failure: str | None = None

    @property
    def summaries_published(self) -> int:
        return self.summaries.published

    @property
    def manager(self) -> FleetStateManager:
        return self.table.manager

    @property
    def replica(self) -> Replica:
        return self.manager.replica

    @property
    def definitions(self) -> SeriesDefinitions:
        return self.series_table.manager

    def client_options(self) -> dict[str, Any]:
        return client_options(self.settings, self.bootstrap)

    def fail(self, reason: str) -> None:
        """This worker can no longer do its job: one line, then leave the group and exit non-zero."""
        if self.failure is None:
            self.failure = reason
            log.critical("stopping: %s", reason)
            os.kill(os.getpid(), signal.SIGTERM)

    def snapshot(self) -> Snapshot:
        manager = self.manager
        return Snapshot(
            self.cluster_id, self.settings.state_topic, self.settings.partitions, dict(manager.positions), self.replica
        )

    async def save_snapshot(self) -> None:
        raw = encode_snapshot(self.snapshot())
        await asyncio.to_thread(write_bytes_atomically, self.settings.snapshot_path, raw)
        log.info("replica snapshot written (%d bytes)", len(raw))

    def readiness(self) -> tuple[bool, str]:
        """Whether answers are exact yet (``/ready``, the metrics, the dashboard), and why."""
        if self.failure is not None:
            return False, self.failure
        if not self.manager.recovered.is_set():
            return False, f"replaying {self.settings.state_topic}"
        return True, f"replica caught up with {self.settings.state_topic}; answering queries"

    def dead_letters(self) -> dict[tuple[str, str], int]:
        """Messages this worker dead-lettered since it started, by (source, reason)."""
        return {
            (source, reason): count
            for source, reasons in (
                ("events", self.ingester.dead_letter_reasons),
                ("requests", self.responder.dead_letter_reasons),
            )
            for reason, count in sorted(reasons.items())
        }

    def stats_line(self) -> str:
        ingest, queries, health = self.ingester.stats, self.responder.stats, self.manager.health
        return (
            f"stats: counted {ingest['events']} events in {ingest['deltas']} deltas, dead-lettered "
            f"{ingest['dead_letters']}, skipped {ingest['redelivered']} redelivered messages; applied "
            f"{health.deltas_applied} deltas ({health.deltas_duplicate} duplicates, {health.gaps} gaps); "
            f"answered {queries['requests']} requests"
        )


class _FaustApp(faust.App):
    """Faust's app on our transport (``transport.py``), which reads our settings from it."""

    audit_settings: Settings

    def _new_transport(self) -> Any:
        return Transport(self.conf.broker_consumer, self)


def _faust_app(settings: Settings, bootstrap: str) -> faust.App:
    app = _FaustApp(
        settings.group_id,
        **faust_broker_options(settings, bootstrap),
        broker_client_id=member_client_id(settings),
        store="memory://",
        processing_guarantee="at_least_once",
        autodiscover=False,
        PartitionAssignor=Assignor,
        datadir=str(settings.home_dir / "faust"),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        consumer_auto_offset_reset="earliest",
        # A dead member's partitions move after ~6 s (the broker's minimum session).
        broker_session_timeout=6.0,
        broker_heartbeat_interval=0.5,
        broker_commit_interval=1.0,
        producer_linger_ms=5,
        producer_max_request_size=16 << 20,
        producer_acks=-1,
        consumer_max_fetch_size=settings.fetch_max_bytes // 4,  # a larger record batch still comes whole
        web_enabled=settings.web_port != 0,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port or 6066,
        worker_redirect_stdouts=False,
    )
    app.audit_settings = settings
    return app


def build_app(settings: Settings, bootstrap: str, *, clock: Callable[[], float] = time.time) -> AuditApp:
    """The whole worker as one Faust app; nothing runs until a Faust worker starts it."""
    install_log_gate()  # one line per Kafka condition, not aiokafka's ~30 a second while it is away
    app = _faust_app(settings, bootstrap)
    events = app.topic(settings.events_topic, key_type=bytes, value_type=bytes, value_serializer="raw")
    requests = app.topic(settings.requests_topic, key_type=bytes, value_type=bytes, value_serializer="raw")
    table = _global_operation_table(
        FleetStateTable,
        app,
        "fleet",
        _log_topic(app, settings.state_topic, settings.partitions),
        settings.partitions,
        new_replica=lambda: Replica(settings.monitors),
    )
    manager = table.manager
    manager.clock = clock
    series_table = _series_table(app, settings)
    definitions = series_table.manager

    async def send(topic: str, key: bytes | None, value: bytes, partition: int | None) -> Any:
        return await app.producer.send(topic, key, value, partition, None, None)

    reader = RangeReader(lambda: client_options(settings, bootstrap))
    audit = AuditApp(
        settings,
        bootstrap,
        app,
        table,
        series_table,
        Ingester(settings, lambda: manager.replica, send, reader, lambda name: definitions.catalog.get(name)),
        Responder(settings, lambda: manager.replica, clock, lambda: definitions.catalog, definitions.publish),
        SummaryPublisher(settings, lambda: client_options(settings, bootstrap), reader),
        RequestGaps(
            reader,
            settings.requests_topic,
            lambda partition: committed_offset(settings, bootstrap, settings.requests_topic, partition),
        ),
        reader,
        clock,
    )
    manager.reader = reader
    manager.on_recovered.append(lambda: log.info("replica caught up with %s; answering queries", settings.state_topic))
    _register_agents(audit, events, requests)
    _register_timers(audit)
    app.service(_lifecycle(audit))
    app.on_partitions_revoked.connect(_forget_revoked(audit))
    app.on_partitions_assigned.connect(_log_assigned(audit))
    register_web(audit)
    return audit


def _series_table(app: faust.App, settings: Settings) -> SeriesTable:
    """The series definitions' table on the compacted series topic (one partition)."""
    topic = _log_topic(app, settings.series_topic, 1)
    return _global_operation_table(
        SeriesTable, app, "series", topic, 1, new_catalog=lambda: SeriesCatalog(settings.series)
    )


def _log_topic(app: faust.App, name: str, partitions: int) -> faust.TopicT:
    """A topic of raw records, the changelog of an operation table."""
    return app.topic(
        name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw", partitions=partitions
    )


def _global_operation_table(
    table_type: type[TableT], app: faust.App, name: str, topic: faust.TopicT, partitions: int, **factory: Any
) -> TableT:
    """A global operation-changelog table: every worker replays every partition, one record at a
    time (buffer size 1: Faust applies a larger buffer only once it is full, so replicas would lag)."""
    table = table_type(
        app,
        name=name,
        changelog_topic=topic,
        partitions=partitions,
        is_global=True,
        synchronize_all_active_partitions=True,
        recovery_buffer_size=1,
        standby_buffer_size=1,
        **factory,
    )
    app.tables.add(table)
    return table


def _register_agents(audit: AuditApp, events: faust.TopicT, requests: faust.TopicT) -> None:
    app = audit.app

    @app.agent(events, name="ingest")
    async def ingest(stream: faust.StreamT) -> None:
        assert isinstance(stream, faust.Stream)  # take_events is not on the StreamT interface
        async for batch in stream.take_events(TAKE_MESSAGES, within=TAKE_WITHIN_S):
            await audit.ingester.ingest(
                [
                    SourceMessage(
                        e.message.partition, e.message.offset, round(e.message.timestamp * 1000), e.message.value
                    )
                    for e in batch
                ]
            )

    @app.agent(requests, name="queries")
    async def queries(stream: faust.StreamT) -> None:
        # Replies go out in the background: one slow reply topic does not hold up the requests
        # behind it. (Acking each request only after its reply was tried with Faust's manual acks:
        # queries then sometimes stalled after a rebalance, in 2 of 7 SIGKILL runs.)
        async for event in stream.events():
            message = event.message
            if audit.request_gaps.answered(message.partition, message.offset):
                continue
            for record in await audit.request_gaps.missed(message.partition, message.offset):
                audit.responder.handle(record.partition, record.offset, record.value)
            audit.responder.handle(message.partition, message.offset, message.value)


def _register_timers(audit: AuditApp) -> None:
    app, settings = audit.app, audit.settings
    events_p0 = faust.types.TP(settings.events_topic, 0)

    @app.timer(1.0, name="clock")
    async def clock_tick() -> None:
        if audit.manager.recovered.is_set():
            owner = events_p0 in app.consumer.assignment()
            definitions = audit.definitions.catalog.definitions()
            await audit.summaries.tick(owner, audit.replica, definitions, audit.clock())

    if settings.snapshot_interval_s:

        @app.timer(settings.snapshot_interval_s, name="snapshot")
        async def snapshot_tick() -> None:
            if audit.manager.recovered.is_set():
                await audit.save_snapshot()

    guards = audit.stall_guards = _stall_guards(audit)

    @app.timer(STALL_CHECK_S, name="stalls")
    async def stalls_tick() -> None:
        if audit.manager.recovered.is_set():
            try:
                # While the group rebalances Faust holds delivery back on purpose: nothing is owned
                # for the guards then, so their clocks start afresh once it is done.
                assigned = set() if app.rebalancing else app.consumer.assignment()
            except ConsumerNotStarted:
                return
            for guard in guards:
                await guard.check(guard.watched(assigned), time.monotonic())

    last_line = [""]

    @app.timer(10.0, name="stats")
    async def stats_tick() -> None:
        line = audit.stats_line()
        if line != last_line[0]:
            last_line[0] = line
            log.info("%s", line)


def _stall_guards(audit: AuditApp) -> tuple[StallGuard, StallGuard, StallGuard]:
    """Owned events and requests partitions, and state partitions, that Faust stopped delivering
    are read directly (``stalls.py``)."""
    ingester, gaps, responder, manager = audit.ingester, audit.request_gaps, audit.responder, audit.manager

    async def written(partitions: list[int]) -> dict[int, int]:
        return {p: ingester.last_written(p) for p in partitions}

    async def ingest(partition: int, records: list[Any]) -> None:
        await ingester.ingest([SourceMessage(partition, r.offset, r.timestamp, r.value) for r in records])

    async def answered(partitions: list[int]) -> dict[int, int]:
        return {p: await gaps.next_expected(p) - 1 for p in partitions}

    async def answer(partition: int, records: list[Any]) -> None:
        for record in records:
            gaps.handled(partition, record.offset)
            responder.handle(partition, record.offset, record.value)

    settings = audit.settings
    return (
        StallGuard(audit.reader, settings.events_topic, "events", written, ingest),
        StallGuard(audit.reader, settings.requests_topic, "requests", answered, answer),
        StallGuard(
            audit.reader,
            settings.state_topic,
            "state",
            manager.applied_through,
            manager.apply_read,
            everywhere=settings.partitions,  # a global table: every worker reads every partition
        ),
    )


def _forget_revoked(audit: AuditApp) -> Any:
    async def on_revoked(app: faust.App, revoked: set[Any], **kwargs: Any) -> None:
        audit.ingester.forget([tp.partition for tp in revoked if tp.topic == audit.settings.events_topic])
        audit.request_gaps.forget([tp.partition for tp in revoked if tp.topic == audit.settings.requests_topic])

    return on_revoked


def _log_assigned(audit: AuditApp) -> Any:
    async def on_assigned(app: faust.App, assigned: set[Any], **kwargs: Any) -> None:
        owned = sorted(tp.partition for tp in assigned if tp.topic == audit.settings.events_topic)
        log.info("owning events partitions %s", owned)

    return on_assigned


def _lifecycle(audit: AuditApp) -> type[Service]:
    """Starts the reply producer and the broker watchdog with the app; saves a snapshot on stop."""

    class Lifecycle(Service):
        async def on_start(self) -> None:
            log.info("event decoder: %s", audit.ingester.decoder.name)
            await audit.responder.start(audit.client_options())

        @Service.task
        async def _configured_series(self) -> None:
            """Once the logs are read: configured series the log lacks are written to it; one the
            log defines differently stops the worker (the log's first definition counts)."""
            await audit.manager.recovered.wait()
            definitions, producer = audit.definitions, audit.responder.producer
            assert producer is not None
            for configured, logged in definitions.catalog.conflicts():
                audit.fail(f"INBOUND_AUDIT_SERIES defines {configured} but {audit.settings.series_topic} has {logged}")
            for definition in definitions.catalog.unlogged():
                winner = await definitions.publish(producer, definition)
                if winner != definition:
                    audit.fail(
                        f"INBOUND_AUDIT_SERIES defines {definition} but {audit.settings.series_topic} has {winner}"
                    )

        async def on_stop(self) -> None:
            await audit.responder.stop()
            await audit.summaries.stop()
            await audit.reader.close()
            if audit.settings.snapshot_interval_s and audit.manager.recovered.is_set() and audit.failure is None:
                await audit.save_snapshot()

        @Service.task
        async def _watchdog(self) -> None:
            """Exit non-zero when a write failed, or no broker has answered for ``kafka_timeout_s``."""
            producer = audit.responder.producer
            assert producer is not None
            outage = OutageLog(log, "worker", audit.bootstrap)  # aiokafka's own lines are gated
            last_ok = time.monotonic()
            while not self.should_stop:
                await self.sleep(1.0)
                if audit.ingester.failure is not None:
                    audit.fail(f"a write to Kafka failed: {audit.ingester.failure!r}")
                try:
                    ok = await asyncio.wait_for(broker_answers(producer.client, audit.settings.requests_topic), 5.0)
                except (TimeoutError, Exception):  # noqa: BLE001 - any failure means "no answer"
                    ok = False
                if self.should_stop:
                    return  # a stop closes the producer under the check: that is no outage
                if ok:
                    last_ok = time.monotonic()
                    outage.came_back()
                    continue
                outage.went_down(f"stopping if it does not answer within {audit.settings.kafka_timeout_s:.0f} s")
                if time.monotonic() - last_ok > audit.settings.kafka_timeout_s:
                    audit.fail(f"Kafka at {audit.bootstrap} unreachable for {audit.settings.kafka_timeout_s:.0f} s")

    return Lifecycle
