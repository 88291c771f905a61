"""Integration-test harness: real worker processes, a request client, publishing helpers.

Every test gets its own topic names and consumer groups (``isolated_env``) so tests share one
broker without seeing each other's data.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from pipeline.kafka.local_kafka import (
    ensure_local_kafka,
    local_kafka_running,
    reset_local_kafka,
    stop_local_kafka,
)
from pipeline.kafka.topic_admin import ensure_topics
from pipeline.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
#: Workers' replica snapshots during a test session; removed when the session ends (conftest).
SNAPSHOT_ROOT = Path(tempfile.gettempdir()) / f"inbound-audit-test-snapshots-{os.getpid()}"
#: The test broker's port (its controller listens on the next one), apart from a developer's 9092.
TEST_KAFKA_PORT = 19092


@contextmanager
def kafka_for_tests(settings: Settings) -> Iterator[str]:
    """``settings``' Kafka when it names one, else the test broker: started if it is not running,
    and then stopped again afterwards (one that was already running is left running).

    A test broker started here starts from empty data and leaves none behind: thousands of topics
    left by earlier runs made its start-up take longer than deploy/kafka waits (74 s to load 6,036
    partition logs)."""
    if settings.bootstrap_servers:
        yield settings.bootstrap_servers
        return
    local = Settings(local_kafka_port=TEST_KAFKA_PORT, home_dir=settings.home_dir)
    already_running = local_kafka_running(local)
    if not already_running:
        reset_local_kafka(local)
    bootstrap = ensure_local_kafka(local)
    try:
        yield bootstrap
    finally:
        if not already_running:
            stop_local_kafka(local)
            reset_local_kafka(local)


def isolated_env(bootstrap: str, partitions: int, monitors: str, **extra: str) -> dict[str, str]:
    """Environment for a worker (and for ``load_settings``) with topics unique to one test."""
    tag = uuid.uuid4().hex[:10]
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "INBOUND_AUDIT_MONITORS": monitors,
        "INBOUND_AUDIT_PARTITIONS": str(partitions),
        "INBOUND_AUDIT_EVENTS_TOPIC": f"t{tag}.events",
        "INBOUND_AUDIT_REQUESTS_TOPIC": f"t{tag}.requests",
        "INBOUND_AUDIT_DEADLETTER_TOPIC": f"t{tag}.deadletter",
        "INBOUND_AUDIT_WINDOWS_TOPIC": f"t{tag}.windows",
        "INBOUND_AUDIT_STATE_TOPIC": f"t{tag}.state",
        "INBOUND_AUDIT_SERIES_TOPIC": f"t{tag}.series",
        "INBOUND_AUDIT_GROUP_ID": f"t{tag}",
        "INBOUND_AUDIT_SNAPSHOT_DIR": str(SNAPSHOT_ROOT / tag),
        "INBOUND_AUDIT_WEB_PORT": "0",  # several workers per host: no web server unless a test asks
    }
    env.update(extra)
    return env


async def prepare_topics(env: dict[str, str]) -> Settings:
    settings = load_settings(env)
    await ensure_topics(settings, settings.bootstrap)
    return settings


class WorkerProcess:
    """``inbound-audit worker`` in a child process, with its log captured for readiness checks."""

    def __init__(self, env: dict[str, str], name: str = "worker", cwd: Path = REPO) -> None:
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.name = name
        self.cwd = cwd  # another checkout runs that checkout's worker (benchmarks compare revisions)
        self.lines: list[str] = []
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> WorkerProcess:
        self.lines = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "worker"],
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()
        return self

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip())

    def log_has(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    async def wait_for_log(self, text: str, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.log_has(text):
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited {self.proc.returncode}:\n" + self.why_it_ended())
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: no {text!r} in log:\n" + "\n".join(self.lines[-30:]))
            await asyncio.sleep(0.1)

    def why_it_ended(self) -> str:
        """The log's first traceback (where a crash starts; the tail is mostly the shutdown) and its tail."""
        first = next((i for i, line in enumerate(self.lines) if "Traceback (most recent call last)" in line), None)
        head = self.lines[first : first + 40] + ["..."] if first is not None else []
        return "\n".join(head + self.lines[-30:])

    async def wait_ready(self, timeout_s: float = 60.0) -> None:
        await self.wait_for_log("answering queries", timeout_s)

    def send(self, sig: int) -> None:
        """Send ``sig`` without waiting for an exit (SIGSTOP, SIGCONT)."""
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None:
            self._pump_thread.join(timeout=5)  # the log up to the exit, for assertions


async def publish(bootstrap: str, topic: str, messages: Iterable[tuple[bytes | None, bytes]]) -> int:
    """Send (key, value) messages and wait for all acks; returns how many were sent."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_request_size=4 << 20)
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key) for key, value in messages]
        await asyncio.gather(*futures)
        return len(futures)
    finally:
        await producer.stop()


async def create_topics(bootstrap: str, partitions: dict[str, int]) -> None:
    """New topics (name -> partition count), replication 1, on the test broker."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, n, 1) for name, n in partitions.items()])
    finally:
        await admin.close()


async def reply_channel(
    bootstrap: str, reply_topic: str, fetch_max_wait_ms: int, **producer_options: Any
) -> tuple[AIOKafkaProducer, AIOKafkaConsumer]:
    """A new one-partition reply topic, a zero-linger request producer, and a consumer reading
    the reply topic from its start (both started)."""
    await create_topics(bootstrap, {reply_topic: 1})
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, **producer_options)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, fetch_max_wait_ms=fetch_max_wait_ms)
    await producer.start()
    await consumer.start()
    tp = TopicPartition(reply_topic, 0)
    consumer.assign([tp])
    await consumer.seek_to_beginning(tp)
    return producer, consumer


class Requester:
    """Sends audit requests and collects the replies from a private reply topic by id."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.reply_topic = f"{settings.requests_topic}.replies-{uuid.uuid4().hex[:8]}"
        self.replies: dict[str, dict[str, Any]] = {}
        self._waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}

    async def __aenter__(self) -> Requester:
        self.producer, self.consumer = await reply_channel(self.settings.bootstrap, self.reply_topic, 20)
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)
        await self.consumer.stop()
        await self.producer.stop()

    async def _read(self) -> None:
        while True:
            batches = await self.consumer.getmany(timeout_ms=100)
            for records in batches.values():
                for record in records:
                    reply = orjson.loads(record.value)
                    key = record.key.decode() if record.key else str(reply.get("id"))
                    self.replies.setdefault(key, reply)
                    waiter = self._waiters.pop(key, None)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(reply)

    async def send_raw(self, value: bytes) -> None:
        await self.producer.send_and_wait(self.settings.requests_topic, value)

    async def ask(self, request: dict[str, Any], timeout_s: float = 30.0) -> dict[str, Any]:
        request = {"id": uuid.uuid4().hex, "reply_to": self.reply_topic, **request}
        waiter = asyncio.get_running_loop().create_future()
        self._waiters[request["id"]] = waiter
        await self.producer.send_and_wait(self.settings.requests_topic, orjson.dumps(request))
        return await asyncio.wait_for(waiter, timeout_s)


async def read_topic(bootstrap: str, topic: str, min_count: int = 0, timeout_s: float = 30.0) -> list[Any]:
    """All records of ``topic`` from the beginning (waiting until at least ``min_count``)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",  # what a rolled-back batch wrote does not count
    )
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        for _ in range(50):
            if parts:
                break
            await asyncio.sleep(0.1)
            await consumer._client.force_metadata_update()  # noqa: SLF001
            parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        out: list[Any] = []
        deadline = time.monotonic() + timeout_s
        ends = await consumer.end_offsets(tps)
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                out.extend(records)
            positions = {tp: await consumer.position(tp) for tp in tps}
            if len(out) >= min_count and all(positions[tp] >= ends[tp] for tp in tps):
                if len(out) >= min_count:
                    break
            if len(out) < min_count:
                ends = await consumer.end_offsets(tps)
        return out
    finally:
        await consumer.stop()
