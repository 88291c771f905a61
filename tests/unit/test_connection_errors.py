"""``connection_error`` turns aiokafka failures into one line naming what to fix, on loopback sockets
that misbehave on purpose (the broker-side failures are in tests/integration/test_secure_kafka.py)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, TopicAuthorizationFailedError

from pipeline.kafka.connection import connection_error
from pipeline.settings import Secret, Settings

UNREACHABLE = KafkaConnectionError("Unable to bootstrap from [...]")


@pytest.fixture
async def hanging_up() -> AsyncIterator[str]:
    """A listener that closes every connection at once, like a TLS port read by a plaintext client."""

    async def hang_up(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    server.close()
    await server.wait_closed()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_nothing_listening_names_the_bootstrap_setting() -> None:
    host = f"127.0.0.1:{_free_port()}"
    error = await connection_error(Settings(bootstrap_servers=host), UNREACHABLE)
    assert str(error) == f"nothing listens at {host}: check KAFKA_BOOTSTRAP_SERVERS"


async def test_a_dropped_connection_names_the_protocol(hanging_up: str) -> None:
    error = await connection_error(Settings(bootstrap_servers=hanging_up), UNREACHABLE)
    assert str(error) == (
        f"Kafka at {hanging_up} dropped a PLAINTEXT connection: does that port serve PLAINTEXT? "
        "check INBOUND_AUDIT_SECURITY_PROTOCOL and KAFKA_BOOTSTRAP_SERVERS"
    )


async def test_the_first_host_that_explains_the_failure_is_named(hanging_up: str) -> None:
    refused = f"127.0.0.1:{_free_port()}"
    error = await connection_error(Settings(), UNREACHABLE, f"{refused},{hanging_up}")
    assert str(error).startswith(f"nothing listens at {refused}")


async def test_an_authorization_error_names_the_user_and_the_acls() -> None:
    settings = Settings(
        bootstrap_servers="kafka:9094",
        security_protocol="SASL_SSL",
        sasl_username="mta",
        sasl_password=Secret("pw"),
    )
    error = await connection_error(settings, TopicAuthorizationFailedError("audit.state"))
    assert (
        str(error)
        == "Kafka at kafka:9094 refused user 'mta': TopicAuthorizationFailedError: audit.state: check its ACLs"
    )


async def test_any_other_error_is_one_line_with_its_name() -> None:
    error = await connection_error(Settings(bootstrap_servers="kafka:9092"), KafkaTimeoutError())
    assert str(error) == "Kafka at kafka:9092: KafkaTimeoutError"
