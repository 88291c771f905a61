"""Create the topics of ``topics/topics.toml`` and report existing ones that differ.

Existing topics are never altered: shrinking partitions is impossible, and changing retention or
the timestamp type of a live topic is an operator's decision, so a difference is only reported
(``inbound-audit topics`` exits 1) and the operator fixes it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code

from pipeline.errors import ConfigError, InboundAuditError
from pipeline.kafka.connection import client_options, connection_error
from pipeline.kafka.topic_specs import TopicSpec, topic_specs
from pipeline.settings import Settings

__all__ = ["TopicReport", "ensure_state_retention", "ensure_topics"]


@dataclass(frozen=True)
class TopicReport:
    """What ``ensure_topics`` found; ``mismatches`` are lines like ``topic: what is X, expected Y``."""

    created: tuple[TopicSpec, ...]
    ok: tuple[TopicSpec, ...]
    mismatches: tuple[str, ...]

    def lines(self) -> list[str]:
        """The ``topics`` command's output, one line per topic (several for a topic that differs)."""
        return (
            [f"created {_sized(s)}" for s in self.created]
            + [f"ok {_sized(s)}" for s in self.ok]
            + [f"MISMATCH {line}" for line in self.mismatches]
        )


def _sized(spec: TopicSpec) -> str:
    return f"{spec.name} ({spec.partitions} partition{'' if spec.partitions == 1 else 's'})"


class _NotYetVisible(InboundAuditError):
    """A retriable broker answer, e.g. a topic created a moment ago not yet in its metadata."""


def _raise_for(error_code: int, what: str, message: str | None) -> None:
    if error_code:
        error = for_code(error_code)
        kind = _NotYetVisible if error.retriable else InboundAuditError
        raise kind(f"{what}: {error.__name__}{f' ({message})' if message else ''}")


async def _differences_when_visible(admin: AIOKafkaAdminClient, specs: list[TopicSpec]) -> dict[str, list[str]]:
    """``_differences``, retried for a few seconds while the broker's metadata catches up."""
    for _ in range(40):
        try:
            return await _differences(admin, specs)
        except _NotYetVisible:
            await asyncio.sleep(0.25)
    return await _differences(admin, specs)


async def _create(admin: AIOKafkaAdminClient, specs: list[TopicSpec]) -> set[str]:
    """Create ``specs``; return the names another process created first (to be compared instead)."""
    response = await admin.create_topics(
        [NewTopic(s.name, s.partitions, s.replication_factor, topic_configs=s.configs) for s in specs]
    )
    raced: set[str] = set()
    for entry in response.to_object()["topic_errors"]:
        if for_code(entry["error_code"]) is TopicAlreadyExistsError:
            raced.add(entry["topic"])
        else:
            _raise_for(entry["error_code"], f"cannot create topic {entry['topic']}", entry.get("error_message"))
    return raced


async def _differences(admin: AIOKafkaAdminClient, specs: list[TopicSpec]) -> dict[str, list[str]]:
    """Per topic name, how the broker's topic differs from its spec (empty list: it matches)."""
    found: dict[str, list[str]] = {s.name: [] for s in specs}
    wanted = {s.name: s for s in specs}
    for topic in await admin.describe_topics([s.name for s in specs]):
        name = topic["topic"]
        _raise_for(topic["error_code"], f"cannot describe topic {name}", None)
        spec = wanted[name]
        partitions = len(topic["partitions"])
        if partitions != spec.partitions:
            found[name].append(f"partitions is {partitions}, expected {spec.partitions}")
        replicas = sorted({len(p["replicas"]) for p in topic["partitions"]})
        if replicas != [spec.replication_factor]:
            shown = "/".join(map(str, replicas))
            found[name].append(f"replication factor is {shown}, expected {spec.replication_factor}")
    resources = [ConfigResource(ConfigResourceType.TOPIC, s.name, dict(s.configs)) for s in specs]
    for response in await admin.describe_configs(resources):
        for resource in response.to_object()["resources"]:
            name = resource["resource_name"]
            _raise_for(resource["error_code"], f"cannot describe configs of {name}", resource["error_message"])
            actual = {e["config_names"]: e["config_value"] for e in resource["config_entries"]}
            for key, expected in wanted[name].configs.items():
                if actual.get(key) != expected:
                    found[name].append(f"{key} is {actual.get(key, 'not set')}, expected {expected}")
    return found


async def ensure_topics(settings: Settings, bootstrap: str) -> TopicReport:
    """Create missing topics; compare existing ones with their spec without changing them."""
    specs = topic_specs(settings)
    admin = AIOKafkaAdminClient(**client_options(settings, bootstrap), client_id="inbound-audit-topics")
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        raced = await _create(admin, missing) if missing else set()
        created = tuple(s for s in missing if s.name not in raced)
        to_compare = [s for s in specs if s.name in existing or s.name in raced]
        differences = await _differences_when_visible(admin, to_compare) if to_compare else {}
    except KafkaError as exc:
        raise await connection_error(settings, exc, bootstrap) from exc
    finally:
        await admin.close()
    return TopicReport(
        created=created,
        ok=tuple(s for s in to_compare if not differences[s.name]),
        mismatches=tuple(f"{name}: {line}" for name, lines in differences.items() for line in lines),
    )


#: ``config_source`` of a config set on the topic itself (DescribeConfigs v1+).
_DYNAMIC_TOPIC_CONFIG = 1


async def ensure_state_retention(settings: Settings, bootstrap: str) -> str | None:
    """Make the state topic keep deltas as long as the longest monitor needs them.

    A shorter retention would let a restarted worker replay a state log that has lost deltas of
    windows the monitors still answer for. The retention is raised (keeping the topic's other
    non-default configs: the plain AlterConfigs request replaces them all) and a line saying so
    is returned; if the broker refuses, ``ConfigError`` names the fix.
    """
    spec = next(s for s in topic_specs(settings) if s.name == settings.state_topic)
    needed = int(spec.configs["retention.ms"])
    admin = AIOKafkaAdminClient(**client_options(settings, bootstrap), client_id="inbound-audit-topics")
    try:
        await admin.start()
        (response,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, spec.name)])
        (resource,) = response.to_object()["resources"]
        _raise_for(resource["error_code"], f"cannot describe configs of {spec.name}", resource["error_message"])
        entries = resource["config_entries"]
        current = int(next(e["config_value"] for e in entries if e["config_names"] == "retention.ms"))
        if current < 0 or current >= needed:
            return None
        kept = {e["config_names"]: e["config_value"] for e in entries if e["config_source"] == _DYNAMIC_TOPIC_CONFIG}
        kept["retention.ms"] = str(needed)
        (altered,) = await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, spec.name, kept)])
        for result in altered.to_object()["resources"]:
            if result["error_code"]:
                raise ConfigError(
                    f"{spec.name} keeps deltas {current} ms but the monitors need {needed} ms, and raising it "
                    f"failed ({result['error_message'] or result['error_code']}): run kafka-configs.sh --alter "
                    f"--entity-type topics --entity-name {spec.name} --add-config retention.ms={needed}"
                )
    except KafkaError as exc:
        raise await connection_error(settings, exc, bootstrap) from exc
    finally:
        await admin.close()
    return f"raised retention.ms of {spec.name} from {current} to {needed} (the longest monitor span plus 1 h)"
