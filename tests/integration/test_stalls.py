"""A partition Faust stops delivering is read directly, on the real broker: the stall guard with
the worker's own Ingester and RangeReader (no Faust in between, which is the point: Faust is what
stalls) turns the published events into deltas a replica applies, and its answers match the oracle;
and state deltas never delivered to the fleet table's store are read and applied the same way."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from audit_oracle import Stream, generate, random_requests
from harness import isolated_env, prepare_topics, publish
from test_pipeline_e2e import MONITORS, MONITORS_ENV

from pipeline.app.ingest import Ingester, SourceMessage
from pipeline.app.range_reader import RangeReader
from pipeline.app.stalls import StallGuard
from pipeline.app.state_table import FleetStateManager
from pipeline.core.delta import decode_delta
from pipeline.core.query import answer, parse_request
from pipeline.core.replica import Replica
from pipeline.core.series import SeriesCatalog
from pipeline.kafka.connection import client_options
from pipeline.settings import Settings

pytestmark = pytest.mark.integration


async def test_a_stalled_events_partition_is_read_directly_and_counted_exactly(kafka_bootstrap: str) -> None:
    settings = await prepare_topics(isolated_env(kafka_bootstrap, 2, MONITORS_ENV))
    stream = generate(MONITORS, time.time(), 3_000, seed=91)
    await publish(kafka_bootstrap, settings.events_topic, stream.messages)

    replica = Replica(settings.monitors)
    outcomes: list[str] = []

    async def send(topic: str, key: bytes | None, value: bytes, partition: int | None) -> Any:
        if topic == settings.state_topic:  # applied as the state log would hand it back
            outcomes.append(replica.apply(decode_delta(value), time.time()))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    reader = RangeReader(lambda: client_options(settings, kafka_bootstrap))
    ingester = Ingester(settings, lambda: replica, send, reader)

    async def written(partitions: list[int]) -> dict[int, int]:
        return {p: ingester.last_written(p) for p in partitions}

    async def ingest(partition: int, records: list[Any]) -> None:
        await ingester.ingest([SourceMessage(partition, r.offset, r.timestamp, r.value) for r in records])

    guard = StallGuard(reader, settings.events_topic, "events", written, ingest, stall_s=5.0, max_messages=2)
    try:
        ends = await reader.end_offsets(settings.events_topic, [0, 1])
        # Several reads of at least one partition (how the nodes fall on the partitions varies by run).
        assert sum(ends.values()) == len(stream.messages) and max(ends.values()) > 2
        await guard.check([0, 1], now_s=100.0)  # behind: the clock starts
        await guard.check([0, 1], now_s=104.0)  # not yet stalled for 5 s
        assert guard.read_directly == 0 and not outcomes
        now = 105.0
        while guard.read_directly < len(stream.messages) and now < 1000:
            await guard.check([0, 1], now_s=now)
            now += 5.0
        assert guard.read_directly == len(stream.messages)
        assert set(outcomes) == {"applied"}
        assert {p: replica.last_applied(p) for p in (0, 1)} == {p: end - 1 for p, end in ends.items()}
        await guard.check([0, 1], now_s=now + 50)  # caught up: nothing more is read
        assert guard.read_directly == len(stream.messages)
    finally:
        await reader.close()

    assert_answers(replica, settings, stream, seed=92)


def assert_answers(replica: Replica, settings: Settings, stream: Stream, seed: int) -> None:
    """200 random requests answered from ``replica`` as the oracle answers them."""
    catalog = SeriesCatalog(())
    mismatches = []
    for request, expected in random_requests(stream, 200, seed=seed):
        parsed = parse_request({**request, "id": "1"}, settings.monitors, catalog, settings.longest_span_s)
        now_s = time.time()
        got = answer(parsed, replica.counts, replica.gauge, now_s)  # type: ignore[arg-type]
        if got != expected(now_s):
            mismatches.append((request, got, expected(now_s)))
    assert not mismatches, mismatches[:3]


async def manager_with(reader: RangeReader, settings: Settings) -> FleetStateManager:
    """The fleet table's store without Faust around it (Faust is what stalls)."""
    table = SimpleNamespace(
        name="fleet",
        loop=asyncio.get_running_loop(),
        changelog_topic=SimpleNamespace(get_topic_name=lambda: settings.state_topic),
    )
    manager = FleetStateManager(table)  # type: ignore[arg-type]
    manager.new_replica = lambda: Replica(settings.monitors)
    manager.reader = reader
    return manager


async def test_state_deltas_faust_never_delivered_are_read_directly_and_applied(kafka_bootstrap: str) -> None:
    """A replica that does not get a partition's last deltas sees no gap (nothing after them shows
    one missing): the state guard reads them and the replica answers like the oracle."""
    settings = await prepare_topics(isolated_env(kafka_bootstrap, 2, MONITORS_ENV))
    stream = generate(MONITORS, time.time(), 3_000, seed=93)
    await publish(kafka_bootstrap, settings.events_topic, stream.messages)
    reader = RangeReader(lambda: client_options(settings, kafka_bootstrap))
    producer = AIOKafkaProducer(**client_options(settings, kafka_bootstrap))
    await producer.start()
    try:

        async def send(topic: str, key: bytes | None, value: bytes, partition: int | None) -> Any:
            return await producer.send(topic, value, key=key, partition=partition)

        unused = Replica(settings.monitors)  # the ingester's resume point: none, every delta is new
        ingester = Ingester(settings, lambda: unused, send, reader)
        for partition in (0, 1):  # every message a delta of its own, into the real state topic
            for record in await reader.read(settings.events_topic, partition, 0, 10**9):
                await ingester.ingest([SourceMessage(partition, record.offset, record.timestamp, record.value)])
        await producer.flush()
    finally:
        await producer.stop()

    manager = await manager_with(reader, settings)
    ends = await reader.end_offsets(settings.state_topic, [0, 1])
    # Faust delivered all but each partition's last three deltas (fewer where a partition has fewer:
    # how the stream's nodes fall on the two partitions varies from run to run).
    withheld = {partition: min(3, end) for partition, end in ends.items()}
    assert sum(withheld.values()) >= 4
    for partition, end in ends.items():
        await manager.apply_read(
            partition, await reader.read(settings.state_topic, partition, 0, end - withheld[partition])
        )
    guard = StallGuard(
        reader, settings.state_topic, "state", manager.applied_through, manager.apply_read, stall_s=5.0, max_messages=2
    )
    try:
        await guard.check([0, 1], now_s=100.0)
        await guard.check([0, 1], now_s=104.0)
        assert guard.read_directly == 0
        for now in (105.0, 110.0, 115.0, 120.0):
            await guard.check([0, 1], now_s=now)
        assert guard.read_directly == sum(withheld.values())
        assert await manager.applied_through([0, 1]) == {p: end - 1 for p, end in ends.items()}
        assert manager.health.gaps == 0 and manager.health.deltas_duplicate == 0
    finally:
        await reader.close()
    assert_answers(manager.replica, settings, stream, seed=94)
