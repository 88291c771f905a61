"""The Python client against a real worker: every Momentum options form equals the oracle."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import statistics
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from audit_oracle import Monitor, Stream, generate
from harness import publish
from usage import Running, expected, running_worker, settled, wait_caught_up

from pipeline.clients.client import AuditClient, SyncAuditClient
from pipeline.errors import AuditError, AuditTimeout

pytestmark = pytest.mark.integration

MONITORS = [Monitor(60, 5), Monitor(300, 6), Monitor(1800, 4)]
WINDOWED = ("connections", "receptions", "rejections")


@dataclasses.dataclass
class Served:
    running: Running
    stream: Stream


@pytest.fixture(scope="module")
async def served(kafka_bootstrap: str) -> AsyncIterator[Served]:
    stream = generate(MONITORS, time.time(), 20_000, seed=41)
    async with running_worker(kafka_bootstrap, " ".join(m.name for m in MONITORS)) as running:
        await publish(running.settings.bootstrap, running.settings.events_topic, stream.messages)
        async with AuditClient(running.settings) as client:
            await wait_caught_up(client, stream, "1800,4")
        yield Served(running, stream)


def cases(stream: Stream, count: int, seed: int) -> list[dict[str, Any]]:
    """Calls in every options form: absent, string (/N, ADDR, ADDR/N), table with/without cluster."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        ip = rng.choice(stream.ips)
        plain = ip.removeprefix("::ffff:")
        width = 128 if ":" in plain else 32
        op = WINDOWED[i % 3] if i % 7 else "inbound_session_count"
        monitor = rng.choice(MONITORS)
        cidr = [None, f"/{rng.randint(0, width)}", plain, f"{plain}/{rng.randint(0, width)}"][i % 4]
        a, b = sorted(rng.randrange(monitor.count) for _ in range(2))
        options: Any
        shape = (i // 4) % 3
        if shape == 0:
            options = cidr
        elif shape == 1:
            options = {"startv": a, "endv": b, "cluster": rng.random() < 0.5, **({"cidr": cidr} if cidr else {})}
        else:
            options = {"endv": b} if cidr is None else {"cidr": cidr, "cluster": False}
        if op == "inbound_session_count":
            options = cidr
        out.append(
            {
                "op": op,
                "monitor": monitor.name,
                "options": options,
                "ip": ip,
                "node": f"mta-{rng.randint(1, 4)}",
                "service": rng.choice(["SMTP", "ECStream"]),
            }
        )
    return out


async def ask(client: AuditClient, case: dict[str, Any]) -> int:
    if case["op"] == "inbound_session_count":
        return await client.inbound_session_count(case["options"], case["service"], ip=case["ip"], node=case["node"])
    method = getattr(client, case["op"])
    return await method(case["monitor"], case["options"], ip=case["ip"], node=case["node"])


def oracle(stream: Stream, case: dict[str, Any]) -> Any:
    return lambda now: expected(
        stream,
        case["op"],
        case["monitor"],
        case["options"],
        ip=case["ip"],
        node=case["node"],
        now=now,
        service=case["service"],
    )


async def test_every_options_form_matches_the_oracle(served: Served) -> None:
    async with AuditClient(served.running.settings) as client:
        wrong, nonzero = [], 0
        for case in cases(served.stream, 240, seed=42):
            got, want = await settled(lambda case=case: ask(client, case), oracle(served.stream, case))
            nonzero += got > 0
            if got not in want:
                wrong.append((case, got, want))
    assert not wrong, f"{len(wrong)} answers differ, e.g. {wrong[:3]}"
    assert nonzero > 60, "too few non-zero answers to prove anything"


async def test_context_ip_node_and_cluster_default(served: Served) -> None:
    """Like a policy: the connecting ip and node come from the client, not from each call."""
    stream = served.stream
    ip = "203.0.113.7"
    async with (
        AuditClient(served.running.settings, ip=ip, node="mta-2") as local,
        AuditClient(served.running.settings, ip=ip, cluster=True) as fleet,
    ):
        for options in (None, "/24", {"cidr": "/24", "endv": 5}, {"cidr": "/24", "cluster": False, "endv": 5}):
            got, want = await settled(
                lambda options=options: local.connections("300,6", options),
                lambda now, options=options: expected(
                    stream, "connections", "300,6", options, ip=ip, node="mta-2", now=now
                ),
            )
            assert got in want, (options, got, want)
        for options in (None, "/24", {"cidr": "/16", "endv": 3}):
            got, want = await settled(
                lambda options=options: fleet.rejections("1800,4", options),
                lambda now, options=options: expected(
                    stream, "rejections", "1800,4", options, ip=ip, node=None, now=now, cluster=True
                ),
            )
            assert got in want, (options, got, want)
        at = stream.t0 - 120
        got = await fleet.receptions("300,6", {"cidr": "/0", "endv": 5}, at=at)
        assert got == expected(
            stream, "receptions", "300,6", {"cidr": "/0", "endv": 5}, ip=ip, node=None, now=at, cluster=True
        )
        assert got > 0


async def test_sync_client_matches_the_oracle(served: Served) -> None:
    chosen = cases(served.stream, 30, seed=43)

    def run() -> list[tuple[int, set[int]]]:
        with SyncAuditClient(served.running.settings) as client:
            out = []
            for case in chosen:
                before = time.time()
                if case["op"] == "inbound_session_count":
                    got = client.inbound_session_count(
                        case["options"], case["service"], ip=case["ip"], node=case["node"]
                    )
                else:
                    got = getattr(client, case["op"])(
                        case["monitor"], case["options"], ip=case["ip"], node=case["node"]
                    )
                want = oracle(served.stream, case)
                out.append((got, {want(before), want(time.time())}))
            return out

    results = await asyncio.to_thread(run)
    assert all(got in want for got, want in results), results


async def test_fifty_concurrent_queries_share_one_client(served: Served) -> None:
    chosen = cases(served.stream, 50, seed=44)
    async with AuditClient(served.running.settings) as client:
        before = time.time()
        answers = await asyncio.gather(*(ask(client, case) for case in chosen))
        after = time.time()
    for case, got in zip(chosen, answers, strict=True):
        want = oracle(served.stream, case)
        assert got in {want(before), want(after)}, (case, got)


ERRORS: list[tuple[str, str | None, Any, dict[str, Any], str]] = [
    ("connections", "300,6", {"startv": "1", "cluster": True}, {"ip": "10.0.0.1"}, "invalid_request"),
    ("teleports", "300,6", None, {"ip": "10.0.0.1", "node": "mta-1"}, "unknown_op"),
    ("connections", "120,5", None, {"ip": "10.0.0.1", "node": "mta-1"}, "unknown_monitor"),
    ("receptions", "300,6", {"startv": 3, "endv": 1, "cluster": True}, {}, "invalid_range"),
    ("rejections", "300,6", {"endv": 6, "cluster": True}, {}, "window_out_of_range"),
    ("connections", "300,6", None, {"ip": "10.0.0.1"}, "missing_node"),
    ("connections", "300,6", {"cidr": "/24", "cluster": True}, {}, "missing_ip"),
    ("inbound_session_count", None, None, {"node": "mta-1"}, "missing_ip"),
    ("connections", "300,6", {"cidr": "10.0.0.0/33", "cluster": True}, {}, "invalid_cidr"),
]


async def test_every_error_code_raises_audit_error(served: Served) -> None:
    async with AuditClient(served.running.settings) as client:
        for op, monitor, options, context, code in ERRORS:
            with pytest.raises(AuditError) as caught:
                await client.query(op, monitor, options, **context)
            assert caught.value.code == code and caught.value.message, (op, options, caught.value)
        with pytest.raises(AuditError) as caught:
            await client.connections("120,5", {"cluster": True}, ip="10.0.0.1")
        assert caught.value.message == "monitor '120,5' is not configured; configured: 60,5 300,6 1800,4"


async def test_timeout_when_nobody_serves_the_topic(served: Served) -> None:
    served_topic = served.running.settings.requests_topic
    settings = dataclasses.replace(served.running.settings, requests_topic=f"{served_topic}.nobody")
    async with AuditClient(settings, timeout_s=1.5) as client:
        started = time.monotonic()
        with pytest.raises(AuditTimeout) as caught:
            await client.connections("300,6", {"cluster": True}, ip="10.0.0.1")
        assert time.monotonic() - started < 5
    assert caught.value.code == "timeout" and "worker running" in caught.value.message


async def test_round_trip_latency(served: Served) -> None:
    """200 sequential queries; printed for the README, bounded loosely so a regression shows."""
    async with AuditClient(served.running.settings, ip="203.0.113.7", cluster=True) as client:
        samples = []
        for _ in range(200):
            started = time.perf_counter()
            await client.connections("300,6", "/24")
            samples.append(time.perf_counter() - started)
    samples.sort()
    p50, p99 = statistics.median(samples), samples[int(len(samples) * 0.99) - 1]
    print(f"client round trip over 200 sequential queries: p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms")
    assert p50 < 0.5
