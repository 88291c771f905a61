"""A worker joining the group does not make the others answer their requests again.

Faust forgets the acked offsets of revoked partitions before its revoke handler commits them, so
every partition went back to its last periodic commit (up to a second old) and everything handled
since was handled again: 28 and 31 repeated replies at 50 requests/s when a third worker joined, 5
and 6 when one of them was then killed. ``pipeline/app/transport.py`` commits the revoked
partitions first.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import orjson
import pytest
from harness import WorkerProcess, isolated_env, prepare_topics, reply_channel
from test_pipeline_e2e import MONITORS_ENV, start_workers, stop_all

pytestmark = pytest.mark.integration

RATE_PER_S = 50
PARTITIONS = 6


async def test_a_join_repeats_no_reply(kafka_bootstrap: str) -> None:
    env = isolated_env(kafka_bootstrap, PARTITIONS, MONITORS_ENV)
    settings = await prepare_topics(env)
    workers = await start_workers(env, 2)
    reply_topic = f"{settings.requests_topic}.replies-{uuid.uuid4().hex[:8]}"
    producer, consumer = await reply_channel(settings.bootstrap, reply_topic, 20)
    replies = Counter[str]()
    sent: dict[str, str] = {}  # request id -> the phase it was sent in
    phase = "steady"

    async def read() -> None:
        while True:
            for records in (await consumer.getmany(timeout_ms=100)).values():
                replies.update(orjson.loads(r.value)["id"] for r in records)

    async def send() -> None:
        while True:
            request_id = uuid.uuid4().hex
            sent[request_id] = phase
            request = {"id": request_id, "reply_to": reply_topic, "op": "connections", "monitor": "60,1"}
            await producer.send(settings.requests_topic, orjson.dumps({**request, "ip": "192.0.2.1", "cluster": True}))
            await asyncio.sleep(1 / RATE_PER_S)

    tasks = [asyncio.create_task(read()), asyncio.create_task(send())]
    joiner: WorkerProcess | None = None
    try:
        await asyncio.sleep(5)
        phase = "join"
        joiner = WorkerProcess(env, name="joiner").start()
        await joiner.wait_ready()
        await asyncio.sleep(5)
        tasks[1].cancel()
        for _ in range(100):  # every request answered, within 10 s
            if all(replies[r] for r in sent):
                break
            await asyncio.sleep(0.1)
    finally:
        for task in tasks:
            task.cancel()
        await consumer.stop()
        await producer.stop()
        stop_all(workers + ([joiner] if joiner else []))
    joined = [r for r, p in sent.items() if p == "join"]
    assert len(joined) > 5 * RATE_PER_S, "too few requests during the join to show anything"
    assert [r for r in sent if not replies[r]] == []
    repeated = sum(replies[r] - 1 for r in joined)
    assert repeated == 0, f"{repeated} of {len(joined)} requests sent during the join were answered twice"
