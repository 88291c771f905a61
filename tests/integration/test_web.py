"""The worker's web endpoints on the real broker: readiness, health, metrics, HTTP queries."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import orjson
import pytest
from audit_oracle import Monitor, generate, random_requests
from harness import Requester
from web_client import poll_ready, serving_worker, wait_applied

from pipeline.app.web import request_from_params

pytestmark = pytest.mark.integration

MONITORS = [Monitor(60, 10), Monitor(300, 6)]


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
    stream = generate(MONITORS, time.time(), 4000, seed=71)
    async with serving_worker(kafka_bootstrap, MONITORS, stream) as (settings, worker, web):
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
        for lag_metric in ("inbound_audit_state_lag", "inbound_audit_consumer_lag"):
            lag = {labels: v for (name, labels), v in samples.items() if name == lag_metric}
            assert lag == {(("partition", "0"),): 0, (("partition", "1"),): 0}, lag_metric
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
