"""Faust's aiokafka transport with a short fetch wait and a cheaper delivery step for the worker's consumer.

Faust hard-codes ``fetch_max_wait_ms=1500`` for the consumer that reads every topic of the worker,
and an idle fetch holds back the consumer's other requests on that connection: each offsets
lookup of a recovery waited up to 1.5 s, so a takeover after a worker died took ~1.7 s longer
than the group rebalance itself. ``FETCH_MAX_WAIT_MS`` bounds that wait (recovery after a
rebalance: 1.65 s -> 0.2 s); the broker still answers a fetch as soon as data arrives, so
throughput is unchanged. (100 ms was tried too: newly assigned partitions then sometimes sat
unread after a rebalance; 500 ms showed no such stall in the fault tests.)

The consumer's ``wait_first`` runs the delivery callback's first step at once (``eager.py``):
requests then reach their agent between ingest steps instead of after a whole fetched batch.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiokafka
from faust.transport.drivers import aiokafka as driver
from mode.services import WaitResults

from pipeline.app.eager import run_first_step

__all__ = ["FETCH_MAX_WAIT_MS", "Transport"]

FETCH_MAX_WAIT_MS = 500


class _ConsumerThread(driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # noqa: SLF001 - read when the consumer starts
        return consumer


class _Consumer(driver.Consumer):
    async def wait_first(self, *coros: Any, timeout: Any = None) -> Any:
        """Faust's delivery loop calls ``wait_first(callback(message), suspend_flow.wait())`` for
        each message; a callback that finishes in its first step (while the flow runs) costs no
        task and no turn of the event loop. Anything else takes Faust's own path."""
        callback = coros[0] if coros else None
        if (
            timeout is None
            and len(coros) == 2
            and asyncio.iscoroutine(callback)
            and not (self.suspend_flow.is_set() or self._stopped.is_set() or self._crashed.is_set())
        ):
            finished, outcome = run_first_step(callback)
            if finished:
                if asyncio.iscoroutine(coros[1]):
                    coros[1].close()  # never started: closed so it is not reported as never awaited
                return WaitResults([callback], [outcome], False)
            coros = (outcome, coros[1])
        return await super().wait_first(*coros, timeout=timeout)

    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(driver.Transport):
    """``kafka://`` with the short fetch wait."""

    Consumer = _Consumer
