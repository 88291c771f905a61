"""Kafka calls retried while the broker is away: only the listed errors, up to the limit, with one
log line; and a client's first connection (a worker starting during a broker restart crashed
without it), which then fails as aiokafka does."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from aiokafka import AIOKafkaClient
from aiokafka.errors import KafkaConnectionError
from web_client import free_port

from pipeline.kafka.retry import patient_bootstrap, retry_for


async def test_bootstrap_retries_until_its_limit_then_raises(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="pipeline.kafka.retry")
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


async def test_retry_for_returns_once_an_attempt_succeeds_and_passes_other_errors_at_once() -> None:
    calls: list[int] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise KafkaConnectionError("away")
        return "done"

    assert await retry_for(flaky, (KafkaConnectionError,), 5.0, every_s=0.01) == "done"
    assert len(calls) == 3

    async def broken() -> str:
        calls.append(1)
        raise ValueError("not a Kafka outage")

    calls.clear()
    with pytest.raises(ValueError):
        await retry_for(broken, (KafkaConnectionError,), 5.0, every_s=0.01)
    assert len(calls) == 1
