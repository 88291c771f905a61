"""``simulate`` refuses unbounded work up front and streams: its memory does not grow with the run."""

from __future__ import annotations

import time
import tracemalloc
import uuid

import pytest
from harness import create_topics
from usage import run_cli

from pipeline.cli.simulate import TrafficModel, simulate
from pipeline.settings import Settings

pytestmark = pytest.mark.integration

NOWHERE = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}  # validation must come before connecting


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--nodes", "101"], "inbound-audit simulate: error: argument --nodes: must be at most 100, got 101"),
        (["--nodes", "0"], "inbound-audit simulate: error: argument --nodes: must be greater than 0, got 0"),
        (["--rate", "100001"], "inbound-audit simulate: error: argument --rate: must be at most 100,000, got 100001"),
        (
            ["--rate", "100000", "--duration", "101"],
            "inbound-audit: simulate: --rate x --duration = 100000 x 101 s = 10,100,000 events; "
            "a run publishes 1 to 10,000,000",
        ),
        (
            ["--rate", "0.1", "--duration", "2"],
            "inbound-audit: simulate: --rate x --duration = 0.1 x 2 s = 0 events; a run publishes 1 to 10,000,000",
        ),
    ],
)
def test_out_of_bounds_runs_are_refused_in_one_line(args: list[str], message: str) -> None:
    started = time.monotonic()
    done = run_cli(NOWHERE, "simulate", *args)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines()[-1] == message
    assert time.monotonic() - started < 10


async def test_simulate_streams_instead_of_keeping_events(kafka_bootstrap: str) -> None:
    rate, nodes = 40_000, 3
    settings = Settings(bootstrap_servers=kafka_bootstrap, events_topic=f"t{uuid.uuid4().hex[:10]}.events")
    await create_topics(kafka_bootstrap, {settings.events_topic: 1})

    tracemalloc.start()
    try:
        model = TrafficModel(1, nodes)
        kept = [model.event(time.time()) for _ in range(rate)]  # what keeping the run's events costs
        events_bytes = tracemalloc.get_traced_memory()[0]
        del kept, model
        tracemalloc.reset_peak()
        baseline = tracemalloc.get_traced_memory()[0]
        result = await simulate(settings, nodes=nodes, rate=rate, duration=1, seed=1)
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()
    assert result.published == rate + nodes
    assert peak < events_bytes, (peak, events_bytes)
