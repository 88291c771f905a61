"""The worker's watchdog asks a live broker about one topic, and leaves its client as it was."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaProducer

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


async def test_no_known_broker_is_no_answer(kafka_bootstrap: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    await producer.stop()
    producer.client.cluster._brokers.clear()  # noqa: SLF001 - a client that lost every broker
    assert not await broker_answers(producer.client, "inbound-audit.requests")
