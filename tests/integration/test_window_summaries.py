"""Window summaries when their publisher changes (SPEC section 6): every closed window exactly once per
scope, with the whole count, while the publishing worker is paused past its session and resumed
(a fenced zombie), then SIGKILLed (a takeover). Read as downstream readers must: read_committed.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter

import orjson
import pytest
from harness import WorkerProcess, isolated_env, prepare_topics, publish, read_topic
from test_pipeline_e2e import stop_all

pytestmark = pytest.mark.integration

SIZE_S = 2


async def _stream(bootstrap: str, topic: str, sent: list[dict], stop: asyncio.Event) -> None:
    """Three events every quarter second, stamped now, from two nodes; ``sent`` is the record."""
    count = 0
    while not stop.is_set():
        now = time.time()
        batch = [
            {
                "node": f"mta-{j % 2 + 1}",
                "ts": now,
                "ip": f"198.51.100.{j % 200}",
                "event": "connection",
                "n": 1 + j % 3,
            }
            for j in range(count, count + 3)
        ]
        count += 3
        await publish(bootstrap, topic, [(None, orjson.dumps(batch))])
        sent.extend(batch)
        await asyncio.sleep(0.25)


async def _summaries(bootstrap: str, topic: str) -> list[dict]:
    return [orjson.loads(r.value) for r in await read_topic(bootstrap, topic)]


async def test_each_window_is_summarised_once_whole_across_a_zombie_and_a_takeover(kafka_bootstrap: str) -> None:
    env = isolated_env(kafka_bootstrap, 1, f"{SIZE_S},30", INBOUND_AUDIT_WINDOW_GRACE_S="0.5")
    settings = await prepare_topics(env)
    first = WorkerProcess(env, name="first").start()
    second = WorkerProcess(env, name="second")
    sent: list[dict] = []
    stop = asyncio.Event()
    streaming: asyncio.Task[None] | None = None
    try:
        await first.wait_for_log("publishing window summaries")  # the only member: it owns partition 0
        streaming = asyncio.create_task(_stream(settings.bootstrap, settings.events_topic, sent, stop))
        second.start()
        await second.wait_ready()
        await asyncio.sleep(4)
        first.send(signal.SIGSTOP)  # past the 6 s session: the second takes over and fences it
        await second.wait_for_log("publishing window summaries", timeout_s=40)
        await asyncio.sleep(2)
        first.send(signal.SIGCONT)
        await asyncio.sleep(6)
        first.kill(signal.SIGKILL)  # whichever publishes now, the second ends up publishing
        await asyncio.sleep(10)
        stop.set()
        await streaming
        last_window = max(int(e["ts"] // SIZE_S) * SIZE_S for e in sent)
        deadline = time.monotonic() + 60
        records = await _summaries(kafka_bootstrap, settings.windows_topic)
        while not any(s["window_start"] == last_window and s["scope"] == "cluster" for s in records):
            assert time.monotonic() < deadline, f"no summary of the last window {last_window}"
            await asyncio.sleep(0.5)
            records = await _summaries(kafka_bootstrap, settings.windows_topic)
    finally:
        stop.set()
        if streaming is not None:
            await streaming
        stop_all([first, second])

    per_scope = Counter((s["window_start"], s["scope"], s.get("node")) for s in records)
    assert [key for key, times in per_scope.items() if times > 1] == []  # nothing twice
    cluster = sorted(s["window_start"] for s in records if s["scope"] == "cluster")
    assert cluster == list(range(cluster[0], cluster[-1] + SIZE_S, SIZE_S))  # no window left out
    expected: Counter[tuple[int, str | None]] = Counter()
    for event in sent:
        start = int(event["ts"] // SIZE_S) * SIZE_S
        expected[(start, None)] += event["n"]
        expected[(start, event["node"])] += event["n"]
    got = {(s["window_start"], s.get("node")): s["totals"]["connection"] for s in records}
    first_window = int(sent[0]["ts"] // SIZE_S) * SIZE_S
    for key, total in expected.items():
        assert got.get(key) == total, (key, got.get(key), total)  # every window whole, each node too
    assert cluster[0] <= first_window and cluster[-1] >= last_window
    assert all(total == 0 for (start, _), total in got.items() if (start, _) not in expected)
