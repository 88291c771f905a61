"""The worker's web endpoints on the real broker: readiness, health, metrics, HTTP queries."""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from typing import Any

import aiohttp
import orjson
import pytest
from audit_oracle import Monitor, Stream, generate, random_requests
from harness import Requester, WorkerProcess, isolated_env, prepare_topics, publish
from prometheus_client.parser import text_string_to_metric_families

from pipeline.app.web import request_from_params

pytestmark = pytest.mark.integration

MONITORS = [Monitor(60, 10), Monitor(300, 6)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Web:
    """GETs against one worker's web server."""

    def __init__(self, session: aiohttp.ClientSession, port: int) -> None:
        self.session, self.base = session, f"http://127.0.0.1:{port}"

    async def get(self, path: str, params: dict[str, str] | None = None) -> tuple[int, bytes]:
        async with self.session.get(self.base + path, params=params) as response:
            return response.status, await response.read()

    async def samples(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of ``/metrics``, by name and sorted labels."""
        status, body = await self.get("/metrics")
        assert status == 200
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body.decode())
            for s in family.samples
        }


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


async def wait_applied(web: Web, stream: Stream, timeout_s: float = 60.0) -> dict[Any, float]:
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


def as_params(request: dict[str, Any]) -> dict[str, str]:
    """A bus request as query parameters (booleans as true/false, numbers as their text)."""
    return {k: ("true" if v else "false") if isinstance(v, bool) else str(v) for k, v in request.items()}


#: Query parameters and the code both the bus and HTTP must answer with.
ERROR_PARAMS: list[tuple[dict[str, str], str]] = [
    ({"monitor": "300,6", "cluster": "true", "ip": "10.0.0.1"}, "invalid_request"),
    ({"op": "connections", "monitor": "300,6", "startv": "x", "cluster": "true", "ip": "10.0.0.1"}, "invalid_request"),
    ({"op": "connections", "monitor": "300,6", "cluster": "maybe", "ip": "10.0.0.1"}, "invalid_request"),
    ({"op": "connections", "monitor": "300,6", "at": "later", "cluster": "1", "ip": "10.0.0.1"}, "invalid_request"),
    ({"op": "teleports", "monitor": "300,6"}, "unknown_op"),
    ({"op": "connections", "monitor": "120,5", "cluster": "true", "ip": "10.0.0.1"}, "unknown_monitor"),
    ({"op": "receptions", "monitor": "300,6", "startv": "3", "endv": "1", "cluster": "true"}, "invalid_range"),
    ({"op": "rejections", "monitor": "300,6", "endv": "99", "cluster": "true"}, "window_out_of_range"),
    ({"op": "connections", "monitor": "300,6", "ip": "10.0.0.1"}, "missing_node"),
    ({"op": "connections", "monitor": "300,6", "cidr": "/24", "cluster": "true"}, "missing_ip"),
    ({"op": "connections", "monitor": "300,6", "cidr": "10.0.0.0/33", "cluster": "true"}, "invalid_cidr"),
]


async def test_ready_health_metrics_and_http_queries(kafka_bootstrap: str) -> None:
    port = free_port()
    env = isolated_env(kafka_bootstrap, 2, " ".join(m.name for m in MONITORS), INBOUND_AUDIT_WEB_PORT=str(port))
    settings = await prepare_topics(env)
    stream = generate(MONITORS, time.time(), 4000, seed=71)
    await publish(settings.bootstrap, settings.events_topic, stream.messages)
    worker = WorkerProcess(env).start()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            web = Web(session, port)
            # Not ready while the table recovers (the group must form first), ready after.
            seen = await poll_ready(web, worker)
            assert seen[0] == (503, {"ready": False, "reason": f"replaying {settings.state_topic}"}), seen[:3]
            assert seen[-1][1]["ready"] is True and worker.log_has("answering queries")
            assert await web.get("/healthz") == (200, orjson.dumps({"ok": True, "reason": "alive"}))

            samples = await wait_applied(web, stream)
            assert samples[("inbound_audit_ready", ())] == 1
            assert samples[("inbound_audit_events_total", ())] == len(stream.counted) + len(stream.sessions)
            letters = {
                dict(labels)["reason"]: value
                for (name, labels), value in samples.items()
                if name == "inbound_audit_dead_letters_total" and dict(labels)["source"] == "events"
            }
            assert letters == Counter(stream.bad) and sum(letters.values()) > 0
            assert samples[("inbound_audit_redelivered_messages_total", ())] == 0
            assert samples[("inbound_audit_delta_gaps_total", ())] == 0
            lag = {labels: v for (name, labels), v in samples.items() if name == "inbound_audit_state_lag"}
            assert lag == {(("partition", "0"),): 0, (("partition", "1"),): 0}
            assert samples[("inbound_audit_replica_addresses", (("monitor", "300,6"),))] > 0
            assert samples[("inbound_audit_replica_bytes", (("monitor", "300,6"),))] > 0
            assert samples[("process_resident_memory_bytes", ())] > 0

            async with Requester(settings) as rq:
                mismatches = []
                for request, expected in random_requests(stream, 50, seed=72):
                    sent_at = time.time()
                    status, body = await web.get("/query", as_params(request))
                    bus = await rq.ask(dict(request))
                    wants = {expected(sent_at), expected(time.time())}
                    http = orjson.loads(body)
                    if status != 200 or http != {"ok": True, "value": http.get("value")} or http["value"] not in wants:
                        mismatches.append((request, status, http, sorted(wants)))
                    elif bus.get("value") not in wants or (len(wants) == 1 and bus["value"] != http["value"]):
                        mismatches.append((request, "bus", bus, sorted(wants)))
                assert not mismatches, f"{len(mismatches)} of 50 differ, e.g. {mismatches[:3]}"

                for params, code in ERROR_PARAMS:
                    status, body = await web.get("/query", params)
                    bus_request = {k: v for k, v in request_from_params(params).items() if k != "id"}
                    bus = await rq.ask(bus_request)
                    http = orjson.loads(body)
                    assert status == 400 and http == {"ok": False, "error": bus["error"]}, (params, http, bus)
                    assert bus["error"]["code"] == code, (params, bus)
                await rq.send_raw(b"this is not json")
                asked = 2 * (50 + len(ERROR_PARAMS))

                deadline = time.monotonic() + 10
                while (samples := await web.samples())[("inbound_audit_unroutable_requests_total", ())] < 1:
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.2)
            answered = {
                dict(labels)["op"] + ":" + dict(labels)["outcome"]: value
                for (name, labels), value in samples.items()
                if name == "inbound_audit_requests_total"
            }
            assert sum(answered.values()) == asked
            assert answered["unknown:unknown_op"] == 2 and answered["connections:missing_node"] == 2
            assert answered["unknown:invalid_request"] == 2  # no op at all
            assert samples[("inbound_audit_query_latency_seconds_count", ())] == asked
            assert samples[("inbound_audit_dead_letters_total", (("reason", "invalid_json"), ("source", "requests")))]
    finally:
        worker.stop()
        print(*worker.lines[-15:], sep="\n")
