"""Reply topics: who creates them, who deletes them, so that they do not pile up on the broker.

* A client's *private* topic (the default) is created by the client and deleted when it closes:
  the one-shot CLI and the Lua runner leave nothing behind.
* A topic named by the caller is created if missing, and deleted on close only if this client
  created it.
* The *process* topic (``shared_reply_topic=True``) is one per process and bootstrap, reused by
  every client of the process that asks for it (each matches replies by request id), created by
  its first user and deleted when the process exits: for long-lived callers such as an MTA's
  policy engine that open many clients.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import socket
import threading
import uuid

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from pipeline.errors import InboundAuditError
from pipeline.kafka.connection import client_options
from pipeline.settings import Settings

__all__ = ["private_reply_topic", "process_reply_topic", "create_reply_topic", "delete_reply_topic"]

log = logging.getLogger(__name__)

#: How long closing a client may spend deleting its reply topic (Kafka may be gone by then).
DELETE_TIMEOUT_S = 5.0


def _host() -> str:
    host = "".join(c if c.isalnum() or c in "._-" else "-" for c in socket.gethostname()) or "host"
    return host[:100]


def private_reply_topic(settings: Settings) -> str:
    """Unique per client so replies never mix: ``<prefix>.<host>-<pid>-<random>``."""
    return f"{settings.reply_topic_prefix}.{_host()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _admin(settings: Settings, bootstrap: str) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**client_options(settings, bootstrap), client_id="inbound-audit-client")


async def create_reply_topic(settings: Settings, bootstrap: str, topic: str) -> bool:
    """Create ``topic`` with one partition unless it exists; True if this call created it."""
    admin = _admin(settings, bootstrap)
    await admin.start()
    try:
        if topic in await admin.list_topics():
            return False
        response = await admin.create_topics([NewTopic(topic, 1, settings.replication_factor)])
        for entry in response.to_object()["topic_errors"]:
            if entry["error_code"] == TopicAlreadyExistsError.errno:
                return False
            if entry["error_code"]:
                raise InboundAuditError(f"cannot create reply topic {topic}: {entry.get('error_message') or entry}")
        return True
    finally:
        await admin.close()


async def delete_reply_topic(settings: Settings, bootstrap: str, topic: str) -> None:
    """Delete ``topic``; a failure (Kafka gone meanwhile) is one WARNING, never an exception."""

    async def delete() -> None:
        admin = _admin(settings, bootstrap)
        await admin.start()
        try:
            await admin.delete_topics([topic])
        finally:
            await admin.close()

    try:
        await asyncio.wait_for(delete(), DELETE_TIMEOUT_S)
    except (KafkaError, OSError, TimeoutError) as exc:
        log.warning("could not delete reply topic %s at %s: %r", topic, bootstrap, exc)


class _ProcessTopics:
    """The process topics created so far, deleted together when the interpreter exits."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # SyncAuditClients run their loops in threads of their own
        self._created: dict[tuple[str, str], Settings] = {}
        self._registered = False

    def name(self, settings: Settings) -> str:
        return f"{settings.reply_topic_prefix}.{_host()}-{os.getpid()}"

    async def acquire(self, settings: Settings, bootstrap: str) -> str:
        topic = self.name(settings)
        with self._lock:
            known = (bootstrap, topic) in self._created
        if not known:
            await create_reply_topic(settings, bootstrap, topic)
            with self._lock:
                self._created[(bootstrap, topic)] = settings
                if not self._registered:
                    atexit.register(self._delete_all)
                    self._registered = True
        return topic

    def _delete_all(self) -> None:
        with self._lock:
            created, self._created = self._created, {}

        async def delete() -> None:
            await asyncio.gather(
                *(delete_reply_topic(settings, bootstrap, topic) for (bootstrap, topic), settings in created.items())
            )

        if created:
            asyncio.run(delete())


_PROCESS_TOPICS = _ProcessTopics()


async def process_reply_topic(settings: Settings, bootstrap: str) -> str:
    """This process's shared reply topic, created on first use and deleted at exit."""
    return await _PROCESS_TOPICS.acquire(settings, bootstrap)
