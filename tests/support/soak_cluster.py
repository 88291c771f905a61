"""The soak's own Kafka broker and its fleet of worker processes, with the faults done to them.

The broker runs on its own ports and data directory (never the shared test broker), because the
soak restarts it. Workers each get their own web port, so the final check can ask every one of
them over HTTP (``/query``) instead of whichever worker the bus picks.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import aiohttp
from harness import WorkerProcess

from pipeline.kafka.local_kafka import ensure_local_kafka, stop_local_kafka
from pipeline.settings import Settings, load_settings

__all__ = ["PrivateBroker", "Fleet", "FleetWorker", "STOP_LIMIT_S", "READY_LIMIT_S"]

T = TypeVar("T")

#: A worker's exit status when no broker answers as it starts (``inbound-audit: Kafka is not reachable``).
REFUSED_TO_START = 2

#: A worker promises to stop within 10 s of SIGTERM; longer than this is a hung process.
STOP_LIMIT_S = 15.0
#: A started worker that does not answer queries within this long is a hung process.
READY_LIMIT_S = 180.0


class PrivateBroker:
    """A single-node Kafka on ``port`` (controller ``port + 1``) in a temporary home that links the
    cached Kafka jars, so starting it downloads nothing and stopping it touches no other broker."""

    def __init__(self, port: int) -> None:
        cache = load_settings({k: v for k, v in os.environ.items() if k == "INBOUND_AUDIT_HOME"}).home_dir
        self.home = Path(tempfile.mkdtemp(prefix=f"inbound-audit-broker-{port}-"))
        for cached in cache.glob("kafka-*"):
            (self.home / cached.name).symlink_to(cached)
        self.settings = Settings(local_kafka_port=port, home_dir=self.home)
        self.bootstrap = self.settings.bootstrap

    async def start(self) -> None:
        self.bootstrap = await self._deploy_kafka(ensure_local_kafka)

    async def stop(self) -> None:
        await self._deploy_kafka(stop_local_kafka)

    async def _deploy_kafka(self, command: Callable[[Settings], T]) -> T:
        """Run a ``local_kafka`` command with the controller port following ours (deploy/kafka
        reads it from the environment), leaving the caller's environment as it was."""
        name, before = "INBOUND_AUDIT_KAFKA_CONTROLLER_PORT", os.environ.get("INBOUND_AUDIT_KAFKA_CONTROLLER_PORT")
        os.environ[name] = str(self.settings.local_kafka_port + 1)
        try:
            return await asyncio.to_thread(command, self.settings)
        finally:
            if before is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = before

    async def close(self) -> None:
        await self.stop()
        shutil.rmtree(self.home, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class FleetWorker:
    """One worker slot: its process, its web port, and what the soak has done to it."""

    process: WorkerProcess
    web_port: int
    expected_exit: bool = False  # the soak signalled it; an exit is not a crash
    paused: bool = False
    recovering: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return self.process.name

    @property
    def alive(self) -> bool:
        proc = self.process.proc
        return proc is not None and proc.poll() is None

    @property
    def available(self) -> bool:
        """Running, not paused and serving: a fair target for the next fault."""
        return self.alive and not self.paused and (self.recovering is None or self.recovering.done())


@dataclass
class Fleet:
    """The soak's workers: start, signal, and watch them; counts crashes and hung processes."""

    env: dict[str, str]
    workers: list[FleetWorker] = field(default_factory=list)
    crashes: list[str] = field(default_factory=list)
    hung: list[str] = field(default_factory=list)
    #: Starts refused because the broker went away while the worker was starting (it is started
    #: again once the broker is back, as a supervisor would): documented behaviour, not a crash.
    refused: list[str] = field(default_factory=list)
    #: Cleared while the soak's broker is down: workers are (re)started only once it is back.
    broker_up: asyncio.Event = field(default_factory=asyncio.Event)
    _serial: int = 0

    def __post_init__(self) -> None:
        self.broker_up.set()

    def join(self) -> FleetWorker:
        """A new worker process (a group member joining)."""
        self._serial += 1
        port = free_port()
        process = WorkerProcess({**self.env, "INBOUND_AUDIT_WEB_PORT": str(port)}, name=f"worker-{self._serial}")
        worker = FleetWorker(process, port)
        self.workers.append(worker)
        self._launch(worker)
        return worker

    def _launch(self, worker: FleetWorker) -> None:
        worker.expected_exit = True  # until it is started again, its exit is not news
        worker.recovering = asyncio.create_task(self._start(worker))

    async def _start(self, worker: FleetWorker) -> None:
        """Start once the broker is up, as a supervisor would: a worker refuses to start without
        one (exit status 2), which is its documented behaviour, not a crash."""
        await self.broker_up.wait()
        worker.expected_exit = False
        worker.process.start()
        try:
            await worker.process.wait_ready(timeout_s=READY_LIMIT_S)
        except AssertionError:
            if worker.alive:
                self.hung.append(f"{worker.name}: not ready within {READY_LIMIT_S:.0f} s")
            # an exit is reported by ``watch``

    async def ready(self) -> None:
        """Wait until every worker's current start has finished (ready, hung or exited)."""
        await asyncio.gather(*(w.recovering for w in self.workers if w.recovering is not None))

    def available(self) -> list[FleetWorker]:
        return [w for w in self.workers if w.available]

    def sigkill(self, worker: FleetWorker) -> None:
        worker.expected_exit = True
        worker.process.kill(signal.SIGKILL)

    def restart(self, worker: FleetWorker) -> None:
        self._launch(worker)

    def pause(self, worker: FleetWorker) -> None:
        assert worker.process.proc is not None
        worker.paused = True
        worker.process.proc.send_signal(signal.SIGSTOP)

    def resume(self, worker: FleetWorker) -> None:
        assert worker.process.proc is not None
        worker.process.proc.send_signal(signal.SIGCONT)
        worker.paused = False

    async def terminate(self, worker: FleetWorker) -> None:
        """SIGTERM and wait; a worker still running after ``STOP_LIMIT_S`` is hung (then killed)."""
        proc = worker.process.proc
        if proc is None or proc.poll() is not None:
            return
        worker.expected_exit = True
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, STOP_LIMIT_S)
        except subprocess.TimeoutExpired:
            self.hung.append(f"{worker.name}: still running {STOP_LIMIT_S:.0f} s after SIGTERM")
            proc.kill()
            await asyncio.to_thread(proc.wait)
        if proc.returncode not in (0, -signal.SIGTERM):
            self.crashes.append(
                f"{worker.name}: exit status {proc.returncode} after SIGTERM ({time.monotonic() - started:.1f} s)"
            )

    async def leave(self, worker: FleetWorker) -> None:
        """A member leaving the group for good (graceful stop)."""
        await self.terminate(worker)
        self.workers.remove(worker)

    async def watch(self) -> None:
        """Forever: a worker that exited on its own is a crash; it is restarted so the soak goes on."""
        while True:
            await asyncio.sleep(0.5)
            for worker in list(self.workers):
                proc = worker.process.proc
                if proc is not None and not worker.alive and not worker.expected_exit:
                    tail = " | ".join(worker.process.lines[-5:])
                    if proc.returncode == REFUSED_TO_START and not worker.process.log_has("answering queries"):
                        self.refused.append(f"{worker.name} refused to start: {tail}")
                    else:
                        self.crashes.append(f"{worker.name} exited {proc.returncode}: {tail}")
                    self._launch(worker)

    async def healthy(self, worker: FleetWorker, session: aiohttp.ClientSession) -> bool:
        """Whether the worker's web server answers ``/healthz`` (its event loop runs)."""
        try:
            async with session.get(
                f"http://127.0.0.1:{worker.web_port}/healthz", timeout=aiohttp.ClientTimeout(total=10)
            ) as response:
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def stop_all(self) -> None:
        for worker in self.workers:
            if worker.paused:
                self.resume(worker)
            await self.terminate(worker)
