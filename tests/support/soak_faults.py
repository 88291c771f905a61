"""A seeded random schedule of faults and the injector that carries it out.

Kinds: ``sigkill`` (the worker is started again 1-4 s later), ``sigstop`` (paused 8-12 s, past
the 6 s session, then SIGCONT), ``restart`` (SIGTERM, then start again), ``join`` (one more
worker), ``leave`` (a worker stops for good; joins and leaves alternate, a join first, so the
fleet returns to its size), ``broker`` (the soak's broker stops and starts again) and
``publisher`` (an MTA's publisher closes and a new one starts, sending ``node_reset``).
Faults run one after another at their scheduled times; a fault that targets a worker waits for
one that is running, unpaused and serving.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter

from soak_cluster import Fleet, FleetWorker, PrivateBroker
from soak_traffic import Traffic

__all__ = ["KINDS", "DEFAULT_FAULTS", "SHORT_FAULTS", "schedule", "FaultInjector"]

KINDS = ("sigkill", "sigstop", "restart", "join", "leave", "broker", "publisher")
DEFAULT_FAULTS = {"sigkill": 20, "sigstop": 5, "restart": 5, "join": 5, "leave": 5, "broker": 1, "publisher": 2}
SHORT_FAULTS = {"sigkill": 2, "sigstop": 1, "restart": 1, "join": 1, "leave": 1, "broker": 1, "publisher": 1}
#: Faults happen between these fractions of the run: the fleet settles before and after.
FIRST_AT, LAST_AT = 0.05, 0.8
#: How long a fault waits for a worker it may target.
TARGET_WAIT_S = 240.0


def schedule(counts: dict[str, int], duration_s: float, seed: int) -> list[tuple[float, str]]:
    """(seconds after the start, kind), sorted; the same seed gives the same schedule."""
    rng = random.Random(seed)
    kinds = [kind for kind, n in counts.items() for _ in range(n)]
    rng.shuffle(kinds)
    times = sorted(rng.uniform(FIRST_AT, LAST_AT) * duration_s for _ in kinds)
    membership = iter(["join", "leave"] * max(counts.get("join", 0), counts.get("leave", 0)))
    return [
        (at, next(membership) if kind in ("join", "leave") else kind) for at, kind in zip(times, kinds, strict=True)
    ]


class FaultInjector:
    """Carries out a schedule against the fleet, the broker and the publishers."""

    def __init__(self, fleet: Fleet, broker: PrivateBroker, traffic: Traffic, seed: int, log: list[str]) -> None:
        self.fleet, self.broker, self.traffic = fleet, broker, traffic
        self.rng = random.Random(seed)
        self.done = Counter[str]()
        self.log = log
        self._restarts: list[asyncio.Task[None]] = []

    async def run(self, plan: list[tuple[float, str]]) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        for at, kind in plan:
            await asyncio.sleep(max(0.0, started + at - loop.time()))
            if await getattr(self, f"_{kind}")():
                self.done[kind] += 1
                self.log.append(f"{loop.time() - started:6.1f} s {kind}")
        await asyncio.gather(*self._restarts)

    async def _target(self) -> FleetWorker | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TARGET_WAIT_S
        while loop.time() < deadline:
            candidates = self.fleet.available()
            if candidates:
                return self.rng.choice(candidates)
            await asyncio.sleep(0.5)
        self.log.append("no worker to target: fault skipped")
        return None

    async def _sigkill(self) -> bool:
        worker = await self._target()
        if worker is None:
            return False
        self.fleet.sigkill(worker)
        self._restarts.append(asyncio.create_task(self._restart_later(worker, self.rng.uniform(1.0, 4.0))))
        return True

    async def _restart_later(self, worker: FleetWorker, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        self.fleet.restart(worker)

    async def _sigstop(self) -> bool:
        worker = await self._target()
        if worker is None:
            return False
        self.fleet.pause(worker)
        await asyncio.sleep(self.rng.uniform(8.0, 12.0))
        self.fleet.resume(worker)
        return True

    async def _restart(self) -> bool:
        worker = await self._target()
        if worker is None:
            return False
        await self.fleet.terminate(worker)
        self.fleet.restart(worker)
        return True

    async def _join(self) -> bool:
        self.fleet.join()
        return True

    async def _leave(self) -> bool:
        worker = await self._target()
        if worker is None:
            return False
        await self.fleet.leave(worker)
        return True

    async def _broker(self) -> bool:
        self.fleet.broker_up.clear()
        await self.broker.stop()
        await asyncio.sleep(self.rng.uniform(2.0, 5.0))
        await self.broker.start()
        self.fleet.broker_up.set()
        return True

    async def _publisher(self) -> bool:
        await self.traffic.restart_publisher(self.rng)
        return True
