"""All workers of one group answer with the same monitors (SPEC section 7).

Each worker's group member announces its monitors in its Kafka client id
(``inbound-audit monitors=60,30 300,12``), which the broker shows to anyone describing the group.
A starting worker describes its group first and refuses to start when a running member announces
other monitors: two workers with different monitors would give different answers to one question.
The running members are the broker's own account, so a fleet that is stopped on purpose can come
back with new monitors; a member that was killed stays listed until its session times out.
"""

from __future__ import annotations

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    CoordinatorLoadInProgressError,
    CoordinatorNotAvailableError,
    KafkaError,
    NotCoordinatorError,
)

from pipeline.core.windows import Monitor
from pipeline.errors import ConfigError
from pipeline.kafka.connection import client_options, connection_error
from pipeline.kafka.retry import retry_for
from pipeline.settings import Settings

__all__ = ["monitor_list", "member_client_id", "running_monitor_lists", "ensure_group_monitors", "committed_offset"]

_PREFIX = "inbound-audit monitors="
_COORDINATOR_NOT_YET = (CoordinatorNotAvailableError, CoordinatorLoadInProgressError, NotCoordinatorError)


def monitor_list(monitors: tuple[Monitor, ...]) -> str:
    """The monitors in one canonical order, as INBOUND_AUDIT_MONITORS spells them."""
    return " ".join(m.name for m in sorted(set(monitors), key=lambda m: (m.size_s, m.count)))


def member_client_id(settings: Settings) -> str:
    """The client id of the worker's group member: it carries the monitors for the check below."""
    return _PREFIX + monitor_list(settings.monitors)


async def running_monitor_lists(settings: Settings, bootstrap: str) -> set[str]:
    """The monitor lists announced by the running members of the worker group.

    A new cluster has no group coordinator for its first seconds (``__consumer_offsets`` is being
    created): that is waited out, up to ``kafka_timeout_s``."""
    admin = AIOKafkaAdminClient(**client_options(settings, bootstrap), client_id="inbound-audit-group-check")
    try:
        await admin.start()
        responses = await retry_for(
            lambda: admin.describe_consumer_groups([settings.group_id]),
            _COORDINATOR_NOT_YET,
            settings.kafka_timeout_s,
            every_s=0.5,
        )
    except KafkaError as exc:
        raise await connection_error(settings, exc, bootstrap) from exc
    finally:
        await admin.close()
    lists = set()
    for response in responses:
        for group in response.to_object()["groups"]:
            for member in group["members"]:
                client_id = member["client_id"]
                if client_id.startswith(_PREFIX):
                    lists.add(client_id[len(_PREFIX) :])
    return lists


async def ensure_group_monitors(settings: Settings, bootstrap: str) -> None:
    """Refuse to start (``ConfigError``, naming both lists) when the running group counts other monitors."""
    mine = monitor_list(settings.monitors)
    others = sorted(await running_monitor_lists(settings, bootstrap) - {mine})
    if others:
        raise ConfigError(
            f"INBOUND_AUDIT_MONITORS={mine!r} differs from the running worker group {settings.group_id!r}, "
            f"which counts with {' / '.join(repr(o) for o in others)}: start this worker with the group's "
            f"monitors, or stop the whole group first to change them (a killed worker stays in the group "
            f"for its session timeout, 6 s)"
        )


async def committed_offset(settings: Settings, bootstrap: str, topic: str, partition: int) -> int | None:
    """The worker group's committed offset of one partition (None: nothing committed yet)."""
    tp = TopicPartition(topic, partition)
    admin = AIOKafkaAdminClient(**client_options(settings, bootstrap), client_id="inbound-audit-offsets")
    try:
        await admin.start()
        offsets = await admin.list_consumer_group_offsets(settings.group_id, partitions=[tp])
    finally:
        await admin.close()
    found = offsets.get(tp)
    return None if found is None or found.offset < 0 else int(found.offset)
