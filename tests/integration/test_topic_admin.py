"""``ensure_topics`` against the real local broker: creates, then leaves alone and reports."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from pipeline.kafka.topic_admin import ensure_topics
from pipeline.kafka.topic_specs import topic_specs, topic_specs_by_role
from pipeline.settings import Settings, load_settings

pytestmark = pytest.mark.integration


@pytest.fixture
async def admin(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaAdminClient]:
    client = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await client.start()
    yield client
    await client.close()


@pytest.fixture
async def unique_settings(
    admin: AIOKafkaAdminClient, unique_topic_prefix: str
) -> AsyncIterator[Callable[..., Settings]]:
    """Makes settings whose five topics no other test (or earlier run) uses; deletes them afterwards."""
    made: list[Settings] = []

    def make(**env: str) -> Settings:
        prefix = f"{unique_topic_prefix}.{len(made)}"
        roles = ("EVENTS", "REQUESTS", "DEADLETTER", "WINDOWS", "STATE")
        names = {f"INBOUND_AUDIT_{role}_TOPIC": f"{prefix}.{role.lower()}" for role in roles}
        made.append(load_settings({**names, **env}))
        return made[-1]

    yield make
    if made:
        await admin.delete_topics([s.name for settings in made for s in topic_specs(settings)])


async def _configs(admin: AIOKafkaAdminClient, name: str, keys: list[str]) -> dict[str, str]:
    resource = ConfigResource(ConfigResourceType.TOPIC, name, dict.fromkeys(keys, ""))
    (response,) = await admin.describe_configs([resource])
    (entry,) = response.to_object()["resources"]
    return {e["config_names"]: e["config_value"] for e in entry["config_entries"]}


async def _partitions(admin: AIOKafkaAdminClient, name: str) -> int:
    (topic,) = await admin.describe_topics([name])
    return len(topic["partitions"])


async def test_creates_every_topic_then_reports_them_ok(
    kafka_bootstrap: str, admin: AIOKafkaAdminClient, unique_settings: Callable[..., Settings]
) -> None:
    settings = unique_settings(INBOUND_AUDIT_PARTITIONS="3", INBOUND_AUDIT_MONITORS="60,1 600,3")
    specs = topic_specs(settings)

    first = await ensure_topics(settings, kafka_bootstrap)
    assert [s.name for s in first.created] == [s.name for s in specs]
    assert first.ok == () and first.mismatches == ()

    for spec in specs:
        assert await _partitions(admin, spec.name) == spec.partitions
        assert await _configs(admin, spec.name, list(spec.configs)) == spec.configs
    state = await _configs(admin, settings.state_topic, ["retention.ms"])
    assert state == {"retention.ms": str((1800 + 3600) * 1000)}

    second = await ensure_topics(settings, kafka_bootstrap)
    assert second.created == () and second.mismatches == ()
    assert [s.name for s in second.ok] == [s.name for s in specs]


async def test_existing_topic_that_differs_is_reported_and_left_alone(
    kafka_bootstrap: str, admin: AIOKafkaAdminClient, unique_settings: Callable[..., Settings]
) -> None:
    settings = unique_settings(INBOUND_AUDIT_PARTITIONS="4")
    specs = topic_specs_by_role(settings)
    state, events = specs["state"], specs["events"]
    wrong_timestamps = {**events.configs, "message.timestamp.type": "CreateTime"}
    response = await admin.create_topics(
        [
            NewTopic(state.name, 2, 1, topic_configs={**state.configs, "retention.ms": "3600000"}),
            NewTopic(events.name, 4, 1, topic_configs=wrong_timestamps),
        ]
    )
    assert all(e["error_code"] == 0 for e in response.to_object()["topic_errors"])

    report = await ensure_topics(settings, kafka_bootstrap)

    expected_retention = state.configs["retention.ms"]
    assert sorted(report.mismatches) == sorted(
        [
            f"{state.name}: partitions is 2, expected 4",
            f"{state.name}: retention.ms is 3600000, expected {expected_retention}",
            f"{events.name}: message.timestamp.type is CreateTime, expected LogAppendTime",
        ]
    )
    assert {s.name for s in report.created} == {s.name for s in specs.values()} - {state.name, events.name}
    assert report.ok == ()
    assert f"MISMATCH {state.name}: partitions is 2, expected 4" in report.lines()
    assert await _partitions(admin, state.name) == 2
    assert await _configs(admin, state.name, ["retention.ms"]) == {"retention.ms": "3600000"}
