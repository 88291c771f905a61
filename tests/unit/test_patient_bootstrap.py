"""A client's first connection is retried for the configured time (a worker starting during a
broker restart crashed without it), with one log line, and then fails as aiokafka does."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from aiokafka import AIOKafkaClient
from aiokafka.errors import KafkaConnectionError
from web_client import free_port

from pipeline.kafka.patient_bootstrap import patient_bootstrap


async def test_bootstrap_retries_until_its_limit_then_raises(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="pipeline.kafka.patient_bootstrap")
    client = AIOKafkaClient(bootstrap_servers=f"127.0.0.1:{free_port()}")
    patient_bootstrap(client, 2.5)
    started = time.monotonic()
    with pytest.raises(KafkaConnectionError):
        await client.bootstrap()
    assert 2.5 <= time.monotonic() - started < 6
    assert len([r for r in caplog.records if "retrying for up to 2 s" in r.getMessage()]) == 1
    await client.close()


async def test_bootstrap_keeps_trying_until_something_listens() -> None:
    """A listener that appears after the first failures is still tried: the client kept at it."""
    port = free_port()
    client = AIOKafkaClient(bootstrap_servers=f"127.0.0.1:{port}")
    patient_bootstrap(client, 10.0)
    attempt = asyncio.create_task(client.bootstrap())
    await asyncio.sleep(1.5)
    assert not attempt.done()
    accepted = asyncio.Event()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set()
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", port)
    try:
        await asyncio.wait_for(accepted.wait(), 5.0)
    finally:
        attempt.cancel()
        server.close()
        await client.close()
