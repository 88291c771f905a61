"""A real Prometheus (Debian's package) scrapes a real worker with deploy/prometheus.yml's job."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from audit_oracle import Monitor, generate
from harness import REPO
from web_client import free_port, poll_ready, serving_worker, wait_applied

pytestmark = pytest.mark.integration

PROMETHEUS = Path("/usr/bin/prometheus")
PROMTOOL = Path("/usr/bin/promtool")
MONITORS = [Monitor(60, 5)]


def scrape_config(worker_port: int) -> dict[str, Any]:
    """deploy/prometheus.yml with its one job pointed at the test's worker, scraping every second."""
    config = yaml.safe_load((REPO / "deploy" / "prometheus.yml").read_text(encoding="utf-8"))
    (job,) = config["scrape_configs"]
    job["scrape_interval"] = "1s"
    job["static_configs"] = [{"targets": [f"127.0.0.1:{worker_port}"]}]
    return config


@contextmanager
def prometheus(config: dict[str, Any], workdir: Path) -> Iterator[str]:
    """A Prometheus on a free port with its own storage; yields its base URL."""
    port = free_port()
    config_file = workdir / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
    with (workdir / "prometheus.log").open("wb") as log:
        proc = subprocess.Popen(
            [
                str(PROMETHEUS),
                f"--config.file={config_file}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def instant(session: aiohttp.ClientSession, base: str, promql: str) -> dict[tuple[tuple[str, str], ...], float]:
    """A PromQL instant query: value by the series' sorted labels, the metric's name left out
    (empty while Prometheus starts)."""
    try:
        async with session.get(f"{base}/api/v1/query", params={"query": promql}) as response:
            body = await response.json()
    except aiohttp.ClientConnectionError:
        return {}
    assert body["status"] == "success", body
    return {
        tuple(sorted((k, v) for k, v in s["metric"].items() if k != "__name__")): float(s["value"][1])
        for s in body["data"]["result"]
    }


async def until(session: aiohttp.ClientSession, base: str, promql: str, expected: Any, timeout_s: float = 60.0) -> None:
    """Wait until the query's {labels: value} is ``expected``."""
    deadline = time.monotonic() + timeout_s
    while (got := await instant(session, base, promql)) != expected:
        assert time.monotonic() < deadline, f"{promql}: {got} != {expected}"
        await asyncio.sleep(0.5)


def test_promtool_accepts_the_scrape_example() -> None:
    if not PROMTOOL.exists():
        pytest.fail(f"{PROMTOOL} not installed: run deploy/system-deps (Debian's prometheus)")
    checked = subprocess.run(
        [str(PROMTOOL), "check", "config", str(REPO / "deploy" / "prometheus.yml")], capture_output=True, text=True
    )
    assert checked.returncode == 0 and "SUCCESS" in checked.stdout, checked.stdout + checked.stderr


async def test_prometheus_scrapes_the_published_counts(kafka_bootstrap: str, tmp_path: Path) -> None:
    if not PROMETHEUS.exists():
        pytest.fail(f"{PROMETHEUS} not installed: run deploy/system-deps (Debian's prometheus)")
    stream = generate(MONITORS, time.time(), 2000, seed=101)
    async with serving_worker(kafka_bootstrap, MONITORS, stream) as (_, worker, web):
        config = scrape_config(web.port)
        job = config["scrape_configs"][0]["job_name"]
        await poll_ready(web, worker)
        await wait_applied(web, stream)
        with prometheus(config, tmp_path) as base:
            target = (("instance", f"127.0.0.1:{web.port}"), ("job", job))
            await until(web.session, base, "up", {target: 1.0})
            published = len(stream.counted) + len(stream.sessions)
            await until(web.session, base, "inbound_audit_events_total", {target: float(published)})
            by_reason = 'sum by (reason) (inbound_audit_dead_letters_total{source="events"})'
            letters = {(("reason", reason),): float(count) for reason, count in Counter(stream.bad).items()}
            await until(web.session, base, by_reason, letters)
