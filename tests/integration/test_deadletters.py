"""``deadletters --last N`` prints exactly N letters from a topic written in transactions, as the
worker writes it: commit markers and rolled-back letters take offsets but are not letters."""

from __future__ import annotations

import asyncio
import uuid

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from harness import create_topics
from usage import run_cli

pytestmark = pytest.mark.integration

COMMITTED = 7


async def write_letters(bootstrap: str, topic: str) -> None:
    """Letters 1..COMMITTED, each in its own committed transaction, and a rolled-back one between each."""
    await create_topics(bootstrap, {topic: 1})
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"{topic}.writer")
    await producer.start()
    try:
        for i in range(1, COMMITTED + 1):
            for detail, commit in ((f"rolled back {i}", False), (f"letter {i}", True)):
                await producer.begin_transaction()
                letter = {"reason": "invalid_ip", "detail": detail, "source_topic": "t", "partition": 0, "offset": i}
                await producer.send_and_wait(topic, orjson.dumps(letter))
                await (producer.commit_transaction() if commit else producer.abort_transaction())
    finally:
        await producer.stop()


@pytest.fixture(scope="module")
async def letters_env(kafka_bootstrap: str) -> dict[str, str]:
    topic = f"t{uuid.uuid4().hex[:10]}.deadletter"
    await write_letters(kafka_bootstrap, topic)
    return {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "INBOUND_AUDIT_DEADLETTER_TOPIC": topic}


def details(stdout: str) -> list[str]:
    return [line.split(" ", 2)[2] for line in stdout.splitlines()]


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        (["--last", "1"], [7]),
        (["--last", "5"], [3, 4, 5, 6, 7]),
        (["--last", str(COMMITTED)], list(range(1, COMMITTED + 1))),
        (["--last", "100"], list(range(1, COMMITTED + 1))),
        (["--from-beginning"], list(range(1, COMMITTED + 1))),
    ],
)
async def test_last_n_prints_exactly_n_committed_letters(
    letters_env: dict[str, str], args: list[str], shown: list[int]
) -> None:
    done = await asyncio.to_thread(run_cli, letters_env, "deadletters", *args)
    assert done.returncode == 0, done.stderr
    assert details(done.stdout) == [f"letter {i}" for i in shown]
    assert all(line.split()[1] == "invalid_ip" for line in done.stdout.splitlines())
