"""The web endpoints in-process: only Faust's web server runs, no broker is needed."""

from __future__ import annotations

import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from pipeline.app.app import AuditApp, build_app
from pipeline.app.web import request_from_params
from pipeline.settings import load_settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[AuditApp, str]]:
    port = free_port()
    env = {"INBOUND_AUDIT_WEB_PORT": str(port), "INBOUND_AUDIT_HOME": str(tmp_path), "INBOUND_AUDIT_MONITORS": "60,2"}
    audit = build_app(load_settings(env), "127.0.0.1:1")
    await audit.app.web.start()
    try:
        yield audit, f"http://127.0.0.1:{port}"
    finally:
        await audit.app.web.stop()


async def get(base: str, path: str, params: dict[str, str] | None = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(base + path, params=params) as response:
        return response.status, orjson.loads(await response.read())


async def metric_samples(base: str) -> dict[str, float]:
    async with aiohttp.ClientSession() as session, session.get(base + "/metrics") as response:
        assert response.status == 200 and response.content_type == "text/plain"
        text = await response.text()
    return {
        s.name + str(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_health_follows_the_failure(served: tuple[AuditApp, str]) -> None:
    audit, base = served
    assert await get(base, "/healthz") == (200, {"ok": True, "reason": "alive"})
    audit.failure = "a write to Kafka failed"
    assert await get(base, "/healthz") == (503, {"ok": False, "reason": "a write to Kafka failed"})
    assert await get(base, "/ready") == (503, {"ready": False, "reason": "a write to Kafka failed"})


async def test_ready_and_queries_wait_for_recovery(served: tuple[AuditApp, str]) -> None:
    audit, base = served
    state = audit.settings.state_topic
    ask = {"op": "connections", "monitor": "60,2", "cluster": "true", "ip": "192.0.2.1"}
    assert await get(base, "/ready") == (503, {"ready": False, "reason": f"replaying {state}"})
    status, body = await get(base, "/query", ask)
    assert (status, body["error"]["code"]) == (503, "not_ready")
    assert (await metric_samples(base))["inbound_audit_ready[]"] == 0

    audit.manager.recovered.set()
    audit.summaries_published = 3
    status, body = await get(base, "/ready")
    assert status == 200 and body["ready"] is True
    assert await get(base, "/query", ask) == (200, {"ok": True, "value": 0})
    status, body = await get(base, "/query", {**ask, "endv": "2"})
    assert status == 400 and body["ok"] is False and body["error"]["code"] == "window_out_of_range"
    assert body["error"]["message"] == "endv=2 but monitor '60,2' keeps 2 window(s): 0..1"
    assert (await get(base, "/query", {**ask, "op": "x" * 50}))[1]["error"]["code"] == "unknown_op"

    samples = await metric_samples(base)
    assert samples["inbound_audit_ready[]"] == 1
    assert samples["inbound_audit_window_summaries_total[]"] == 3
    assert samples["inbound_audit_requests_total[('op', 'connections'), ('outcome', 'ok')]"] == 1
    assert samples["inbound_audit_requests_total[('op', 'connections'), ('outcome', 'window_out_of_range')]"] == 1
    # A request's own op text never becomes a label value.
    assert samples["inbound_audit_requests_total[('op', 'unknown'), ('outcome', 'unknown_op')]"] == 1
    assert samples["inbound_audit_query_latency_seconds_count[]"] == 3
    assert samples["inbound_audit_replica_addresses[('monitor', '60,2')]"] == 0


def test_query_parameters_are_typed_where_they_parse() -> None:
    params = {"op": "connections", "startv": "1", "endv": "x", "at": "1.5", "cluster": "false", "node": "mta-1"}
    assert request_from_params(params) == {
        "id": "http",
        "op": "connections",
        "node": "mta-1",
        "startv": 1,
        "endv": "x",  # parse_request refuses it as the bus would refuse "x"
        "at": 1.5,
        "cluster": False,
    }
    assert request_from_params({"cluster": "TRUE"})["cluster"] is True
    assert request_from_params({"cluster": "yes"})["cluster"] == "yes"


async def test_the_readme_lists_every_metric(served: tuple[AuditApp, str]) -> None:
    _, base = served
    async with aiohttp.ClientSession() as session, session.get(base + "/metrics") as response:
        families = {f.name for f in text_string_to_metric_families(await response.text())}
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `(inbound_audit_\w+)` \|", readme, re.MULTILINE))
    counters = {name.removesuffix("_total") for name in listed}
    # prometheus_client adds a ``_created`` series (the start time) to its histogram.
    ours = {name for name in families if name.startswith("inbound_audit_") and not name.endswith("_created")}
    assert ours == counters
    assert any(name.startswith("process_") for name in families)


def test_the_scrape_example_targets_every_compose_worker() -> None:
    deploy = Path(__file__).resolve().parents[2] / "deploy"
    scrape = yaml.safe_load((deploy / "prometheus.yml").read_text(encoding="utf-8"))
    compose = yaml.safe_load((deploy / "compose.yaml").read_text(encoding="utf-8"))
    published = {
        port.rsplit(":", 1)[0]
        for name, service in compose["services"].items()
        if name.startswith("worker")
        for port in service["ports"]
        if port.endswith(":6066")
    }
    (job,) = scrape["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert {t for c in job["static_configs"] for t in c["targets"]} == published


async def test_series_counts_over_http_and_new_defines_only_on_the_bus(tmp_path: Path) -> None:
    port = free_port()
    env = {
        "INBOUND_AUDIT_WEB_PORT": str(port),
        "INBOUND_AUDIT_HOME": str(tmp_path),
        "INBOUND_AUDIT_MONITORS": "60,2",
        "INBOUND_AUDIT_SERIES": "fails:cidr:60,2",
    }
    audit = build_app(load_settings(env), "127.0.0.1:1")
    await audit.app.web.start()
    base = f"http://127.0.0.1:{port}"
    try:
        audit.manager.recovered.set()
        definition = audit.definitions.catalog.get("fails")
        assert definition is not None
        now = audit.clock()
        audit.replica.series.apply([("series_add", definition, "n1", now, 0xC0000207, 4)], now)
        ask = {"op": "series_count", "series": "fails", "key": "/24", "ip": "192.0.2.1", "cluster": "true"}
        assert await get(base, "/query", ask) == (200, {"ok": True, "value": 4})
        status, body = await get(base, "/query", {**ask, "key": "2001:db8::/32"})
        assert (status, body["error"]["code"]) == (400, "invalid_key")
        known = {"op": "series_define", "series": "fails", "type": "cidr", "interval": "60", "num_windows": "2"}
        assert await get(base, "/query", known) == (200, {"ok": True, "value": 1})
        status, body = await get(base, "/query", {**known, "series": "new"})
        assert (status, body["error"]["code"]) == (400, "invalid_request")
        status, body = await get(base, "/query", {**known, "interval": "30"})
        assert (status, body["error"]["code"]) == (400, "series_conflict")
    finally:
        await audit.app.web.stop()
