"""A worker's web server seen from a test: GETs, parsed metrics, waiting for readiness and catch-up."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson
from audit_oracle import Monitor, Stream
from harness import WorkerProcess, isolated_env, prepare_topics, publish
from prometheus_client.parser import text_string_to_metric_families

from pipeline.settings import Settings

#: A sample of /metrics: (name, sorted label pairs).
SampleKey = tuple[str, tuple[tuple[str, str], ...]]


def free_port() -> int:
    """A port nothing listens on now (the kernel's pick)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Web:
    """GETs against one worker's web server."""

    def __init__(self, session: aiohttp.ClientSession, port: int) -> None:
        self.session, self.port, self.base = session, port, f"http://127.0.0.1:{port}"

    async def get(self, path: str, params: dict[str, str] | None = None) -> tuple[int, bytes]:
        async with self.session.get(self.base + path, params=params) as response:
            return response.status, await response.read()

    async def samples(self) -> dict[SampleKey, float]:
        """Every sample of ``/metrics``, by name and sorted labels."""
        status, body = await self.get("/metrics")
        assert status == 200
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body.decode())
            for s in family.samples
        }


@asynccontextmanager
async def serving_worker(
    bootstrap: str, monitors: list[Monitor], stream: Stream
) -> AsyncIterator[tuple[Settings, WorkerProcess, Web]]:
    """A worker with its web server on a free port, started once ``stream`` is on its own (two
    partition) topics; stopped afterwards, its last log lines printed for a failing test."""
    port = free_port()
    env = isolated_env(bootstrap, 2, " ".join(m.name for m in monitors), INBOUND_AUDIT_WEB_PORT=str(port))
    settings = await prepare_topics(env)
    await publish(settings.bootstrap, settings.events_topic, stream.messages)
    worker = WorkerProcess(env).start()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            yield settings, worker, Web(session, port)
    finally:
        worker.stop()
        print(*worker.lines[-15:], sep="\n")


async def poll_ready(web: Web, worker: WorkerProcess, timeout_s: float = 60.0) -> list[tuple[int, dict[str, Any]]]:
    """Every /ready answer from the web server's first one until a 200."""
    seen: list[tuple[int, dict[str, Any]]] = []
    deadline = time.monotonic() + timeout_s
    while not seen or seen[-1][0] != 200:
        assert time.monotonic() < deadline, f"never ready: {seen[-3:]}\n" + "\n".join(worker.lines[-20:])
        try:
            status, body = await web.get("/ready")
            seen.append((status, orjson.loads(body)))
        except aiohttp.ClientConnectionError:
            assert worker.proc is not None and worker.proc.poll() is None, "\n".join(worker.lines[-20:])
        await asyncio.sleep(0.05)
    return seen


async def wait_applied(web: Web, stream: Stream, timeout_s: float = 60.0) -> dict[SampleKey, float]:
    """Metrics once every valid event was counted and every delta written was applied."""
    valid = len(stream.counted) + len(stream.sessions)
    deadline = time.monotonic() + timeout_s
    while True:
        samples = await web.samples()
        counted = samples[("inbound_audit_events_total", ())]
        written, applied = (samples[(f"inbound_audit_deltas_{n}_total", ())] for n in ("written", "applied"))
        if counted >= valid and applied == written:
            return samples
        assert time.monotonic() < deadline, f"not caught up: {counted} of {valid} events, {applied} of {written}"
        await asyncio.sleep(0.3)
