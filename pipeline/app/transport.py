"""Faust's aiokafka transport with short, small fetches for the worker's consumer.

Faust hard-codes ``fetch_max_wait_ms=1500`` for the consumer that reads every topic of the worker,
and an idle fetch holds back the consumer's other requests on that connection: each offsets
lookup of a recovery waited up to 1.5 s, so a takeover after a worker died took ~1.7 s longer
than the group rebalance itself. ``FETCH_MAX_WAIT_MS`` bounds that wait (recovery after a
rebalance: 1.65 s -> 0.2 s); the broker still answers a fetch as soon as data arrives, so
throughput is unchanged. (100 ms was tried too: newly assigned partitions then sometimes sat
unread after a rebalance; 500 ms showed no such stall in the fault tests.)

One consumer fetches every topic with one fetch in flight, so a request produced while a large
fetch of events is read (by Python, in the consumer thread, competing for the GIL) waits for it.
``Settings.fetch_max_bytes`` (aiokafka's default is 50 MiB; Faust sets only the per-partition
limit, to a quarter of it here) keeps each response small. Alternating runs at full-speed ingest
of 1,000-event messages: query p99 266-375 ms with 50 MiB / 4 MiB per partition, 55-74 ms with
2 MiB / 512 KiB; ingest 491-683 k events/s against 437-522 k.

The consumer's metadata is refreshed every ``METADATA_MAX_AGE_MS`` (aiokafka: 5 min). The group
leader rebalances when a subscribed topic's partitions change in it, which is how an assignment
made while a restarted broker did not list the topics yet is redone (``assignor.py``): within
seconds rather than minutes.

After a rebalance Faust seeks the agents' partitions back to their committed offsets, which is
how records it fetched and dropped meanwhile (a partition not active yet) are read again. A
partition the group never committed was not sought at all (aiokafka's ``seek_to_committed`` skips
it), so those records stayed dropped: requests sent to a worker that died before its first commit
were never answered by the survivor (3 of 3 runs of the test of that takeover without the stall
guard, ``stalls.py``). Here such a partition of the events or requests topic is sought to its
beginning, where the consumer started it (``earliest``); already handled messages are skipped
again (the ingest cursor, the requests' next offset).

Faust forgets the acked offsets of revoked partitions before its own revoke handler commits (the
open faust-streaming issue #502), so in every rebalance each partition went back to its last
periodic commit and what was handled since was handled again: 28 and 31 repeated replies at 50
requests/s when a third worker joined, 5 and 6 when a worker was then killed. The revoked
partitions are now committed first (at most ``REVOKE_COMMIT_TIMEOUT_S``): 0 in the same runs
(``tests/integration/test_rebalance_replies.py``).

Faust declares its topics when it starts; a broker that has just restarted refuses that for a
few seconds ("All brokers are currently fenced", InvalidReplicationFactorError), and a broker
that went away meanwhile fails it with NodeNotReadyError; Faust let either end the worker. Here
the declaration is retried for up to ``INBOUND_AUDIT_KAFKA_TIMEOUT_S``, and the producer and
consumer retry their first connection as long (``pipeline.kafka.retry``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import aiokafka
from aiokafka.errors import InvalidReplicationFactorError, KafkaConnectionError, KafkaError, NodeNotReadyError
from faust.transport.drivers import aiokafka as driver
from faust.types import TP
from mode import Service

from pipeline.kafka.retry import patient_bootstrap, retry_for
from pipeline.settings import Settings

__all__ = ["FETCH_MAX_WAIT_MS", "METADATA_MAX_AGE_MS", "Transport"]

FETCH_MAX_WAIT_MS = 500
METADATA_MAX_AGE_MS = 5000
#: How long a rebalance waits for the revoked partitions' commit (the session timeout is 6 s).
REVOKE_COMMIT_TIMEOUT_S = 2.0

log = logging.getLogger(__name__)


def _audit_settings(app: Any) -> Settings:
    """Our settings, which ``app._FaustApp`` carries for the transport."""
    settings: Settings = app.audit_settings
    return settings


class _ConsumerThread(driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # noqa: SLF001 - read when the consumer starts
        settings = _audit_settings(transport.app)
        consumer._fetch_max_bytes = settings.fetch_max_bytes  # noqa: SLF001 - likewise
        consumer._client._metadata_max_age_ms = METADATA_MAX_AGE_MS  # noqa: SLF001 - read by its refresh loop
        patient_bootstrap(consumer._client, settings.kafka_timeout_s)  # noqa: SLF001 - before it starts
        return consumer

    async def seek_to_committed(self) -> Mapping[Any, int]:
        return await self.call_thread(self._seek_to_committed_or_beginning)

    async def _seek_to_committed_or_beginning(self) -> Mapping[Any, int]:
        consumer = self._ensure_consumer()
        committed: Mapping[Any, int] = await consumer.seek_to_committed()
        settings = _audit_settings(self.app)
        agents_topics = {settings.events_topic, settings.requests_topic}  # not the tables' changelogs
        for tp, offset in committed.items():
            if not offset and tp.topic in agents_topics:
                # Offset 0 without a broker call (aiokafka's seek_to_beginning waits for one, and
                # Faust's recovery with it: 40 s when the broker went away just then); a log that
                # no longer starts at 0 is out of range there, and the consumer resets to its start.
                consumer.seek(tp, 0)
        return committed


class _Consumer(driver.Consumer):
    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        """Commit what was handled of the revoked partitions first: Faust forgets their acked
        offsets before its own revoke handler commits, so the next owner handled again everything
        since the last periodic commit (up to ``broker_commit_interval``). Bounded: a commit that
        cannot finish (a broker away) must not hold up the rebalance; it only costs repeats."""
        if revoked:
            try:
                await asyncio.wait_for(self._commit_revoked(revoked), REVOKE_COMMIT_TIMEOUT_S)
            except (TimeoutError, KafkaError) as exc:
                log.info("could not commit the revoked partitions before the rebalance (%r)", exc)
        await super().on_partitions_revoked(revoked)

    async def _commit_revoked(self, revoked: set[TP]) -> None:
        if not await self.commit(revoked):
            # False: it found nothing to commit, or only waited for a commit already under way
            # (made before the last acks); in the first case this second call is a no-op.
            await self.commit(revoked)


class _Producer(driver.Producer):
    def _new_producer(self, transactional_id: str | None = None) -> aiokafka.AIOKafkaProducer:
        producer = super()._new_producer(transactional_id)
        patient_bootstrap(producer.client, _audit_settings(self.app).kafka_timeout_s)
        return producer


class Transport(driver.Transport):
    """``kafka://`` with short, small fetches, and topic declarations that ride out a restarting broker."""

    Consumer = _Consumer
    Producer = _Producer

    async def _create_topic(
        self,
        owner: Service,
        client: aiokafka.AIOKafkaClient,
        topic: str,
        partitions: int,
        replication: int,
        **kwargs: Any,
    ) -> None:
        await retry_for(
            lambda: super(Transport, self)._create_topic(owner, client, topic, partitions, replication, **kwargs),
            (InvalidReplicationFactorError, KafkaConnectionError, NodeNotReadyError),
            _audit_settings(self.app).kafka_timeout_s,
            every_s=0.5,
            what=f"Kafka cannot create {topic} yet",
        )
