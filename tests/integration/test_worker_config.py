"""The worker's start-up checks against the real broker: the state log must cover the monitors."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from harness import WorkerProcess, isolated_env, prepare_topics
from test_pipeline_e2e import start_workers, stop_all

pytestmark = pytest.mark.integration


async def retention_ms(bootstrap: str, topic: str) -> str:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (response,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        (resource,) = response.to_object()["resources"]
        return next(e["config_value"] for e in resource["config_entries"] if e["config_names"] == "retention.ms")
    finally:
        await admin.close()


async def test_a_state_topic_shorter_than_the_monitors_is_raised(kafka_bootstrap: str) -> None:
    env = isolated_env(kafka_bootstrap, 2, "60,1 86400,2")  # two days of windows
    settings = await prepare_topics(env)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:  # as if created by hand, or before the monitors grew: one hour
        await admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, settings.state_topic, {"retention.ms": "3600000"})]
        )
    finally:
        await admin.close()
    for _ in range(50):  # the broker applies a config change asynchronously
        if await retention_ms(kafka_bootstrap, settings.state_topic) == "3600000":
            break
        await asyncio.sleep(0.1)
    assert await retention_ms(kafka_bootstrap, settings.state_topic) == "3600000"
    (worker,) = await start_workers(env, 1)
    try:
        needed = str((2 * 86400 + 3600) * 1000)
        assert await retention_ms(kafka_bootstrap, settings.state_topic) == needed
        line = next(ln for ln in worker.lines if "raised retention.ms" in ln)
        assert "WARNING" in line and f"from 3600000 to {needed}" in line
    finally:
        stop_all([worker])


async def test_a_worker_with_other_monitors_than_the_running_group_refuses_to_start(kafka_bootstrap: str) -> None:
    env = isolated_env(kafka_bootstrap, 2, "300,12 60,30")
    await prepare_topics(env)
    (first,) = await start_workers(env, 1)
    try:
        await first.wait_for_log("owning events partitions")
        other = WorkerProcess({**env, "INBOUND_AUDIT_MONITORS": "60,1"}, name="other monitors").start()
        assert other.proc is not None
        assert await asyncio.to_thread(other.proc.wait, 60) == 2
        other.stop()  # joins the log pump
        refusal = [ln for ln in other.lines if "differs from the running worker group" in ln]
        assert len(refusal) == 1, other.lines
        assert "INBOUND_AUDIT_MONITORS='60,1'" in refusal[0] and "'60,30 300,12'" in refusal[0]
        # The same monitors in another order are the same monitors: that worker joins.
        same = WorkerProcess({**env, "INBOUND_AUDIT_MONITORS": "60,30 300,12"}, name="same monitors").start()
        try:
            await same.wait_ready()
        finally:
            same.stop()
    finally:
        stop_all([first])
    # A group stopped on purpose may come back with new monitors.
    (changed,) = await start_workers({**env, "INBOUND_AUDIT_MONITORS": "60,1"}, 1)
    stop_all([changed])
