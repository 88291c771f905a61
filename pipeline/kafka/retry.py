"""Kafka calls retried while the broker is away for a moment, up to a limit.

A broker that is restarting refuses for a few seconds what it will soon accept: aiokafka's
``start()`` gives up at once when no bootstrap server answers ("Unable to bootstrap"), a topic
declaration fails while the restarted broker is still fenced, a new cluster has no group
coordinator yet. ``retry_for`` tries again for ``limit_s`` (the worker's
``INBOUND_AUDIT_KAFKA_TIMEOUT_S``, its limit for Kafka being away), says so in at most one line,
then raises the last error as before. ``patient_bootstrap`` applies it to a client's first
connection: a worker whose Faust producer or consumer started during a broker restart crashed one
or two seconds in.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka import AIOKafkaClient
from aiokafka.errors import KafkaConnectionError

__all__ = ["patient_bootstrap", "retry_for"]

log = logging.getLogger(__name__)

T = TypeVar("T")


async def retry_for(
    attempt: Callable[[], Awaitable[T]],
    errors: tuple[type[BaseException], ...],
    limit_s: float,
    *,
    every_s: float,
    what: str | None = None,
) -> T:
    """``await attempt()``, again every ``every_s`` while it raises one of ``errors``, for up to
    ``limit_s``; with ``what``, the first failure is logged once as "<what>: <error>; retrying"."""
    deadline = time.monotonic() + limit_s
    warned = what is None
    while True:
        try:
            return await attempt()
        except errors as exc:
            if time.monotonic() >= deadline:
                raise
            if not warned:
                warned = True
                log.warning("%s: %s; retrying for up to %.0f s", what, exc, limit_s)
            await asyncio.sleep(every_s)


def patient_bootstrap(client: AIOKafkaClient, limit_s: float) -> None:
    """Make ``client``'s bootstrap retry for up to ``limit_s`` (before the client is started)."""
    first_try = client.bootstrap

    async def bootstrap() -> None:
        await retry_for(first_try, (KafkaConnectionError,), limit_s, every_s=1.0, what="Kafka bootstrap")

    client.bootstrap = bootstrap  # type: ignore[method-assign]
