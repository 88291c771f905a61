"""Helpers shared by the "using it" tests (client, Lua, CLI, examples): a running worker on isolated
topics, and the oracle's expectation for a Momentum-style ``(monitor, options)`` call.

``expected`` reads the options independently of ``pipeline.clients.client`` (it is what the client is
checked against), and ``settled`` takes the clock before and after a query so that a window
rolling over between the two cannot make a correct answer look wrong.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from audit_oracle import Monitor, Stream, addr_of, block_of
from harness import REPO, WorkerProcess, isolated_env, prepare_topics

from pipeline.clients.client import AuditClient
from pipeline.settings import Settings

__all__ = [
    "Running",
    "running_worker",
    "monitor_named",
    "expected",
    "settled",
    "wait_caught_up",
    "stream_of_events",
    "clear_of_boundary",
    "run_cli",
]

IPV4_ALL = "0.0.0.0/0"
IPV6_ALL = "::/0"


@dataclass
class Running:
    env: dict[str, str]
    settings: Settings
    worker: WorkerProcess


@asynccontextmanager
async def running_worker(bootstrap: str, monitors: str, partitions: int = 2) -> AsyncIterator[Running]:
    """One worker on topics no other test sees, stopped on exit."""
    env = isolated_env(bootstrap, partitions, monitors)
    settings = await prepare_topics(env)
    worker = WorkerProcess(env).start()
    try:
        await worker.wait_ready()
        yield Running(env, settings, worker)
    finally:
        worker.stop()


def monitor_named(stream: Stream, name: str) -> Monitor:
    size, count = (int(part) for part in name.replace(" ", "").split(","))
    return next(m for m in stream.monitors if (m.size, m.count) == (size, count))


def expected(
    stream: Stream,
    op: str,
    monitor: str | None,
    options: Mapping[str, Any] | str | None,
    *,
    ip: str | None,
    node: str | None,
    now: float,
    cluster: bool = False,
    at: float | None = None,
    service: str = "SMTP",
) -> int:
    """The oracle's answer for a Momentum call: a table of startv/endv/cidr/cluster, or a cidr string."""
    table = dict(options) if isinstance(options, Mapping) else {"cidr": options} if options is not None else {}
    cidr = table.get("cidr")
    scope = None if table.get("cluster", cluster) else node
    block = block_of(cidr, ip)
    if op == "inbound_session_count":
        return stream.open_sessions(block, service, scope)
    assert monitor is not None
    return stream.count(
        op,
        monitor_named(stream, monitor),
        block,
        table.get("startv", 0),
        table.get("endv", 0),
        now if at is None else at,
        scope,
    )


async def settled(ask: Callable[[], Awaitable[int]], want: Callable[[float], int]) -> tuple[int, set[int]]:
    """The answer, and the oracle's values at the clock before and after asking (one must match)."""
    before = time.time()
    got = await ask()
    return got, {want(before), want(time.time())}


async def wait_caught_up(client: AuditClient, stream: Stream, monitor: str, timeout_s: float = 90.0) -> None:
    """Poll fleet-wide totals over the whole monitor until they equal the oracle's."""
    last = monitor_named(stream, monitor).count - 1
    probes = [(op, cidr) for op in ("connections", "receptions", "rejections") for cidr in (IPV4_ALL, IPV6_ALL)]
    deadline = time.monotonic() + timeout_s
    while True:
        got, want = [], []
        for op, cidr in probes:
            options = {"cidr": cidr, "cluster": True, "endv": last}
            answer, wanted = await settled(
                lambda op=op, options=options: client.query(op, monitor, options),
                lambda now, op=op, options=options: expected(stream, op, monitor, options, ip=None, node=None, now=now),
            )
            got.append(answer)
            want.append(wanted)
        if all(g in w for g, w in zip(got, want, strict=True)):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"pipeline never caught up: got {got}, oracle {want}")
        await asyncio.sleep(0.3)


def stream_of_events(events: Iterable[Mapping[str, Any]], monitors: list[Monitor], t0: float) -> Stream:
    """An oracle ``Stream`` over events that are all valid and recent (e.g. what ``simulate`` recorded)."""
    stream = Stream(monitors, t0)
    kept = {m.name for m in monitors}
    for event in events:
        family, addr = addr_of(event["ip"])
        entry = {**event, "family": family, "addr": addr}
        if event["event"] in ("session_open", "session_close", "node_reset"):
            stream.sessions.append(entry)
        else:
            stream.counted.append({**entry, "kept": kept})
    return stream


async def clear_of_boundary(size_s: int, margin_s: float) -> None:
    """Wait out the end of the current ``size_s`` window if fewer than ``margin_s`` seconds are left,
    so that what a test publishes now is still in window 0 when it asks."""
    left = size_s - time.time() % size_s
    if left < margin_s:
        await asyncio.sleep(left + 0.2)


def run_cli(env: Mapping[str, str], *args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    """``inbound-audit ARGS`` in a child process with the test's isolated environment."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
