"""Without a broker, every command but ``worker`` and every client fails fast with one clear line,
and none of them starts the bundled local Kafka."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from harness import REPO
from usage import run_cli

from pipeline.clients.client import AuditClient, SyncAuditClient
from pipeline.clients.publisher import EventPublisher
from pipeline.errors import KafkaUnreachable
from pipeline.kafka.local_kafka import local_kafka_running
from pipeline.kafka.reachability import probe
from pipeline.settings import Settings

pytestmark = pytest.mark.integration

COMMANDS: list[list[str]] = [
    ["query", "connections", "--monitor", "60,1", "--ip", "192.0.2.1"],
    ["show-ip", "192.0.2.0/24"],
    ["lua", str(REPO / "examples" / "policy.lua"), "--ip", "192.0.2.1", "--node", "mta-1"],
    ["deadletters"],
    ["simulate", "--duration", "1"],
    ["topics"],
]


def free_port() -> int:
    """A port nothing listens on (the kernel's pick, so it is in the ephemeral range)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("command", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_command_fails_fast_with_one_line_and_starts_no_broker(command: list[str], home_with_jars: Path) -> None:
    port = free_port()
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": "",
        "INBOUND_AUDIT_KAFKA_PORT": str(port),
        "INBOUND_AUDIT_HOME": str(home_with_jars),
    }
    started = time.monotonic()
    done = run_cli(env, *command, timeout_s=30)
    took = time.monotonic() - started
    settings = Settings(local_kafka_port=port, home_dir=home_with_jars)
    assert not local_kafka_running(settings) and not listening(port), "a broker was started"
    assert not (home_with_jars / f"broker-{port}").exists()
    assert done.stderr == (
        f"inbound-audit: Kafka is not reachable at 127.0.0.1:{port} "
        "(start it with `make run` or set KAFKA_BOOTSTRAP_SERVERS)\n"
    )
    assert done.returncode == 2 and done.stdout == ""
    assert took < 10


async def _start_audit_client(settings: Settings) -> None:
    async with AuditClient(settings):
        pass


async def _start_sync_client(settings: Settings) -> None:
    await asyncio.to_thread(lambda: SyncAuditClient(settings).close())


async def _start_publisher(settings: Settings) -> None:
    async with EventPublisher(settings, "mta-1"):
        pass


@pytest.mark.parametrize("start", [_start_audit_client, _start_sync_client, _start_publisher])
async def test_clients_fail_fast_with_kafka_unreachable(start: Callable[[Settings], Awaitable[None]]) -> None:
    port = free_port()
    settings = Settings(bootstrap_servers=f"127.0.0.1:{port}")
    started = time.monotonic()
    with pytest.raises(KafkaUnreachable) as caught:
        await start(settings)
    assert time.monotonic() - started < 10
    assert str(caught.value) == (
        f"Kafka is not reachable at 127.0.0.1:{port} (start it with `make run` or set KAFKA_BOOTSTRAP_SERVERS)"
    )


async def test_a_self_connection_is_not_a_broker() -> None:
    """Connecting from the very port probed makes TCP connect the socket to itself (what a dead
    ephemeral port can do by chance); the probe must call that unreachable and let the port go."""
    port = free_port()
    with socket.socket() as sock:  # the kernel really does connect such a socket to itself
        sock.bind(("127.0.0.1", port))
        sock.connect(("127.0.0.1", port))
        assert sock.getsockname() == sock.getpeername()
    port = free_port()
    assert not await probe("127.0.0.1", port, local_addr=("127.0.0.1", port))
    assert not listening(port)
