"""Run one worker: prepare (topics, cluster id, local snapshot), then the Faust worker until stopped.

Exit status: 0 after SIGINT/SIGTERM, 1 when the worker stopped because it could no longer do its
job (``AuditApp.fail``: a failed write, Kafka unreachable past ``INBOUND_AUDIT_KAFKA_TIMEOUT_S``).
A stop that does not finish within ``STOP_DEADLINE_S`` ends the process anyway, so a signal
never leaves a worker hanging in a rebalance.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from pipeline.app.app import AuditApp, build_app
from pipeline.core.snapshot import Snapshot, read_snapshot
from pipeline.kafka.connection import client_options, connection_error
from pipeline.kafka.group_members import ensure_group_monitors
from pipeline.kafka.topic_admin import ensure_state_retention, ensure_topics
from pipeline.settings import Settings

__all__ = ["STOP_DEADLINE_S", "prepare", "run_worker"]

log = logging.getLogger("pipeline.worker")

STOP_DEADLINE_S = 10.0


class _Worker(faust.Worker):
    """Faust's worker with a hard deadline on stopping."""

    exit_status = 0

    def _on_sigterm(self) -> None:
        self._arm_deadline()
        super()._on_sigterm()

    def _on_sigint(self) -> None:
        self._arm_deadline()
        super()._on_sigint()

    def _arm_deadline(self) -> None:
        timer = threading.Timer(STOP_DEADLINE_S, os._exit, (self.exit_status or 1,))
        timer.daemon = True
        timer.start()


async def _cluster_id(settings: Settings, bootstrap: str) -> str:
    admin = AIOKafkaAdminClient(**client_options(settings, bootstrap))
    await admin.start()
    try:
        return str((await admin.describe_cluster())["cluster_id"])
    finally:
        await admin.close()


async def _usable_snapshot(settings: Settings, bootstrap: str, cluster_id: str) -> tuple[Snapshot | None, int]:
    """The local snapshot when it was taken here and the state topic still holds its tail, and
    how many state records are left to replay after it."""
    if not settings.snapshot_interval_s:
        return None, 0
    snapshot = read_snapshot(settings.snapshot_path, settings.monitors)
    if snapshot is None:
        return None, 0
    left = 0
    why = snapshot.mismatch(cluster_id, settings.state_topic, settings.partitions)
    if why is None:
        consumer = AIOKafkaConsumer(**client_options(settings, bootstrap), enable_auto_commit=False)
        await consumer.start()
        try:
            tps = [TopicPartition(settings.state_topic, p) for p in range(settings.partitions)]
            starts, ends = await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
        finally:
            await consumer.stop()
        for tp in tps:
            position = snapshot.positions.get(tp.partition, -1)
            if not starts[tp] - 1 <= position < max(ends[tp], 1):
                why = f"{tp.topic}[{tp.partition}] no longer holds the records after offset {position}"
                break
            left += ends[tp] - position - 1
    if why is not None:
        log.warning("ignoring the snapshot %s: %s; replaying %s", settings.snapshot_path, why, settings.state_topic)
        return None, 0
    return snapshot, left


async def prepare(settings: Settings, bootstrap: str) -> tuple[str, Snapshot | None, int]:
    """Create missing topics, learn the cluster id, pick the snapshot to start from."""
    report = await ensure_topics(settings, bootstrap)
    for line in report.lines():
        log.log(logging.WARNING if line.startswith("MISMATCH") else logging.INFO, "%s", line)
    raised = await ensure_state_retention(settings, bootstrap)
    if raised is not None:
        log.warning("%s", raised)
    await ensure_group_monitors(settings, bootstrap)
    try:
        cluster_id = await _cluster_id(settings, bootstrap)
    except KafkaError as exc:
        raise await connection_error(settings, exc, bootstrap) from exc
    return (cluster_id, *await _usable_snapshot(settings, bootstrap, cluster_id))


def run_worker(settings: Settings, bootstrap: str, loglevel: str = "info") -> int:
    """Serve until stopped; the process exit status (see the module docstring)."""
    cluster_id, snapshot, left = asyncio.run(prepare(settings, bootstrap))
    asyncio.set_event_loop(asyncio.new_event_loop())
    audit: AuditApp = build_app(settings, bootstrap)
    audit.cluster_id = cluster_id
    if snapshot is not None:
        audit.manager.restore(snapshot.replica, snapshot.positions)
        log.info("replica restored from %s; %d state offsets left to replay", settings.snapshot_path, left)
    worker = _Worker(audit.app, loglevel=loglevel, quiet=True)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 1
    else:
        status = 0
    log.info("%s", audit.stats_line())
    return 1 if audit.failure is not None else status
