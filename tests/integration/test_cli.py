"""The CLI against a real worker: simulate → show-ip equals the oracle; query; deadletters."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from audit_oracle import Monitor, Stream
from harness import REPO, publish
from usage import Running, expected, run_cli, running_worker, stream_of_events, wait_caught_up

from pipeline.clients.client import AuditClient

pytestmark = pytest.mark.integration

MONITORS = [Monitor(3600, 2), Monitor(86400, 2)]
TYPES = [("Connections", "connections"), ("Receptions", "receptions"), ("Rejections", "rejections")]


@pytest.fixture(scope="module")
async def simulated(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    record = tmp_path_factory.mktemp("simulate") / "events.jsonl"
    async with running_worker(kafka_bootstrap, "3600,2 86400,2") as running:
        t0 = time.time()
        done = await asyncio.to_thread(
            run_cli,
            running.env,
            "simulate",
            "--nodes",
            "3",
            "--rate",
            "2000",
            "--duration",
            "3",
            "--seed",
            "7",
            "--record",
            str(record),
        )
        assert done.returncode == 0, done.stderr
        events = [orjson.loads(line) for line in record.read_bytes().splitlines()]
        stream = stream_of_events(events, MONITORS, t0)
        async with AuditClient(running.settings) as client:
            await wait_caught_up(client, stream, "3600,2")
        yield running, stream, done.stdout


def show_ip_expected(stream: Stream, cidr: str, node: str | None, now: float) -> list[str]:
    lines = []
    for label, op in TYPES:
        for m in MONITORS:
            for k in range(m.count):
                options = {"cidr": cidr, "startv": k, "endv": k}
                value = expected(stream, op, m.name, options, ip=None, node=node, now=now, cluster=node is None)
                lines.append(f"{label} {m.size}/{k}: {value}")
    return lines


def test_simulate_reports_progress_and_abusive_blocks(simulated: Any) -> None:
    _, stream, stdout = simulated
    lines = stdout.splitlines()
    assert any(re.fullmatch(r"published \d+/6000 events, [\d,]+ events/s", line) for line in lines), stdout
    assert "published 6000/6000 events" in stdout
    abusive = [line.split()[1] for line in lines if line.startswith("abusive ")]
    assert len([b for b in abusive if b.endswith("/24")]) == 3 and len([b for b in abusive if b.endswith("/64")]) == 2
    assert len(stream.counted) + len(stream.sessions) == 6000 + 3  # plus one node_reset per node


@pytest.mark.parametrize("scope", [[], ["--node", "sim-2"]], ids=["cluster", "node"])
async def test_show_ip_on_an_abusive_block_equals_the_oracle(simulated: Any, scope: list[str]) -> None:
    running, stream, stdout = simulated
    block = next(line.split()[1] for line in stdout.splitlines() if line.startswith("abusive ") and "/24" in line)
    before = time.time()
    done = await asyncio.to_thread(run_cli, running.env, "show-ip", block, *scope)
    node = scope[1] if scope else None
    assert done.returncode == 0, done.stderr
    got = done.stdout.splitlines()
    assert got in (show_ip_expected(stream, block, node, before), show_ip_expected(stream, block, node, time.time()))
    assert got[0].startswith("Connections 3600/0: ") and int(got[0].split()[-1]) > 0


async def test_query_prints_the_value_or_the_error(simulated: Any) -> None:
    running, stream, _ = simulated
    ip = next(e["ip"] for e in stream.counted if e["event"] == "rejection" and e["node"] == "sim-2")
    args = ["--monitor", "3600,2", "--ip", ip, "--cidr", "/24", "--startv", "0", "--endv", "1", "--node", "sim-2"]
    before = time.time()
    done = await asyncio.to_thread(run_cli, running.env, "query", "rejections", *args)
    want = {
        expected(stream, "rejections", "3600,2", {"cidr": "/24", "endv": 1}, ip=ip, node="sim-2", now=now)
        for now in (before, time.time())
    }
    assert done.returncode == 0 and int(done.stdout) in want and int(done.stdout) > 0, done
    failed = await asyncio.to_thread(
        run_cli, running.env, "query", "connections", "--monitor", "120,5", "--cluster", "--ip", ip
    )
    assert failed.returncode == 1 and failed.stdout == ""
    assert failed.stderr == "error unknown_monitor: monitor '120,5' is not configured; configured: 3600,2 86400,2\n"
    missing = await asyncio.to_thread(run_cli, running.env, "query", "connections", "--monitor", "3600,2")
    assert missing.returncode == 1 and missing.stderr.startswith("error missing_ip: ")  # fleet scope: no node needed


@pytest.mark.parametrize("scope", [[], ["--node", "sim-2"]], ids=["default", "node"])
async def test_query_and_show_ip_share_the_default_scope(simulated: Any, scope: list[str]) -> None:
    """The same block and flags give the same count from both commands, and the default is the fleet."""
    running, stream, stdout = simulated
    block = next(line.split()[1] for line in stdout.splitlines() if line.startswith("abusive ") and "/24" in line)
    node = scope[1] if scope else None
    before = time.time()
    queried = await asyncio.to_thread(
        run_cli, running.env, "query", "connections", "--monitor", "3600,2", "--cidr", block, *scope
    )
    shown = await asyncio.to_thread(run_cli, running.env, "show-ip", block, *scope)
    want = {
        expected(stream, "connections", "3600,2", block, ip=None, node=node, now=now, cluster=node is None)
        for now in (before, time.time())
    }
    assert queried.returncode == 0 and shown.returncode == 0, (queried.stderr, shown.stderr)
    assert f"Connections 3600/0: {queried.stdout.strip()}" in shown.stdout.splitlines()
    assert int(queried.stdout) in want and int(queried.stdout) > 0


async def test_show_ip_compact_and_json_equal_the_oracle(simulated: Any) -> None:
    running, stream, stdout = simulated
    block = next(line.split()[1] for line in stdout.splitlines() if line.startswith("abusive ") and "/24" in line)
    before = time.time()
    compact = await asyncio.to_thread(run_cli, running.env, "show-ip", block, "--compact")
    as_json = await asyncio.to_thread(run_cli, running.env, "show-ip", block, "--json", "--node", "sim-1")
    full = [show_ip_expected(stream, block, None, now) for now in (before, time.time())]
    assert compact.returncode == 0 and compact.stdout.splitlines() in [
        [line for line in lines if not line.endswith(": 0")] for lines in full
    ]
    assert 0 < len(compact.stdout.splitlines()) < len(full[0])
    got = orjson.loads(as_json.stdout)
    assert (got["cidr"], got["node"]) == (block, "sim-1")
    lines = [f"{w['type'].capitalize()} {w['size']}/{w['offset']}: {w['value']}" for w in got["windows"]]
    assert lines in [show_ip_expected(stream, block, "sim-1", now) for now in (before, time.time())]
    nothing = await asyncio.to_thread(run_cli, running.env, "show-ip", "192.0.2.0/24", "--compact")
    assert nothing.stdout == "no traffic from 192.0.2.0/24 in any window\n"


async def dead_letter_lines(running: Running, *args: str, want: str) -> list[str]:
    """``deadletters`` output once ``want`` shows up in it (the worker dead-letters asynchronously)."""
    for _ in range(40):
        done = await asyncio.to_thread(run_cli, running.env, "deadletters", *args)
        assert done.returncode == 0, done.stderr
        if want in done.stdout:
            return done.stdout.splitlines()
        await asyncio.sleep(0.5)
    raise AssertionError(f"no {want!r} in deadletters output: {done.stdout!r}")


async def test_deadletters_shows_a_malformed_event(simulated: Any, tmp_path: Path) -> None:
    running, _, _ = simulated
    bad = orjson.dumps({"node": "mta-9", "ts": time.time(), "ip": "300.1.2.3", "event": "connection"})
    await publish(running.settings.bootstrap, running.settings.events_topic, [(b"mta-9", bad)])
    lines = await dead_letter_lines(running, "--from-beginning", want="invalid_ip")
    assert re.fullmatch(r"0 invalid_ip \S.*300\.1\.2\.3.*", lines[0]), lines
    assert (await dead_letter_lines(running, want="invalid_ip")) == lines

    follower = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "deadletters", "--follow"],
        cwd=REPO,
        env={**os.environ, **running.env},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        first = await asyncio.to_thread(follower.stdout.readline)  # type: ignore[union-attr]
        assert first.startswith("0 invalid_ip ")
        await publish(running.settings.bootstrap, running.settings.events_topic, [(b"mta-9", b"{not json")])
        second = await asyncio.wait_for(asyncio.to_thread(follower.stdout.readline), 30)  # type: ignore[union-attr]
        # Offsets grow (each dead letter is in a transaction, whose marker takes an offset too).
        assert re.fullmatch(r"[1-9]\d* invalid_json \S.*", second.strip()), second
    finally:
        follower.terminate()
        follower.wait(timeout=10)
