"""A Kafka client's first connection, retried while the broker is away for a moment.

aiokafka's ``start()`` gives up at once when no bootstrap server answers: a worker whose Faust
producer or consumer started during a broker restart crashed one or two seconds in. With
``patient_bootstrap`` the client keeps trying for ``limit_s`` (the worker's
``INBOUND_AUDIT_KAFKA_TIMEOUT_S``, its limit for Kafka being away), with one log line, then
raises as before.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiokafka import AIOKafkaClient
from aiokafka.errors import KafkaConnectionError

__all__ = ["patient_bootstrap"]

log = logging.getLogger(__name__)

RETRY_EVERY_S = 1.0


def patient_bootstrap(client: AIOKafkaClient, limit_s: float) -> None:
    """Make ``client``'s bootstrap retry for up to ``limit_s`` (before the client is started)."""
    first_try = client.bootstrap

    async def bootstrap() -> None:
        deadline = time.monotonic() + limit_s
        warned = False
        while True:
            try:
                await first_try()
                return
            except KafkaConnectionError as exc:
                if time.monotonic() >= deadline:
                    raise
                if not warned:
                    warned = True
                    log.warning("%s; retrying for up to %.0f s", exc, limit_s)
                await asyncio.sleep(RETRY_EVERY_S)

    client.bootstrap = bootstrap  # type: ignore[method-assign]
