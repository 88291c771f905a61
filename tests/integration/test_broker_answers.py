"""The worker's watchdog asks a live broker about one topic, and leaves its client as it was; a
broker that went away is no answer."""

from __future__ import annotations

import time

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.structs import BrokerMetadata
from test_unreachable import free_port

from pipeline.kafka.reachability import broker_answers

pytestmark = pytest.mark.integration


async def test_a_live_broker_answers_and_the_client_is_left_alone(kafka_bootstrap: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        client = producer.client
        known = (set(client._topics), client.cluster.topics())  # noqa: SLF001 - what a refresh would ask for
        assert await broker_answers(client, "inbound-audit.requests")
        assert (set(client._topics), client.cluster.topics()) == known  # noqa: SLF001
    finally:
        await producer.stop()


async def test_a_broker_that_went_away_is_no_answer(kafka_bootstrap: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        cluster = producer.client.cluster
        (broker,) = cluster.brokers()
        await producer.client.close()  # its connections go, as when the broker stops
        cluster._brokers = {broker.nodeId: BrokerMetadata(broker.nodeId, "127.0.0.1", free_port(), None)}  # noqa: SLF001
        started = time.monotonic()
        assert not await broker_answers(producer.client, "inbound-audit.requests")
        assert time.monotonic() - started < 5.0  # refused at once, not waited out
    finally:
        await producer.stop()
