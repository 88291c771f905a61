"""Reply topics do not pile up: the broker's topics are the same before and after many CLI and
client calls, and one process shares one topic when its clients ask for it."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import time
import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from harness import REPO
from usage import run_cli, running_worker

from pipeline.clients.client import AuditClient, SyncAuditClient

pytestmark = pytest.mark.integration

#: Run in a child process: clients with the shared topic, sequential and concurrent; prints the topics used.
SHARED = """
import asyncio
from pipeline.clients.client import AuditClient, SyncAuditClient
from pipeline.settings import load_settings

settings = load_settings()
used = []
for _ in range(4):
    with SyncAuditClient(settings, shared_reply_topic=True, cluster=True) as client:
        client.connections("60,1", "192.0.2.0/24")
        used.append(client.client.reply_topic)


async def concurrently():
    clients = [AuditClient(settings, shared_reply_topic=True, cluster=True) for _ in range(3)]
    for client in clients:
        await client.start()
    await asyncio.gather(*(client.connections("60,1", "192.0.2.0/24") for client in clients))
    used.extend(client.reply_topic for client in clients)
    for client in clients:
        await client.close()

asyncio.run(concurrently())
print("\\n".join(used))
"""


async def topics_with(bootstrap: str, prefix: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return {topic for topic in await admin.list_topics() if topic.startswith(prefix)}
    finally:
        await admin.close()


async def settled_topics(bootstrap: str, prefix: str, want: int, timeout_s: float = 15.0) -> set[str]:
    """The topics with ``prefix`` once there are ``want`` of them (deletion takes a moment to show)."""
    deadline = time.monotonic() + timeout_s
    while len(found := await topics_with(bootstrap, prefix)) != want and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    return found


async def test_many_cli_and_client_calls_leave_no_reply_topic(kafka_bootstrap: str) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}.replies"
    async with running_worker(kafka_bootstrap, "60,1") as running:
        env = {**running.env, "INBOUND_AUDIT_REPLY_TOPIC_PREFIX": prefix}
        settings = dataclasses.replace(running.settings, reply_topic_prefix=prefix)
        before = await topics_with(kafka_bootstrap, "")
        assert not await topics_with(kafka_bootstrap, prefix)

        calls = [
            ["query", "connections", "--monitor", "60,1", "--cidr", "192.0.2.0/24"],
            ["show-ip", "192.0.2.0/24", "--compact"],
            ["lua", str(REPO / "examples" / "policy.lua"), "--ip", "192.0.2.66", "--node", "mta-1"],
        ]
        for args in calls * 2:
            done = await asyncio.to_thread(run_cli, env, *args)
            assert done.returncode == 0, (args, done.stderr)

        async with AuditClient(settings, cluster=True) as client:
            assert await client.connections("60,1", "192.0.2.0/24") == 0
            assert await topics_with(kafka_bootstrap, prefix) == {client.reply_topic}  # the test sees them
        for _ in range(3):
            async with AuditClient(settings, cluster=True) as client:
                await client.connections("60,1", "192.0.2.0/24")

        def sync_calls() -> None:
            for _ in range(2):
                with SyncAuditClient(settings, cluster=True) as client:
                    client.connections("60,1", "192.0.2.0/24")

        await asyncio.to_thread(sync_calls)

        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            SHARED,
            cwd=REPO,
            env={**os.environ, **env},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(child.communicate(), 120)
        assert child.returncode == 0, err.decode()
        used = set(out.decode().split())
        assert len(used) == 1 and next(iter(used)).startswith(f"{prefix}."), used

        assert await settled_topics(kafka_bootstrap, prefix, 0) == set()
        after = await topics_with(kafka_bootstrap, "")
        assert not {topic for topic in after - before if topic.startswith(prefix)}
