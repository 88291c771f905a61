"""The local Kafka is a real broker: bytes round-trip exactly, and it restarts from the jar cache."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from harness import create_topics

from pipeline.errors import LocalKafkaError
from pipeline.kafka.local_kafka import ensure_local_kafka, local_kafka_running, reset_local_kafka, stop_local_kafka
from pipeline.settings import Settings

pytestmark = pytest.mark.integration

RESTART_PORT = 19192  # not the session broker's 19092/19093, so this test cannot disturb it

RECORDS: list[tuple[bytes | None, bytes]] = [
    (b"key-1", bytes(range(256))),
    (b"\x00\xff binary key", b"\x00\x00\xff\xfe\r\n\x1a"),
    (None, b""),
    (b"utf-8 \xc3\xa9", '{"ip": "2001:db8::1", "note": "é"}'.encode()),
]


async def test_records_round_trip_byte_for_byte(kafka_bootstrap: str, unique_topic_prefix: str) -> None:
    topic = f"{unique_topic_prefix}.roundtrip"
    await create_topics(kafka_bootstrap, {topic: 1})

    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in RECORDS:
            await producer.send_and_wait(topic, value=value, key=key)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=f"{unique_topic_prefix}.group",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        received: list[tuple[bytes | None, bytes | None]] = []
        async with asyncio.timeout(30):
            while len(received) < len(RECORDS):
                batches = await consumer.getmany(timeout_ms=500)
                received += [(r.key, r.value) for records in batches.values() for r in records]
    finally:
        await consumer.stop()
    assert received == RECORDS


def _fake_mvn(directory: Path, marker: Path) -> None:
    """A ``mvn`` that records being called and fails, so a cached start provably skips Maven."""
    directory.mkdir()
    script = directory / "mvn"
    script.write_text(f"#!/bin/sh\ntouch '{marker}'\necho 'fake mvn: must not be called' >&2\nexit 97\n")
    script.chmod(0o755)


def test_start_stop_start_reuses_the_jar_cache(
    tmp_path: Path, home_with_jars: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = home_with_jars
    monkeypatch.delenv("INBOUND_AUDIT_KAFKA_CONTROLLER_PORT", raising=False)
    settings = Settings(local_kafka_port=RESTART_PORT, home_dir=home)
    try:
        assert ensure_local_kafka(settings) == f"127.0.0.1:{RESTART_PORT}"
        assert ensure_local_kafka(settings) == f"127.0.0.1:{RESTART_PORT}"  # already running: harmless
        stop_local_kafka(settings)
        assert not local_kafka_running(settings)
        stop_local_kafka(settings)  # not running: harmless

        marker = tmp_path / "mvn-was-called"
        _fake_mvn(tmp_path / "bin", marker)
        monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
        assert ensure_local_kafka(settings) == f"127.0.0.1:{RESTART_PORT}"
        assert local_kafka_running(settings)
        assert not marker.exists()
        assert (home / f"broker-{RESTART_PORT}" / "data" / "meta.properties").is_file()

        with pytest.raises(LocalKafkaError, match="is running: stop it before a reset"):
            reset_local_kafka(settings)
        assert local_kafka_running(settings)
        stop_local_kafka(settings)
        reset_local_kafka(settings)
        assert not (home / f"broker-{RESTART_PORT}").exists()
        assert any(home.glob("kafka-*"))  # the jar cache stays
    finally:
        stop_local_kafka(settings)
