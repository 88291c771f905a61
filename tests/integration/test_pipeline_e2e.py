"""End to end on the real broker: generated streams, real worker processes, oracle answers."""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter

import jsonschema
import orjson
import pytest
from audit_oracle import Monitor, Stream, generate, random_requests
from harness import Requester, WorkerProcess, isolated_env, prepare_topics, publish, read_topic

from pipeline.kafka.topic_specs import load_schema
from pipeline.settings import Settings

pytestmark = pytest.mark.integration

# Windows of several shapes, including 7 s ones that do not divide the others.
MONITORS = [Monitor(60, 10), Monitor(300, 6), Monitor(1800, 4), Monitor(7, 400)]
MONITORS_ENV = " ".join(m.name for m in MONITORS)


async def wait_caught_up(rq: Requester, stream: Stream, timeout_s: float = 120.0) -> None:
    """Poll fleet-wide totals until they equal the oracle's (the pipeline has read everything)."""
    probes = [
        ({"op": op, "monitor": "1800,4", "cidr": cidr, "cluster": True, "startv": 0, "endv": 3}, op, block)
        for op in ("connections", "receptions", "rejections")
        for cidr, block in (("0.0.0.0/0", (4, 0, 2**32 - 1)), ("::/0", (6, 0, 2**128 - 1)))
    ]
    deadline = time.monotonic() + timeout_s
    while True:
        now = time.time()
        got = [(await rq.ask(req))["value"] for req, _, _ in probes]
        want = [stream.count(op, MONITORS[2], block, 0, 3, now, None) for _, op, block in probes]
        if got == want:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"pipeline never caught up: got {got}, oracle {want}")
        await asyncio.sleep(0.5)


async def assert_answers_match(rq: Requester, stream: Stream, count: int, seed: int) -> None:
    mismatches = []
    requests = random_requests(stream, count, seed)
    for request, expected in requests:
        sent_at = time.time()
        reply = await rq.ask(dict(request))
        # The worker reads its clock somewhere between sending and receiving; when a window boundary
        # falls in that gap, either side's answer is exact.
        wants = {expected(sent_at), expected(time.time())}
        if reply.get("ok") is not True or reply.get("value") not in wants or set(reply) != {"id", "ok", "value"}:
            mismatches.append((request, reply, sorted(wants)))
    assert not mismatches, f"{len(mismatches)} of {len(requests)} answers differ, e.g. {mismatches[:3]}"


def dead_letter_reasons(records: list) -> Counter[str]:
    return Counter(orjson.loads(r.value)["reason"] for r in records)


def dead_letter_identity(record: object) -> tuple[int, str, str, str]:
    """What a repeated dead letter shares with the first: source offset, reason, detail, value."""
    letter = orjson.loads(record.value)  # type: ignore[attr-defined]
    return letter["offset"], letter["reason"], letter["detail"], letter["value"]


async def start_workers(env: dict[str, str], n: int) -> list[WorkerProcess]:
    workers = [WorkerProcess(env, name=f"worker-{i}").start() for i in range(n)]
    await asyncio.gather(*(w.wait_ready() for w in workers))
    return workers


def stop_all(workers: list[WorkerProcess]) -> None:
    for w in workers:
        w.stop()
        print(f"--- {w.name} log tail ---", *w.lines[-15:], sep="\n")


async def publish_stream(settings: Settings, stream: Stream) -> None:
    await publish(settings.bootstrap, settings.events_topic, stream.messages)


async def run_differential(kafka_bootstrap: str, n_workers: int, seed: int) -> list[WorkerProcess]:
    """Publish a generated stream to ``n_workers`` workers; every answer and dead letter must match."""
    env = isolated_env(kafka_bootstrap, 4, MONITORS_ENV)
    settings = await prepare_topics(env)
    stream = generate(MONITORS, time.time(), 50_000, seed=seed)
    workers = await start_workers(env, n_workers)
    try:
        await asyncio.gather(*(w.wait_for_log("owning events partitions") for w in workers))
        await publish_stream(settings, stream)
        async with Requester(settings) as rq:
            await wait_caught_up(rq, stream)
            await assert_answers_match(rq, stream, 500, seed=seed + 1)
        dead = await read_topic(kafka_bootstrap, settings.deadletter_topic, min_count=sum(stream.bad.values()))
        assert dead_letter_reasons(dead) == Counter(stream.bad)
        schema = load_schema("deadletter")
        for record in dead:
            letter = orjson.loads(record.value)
            jsonschema.validate(letter, schema)
            assert letter["source_topic"] == settings.events_topic and letter["detail"]
        return workers
    finally:
        stop_all(workers)


async def test_differential_single_worker(kafka_bootstrap: str) -> None:
    await run_differential(kafka_bootstrap, 1, seed=11)


async def test_two_workers_four_partitions(kafka_bootstrap: str) -> None:
    workers = await run_differential(kafka_bootstrap, 2, seed=21)
    # Both workers owned events partitions and answered part of the requests.
    for w in workers:
        owned = [line for line in w.lines if "owning events partitions" in line]
        assert owned and "[]" not in owned[-1], (w.name, owned)
    served = [
        max((int(m) for line in w.lines for m in re.findall(r"answered (\d+) requests", line)), default=0)
        for w in workers
    ]
    assert all(served), f"requests were not spread over both workers: {served}"


async def test_sigkill_mid_stream_loses_and_duplicates_nothing(kafka_bootstrap: str) -> None:
    # Small deltas: many "delta sent, offset not yet committed" moments for the kill to land in.
    env = isolated_env(
        kafka_bootstrap, 4, MONITORS_ENV, INBOUND_AUDIT_BATCH_MAX_EVENTS="2000", INBOUND_AUDIT_SNAPSHOT_INTERVAL_S="0.5"
    )
    settings = await prepare_topics(env)
    stream = generate(MONITORS, time.time(), 60_000, seed=31)
    (worker,) = await start_workers(env, 1)

    a_third_sent = asyncio.Event()

    async def trickle() -> None:
        chunks = 60
        step = -(-len(stream.messages) // chunks)
        for i in range(0, len(stream.messages), step):
            await publish(settings.bootstrap, settings.events_topic, stream.messages[i : i + step])
            if i >= len(stream.messages) // 3:
                a_third_sent.set()
            await asyncio.sleep(0.15)

    try:
        await worker.wait_for_log("owning events partitions")
        feeding = asyncio.create_task(trickle())
        # Kill it while events are still arriving and being counted (after a snapshot of some of
        # them), restart it while they still are.
        await a_third_sent.wait()
        written = sum("replica snapshot written" in line for line in worker.lines)
        while sum("replica snapshot written" in line for line in worker.lines) == written:
            await asyncio.sleep(0.05)
        worker.kill()
        assert not feeding.done(), "the stream ended before the kill: the test would prove nothing"
        worker.start()
        await feeding
        await worker.wait_ready()
        # It came back from a snapshot taken before the kill, then replayed the rest.
        assert worker.log_has("replica restored from"), worker.lines[-20:]
        async with Requester(settings) as rq:
            await wait_caught_up(rq, stream)
            await assert_answers_match(rq, stream, 300, seed=32)
        # Dead letters are at least once: none lost, and any extra one repeats a letter of the same
        # source message (that message was processed again after the kill).
        dead = await read_topic(kafka_bootstrap, settings.deadletter_topic, min_count=sum(stream.bad.values()))
        reasons, expected = dead_letter_reasons(dead), Counter(stream.bad)
        distinct = Counter(reason for _, reason, _, _ in {dead_letter_identity(r) for r in dead})
        assert all(reasons[r] >= n for r, n in expected.items()), (reasons, expected)
        assert all(distinct[r] <= expected[r] for r in distinct), (distinct, expected)
    finally:
        stop_all([worker])


async def test_graceful_restart_resumes_from_the_local_snapshot(kafka_bootstrap: str) -> None:
    env = isolated_env(kafka_bootstrap, 2, MONITORS_ENV)
    settings = await prepare_topics(env)
    stream = generate(MONITORS, time.time(), 20_000, seed=41)
    (worker,) = await start_workers(env, 1)
    try:
        await publish_stream(settings, stream)
        async with Requester(settings) as rq:
            await wait_caught_up(rq, stream)
        worker.stop()  # writes a final snapshot
        assert not worker.log_has("replica restored from")
        worker.start()
        await worker.wait_ready()
        assert worker.log_has("replica restored from") and worker.log_has("0 state offsets left to replay")
        async with Requester(settings) as rq:
            await wait_caught_up(rq, stream, timeout_s=10)
            await assert_answers_match(rq, stream, 200, seed=42)
    finally:
        stop_all([worker])


ERROR_CASES: list[tuple[dict[str, object], str]] = [
    ({"op": 7}, "invalid_request"),
    ({"op": "connections", "monitor": "300,6", "startv": "1", "cluster": True, "ip": "10.0.0.1"}, "invalid_request"),
    ({"op": "connections", "cluster": True, "ip": "10.0.0.1"}, "invalid_request"),
    ({"op": "teleports", "monitor": "300,6"}, "unknown_op"),
    ({"op": "connections", "monitor": "120,5", "startv": 9, "endv": 1}, "unknown_monitor"),
    ({"op": "receptions", "monitor": "300,6", "startv": 3, "endv": 1, "cluster": True}, "invalid_range"),
    ({"op": "receptions", "monitor": "300,6", "startv": -1, "endv": 1, "cluster": True}, "invalid_range"),
    ({"op": "rejections", "monitor": "300,6", "endv": 6, "cluster": True}, "window_out_of_range"),
    ({"op": "connections", "monitor": "300,6", "ip": "10.0.0.1"}, "missing_node"),
    ({"op": "connections", "monitor": "300,6", "cidr": "/24", "cluster": True}, "missing_ip"),
    ({"op": "inbound_session_count", "node": "mta-1"}, "missing_ip"),
    ({"op": "connections", "monitor": "300,6", "cidr": "10.0.0.0/33", "cluster": True}, "invalid_cidr"),
    ({"op": "connections", "monitor": "300,6", "cidr": "/64", "ip": "10.0.0.1", "cluster": True}, "invalid_cidr"),
]


async def test_every_error_code_and_unroutable_requests(kafka_bootstrap: str) -> None:
    env = isolated_env(kafka_bootstrap, 2, "60,1 300,6 1800,4")
    settings = await prepare_topics(env)
    workers = await start_workers(env, 1)
    try:
        async with Requester(settings) as rq:
            for request, code in ERROR_CASES:
                reply = await rq.ask(dict(request))
                assert reply["ok"] is False and reply["error"]["code"] == code, (request, reply)
                assert reply["error"]["message"]
            unknown = await rq.ask({"op": "connections", "monitor": "120,5", "cluster": True, "ip": "10.0.0.1"})
            assert unknown["error"]["message"] == "monitor '120,5' is not configured; configured: 60,1 300,6 1800,4"
            await rq.send_raw(b"this is not json")
            await rq.send_raw(orjson.dumps({"id": "no-reply-to", "op": "connections"}))
            await rq.send_raw(orjson.dumps(["an", "array"]))
            nowhere = {"id": "lost", "reply_to": "no.such.topic", "op": "connections", "monitor": "60,1"}
            await rq.send_raw(orjson.dumps({**nowhere, "cluster": True, "ip": "10.0.0.1"}))
            # No request makes a worker write into inbound-audit's own topics.
            for own in (settings.events_topic, settings.state_topic):
                steer = {"id": "steer", "reply_to": own, "op": "connections", "monitor": "60,1", "cluster": True}
                await rq.send_raw(orjson.dumps({**steer, "ip": "10.0.0.1"}))
            # The worker is still there, and answers at once although one reply cannot be delivered.
            ok_request = {"op": "connections", "monitor": "300, 6", "cluster": True, "ip": "192.0.2.1"}
            ok = await rq.ask(ok_request, timeout_s=3)
            assert ok["ok"] is True and ok["value"] == 0
        dead = await read_topic(kafka_bootstrap, settings.deadletter_topic, min_count=6)
        assert dead_letter_reasons(dead) == Counter(
            {
                "invalid_json": 1,
                "missing_reply_to": 1,
                "not_an_object": 1,
                "undeliverable_reply": 1,
                "reply_to_internal_topic": 2,
            }
        )
        assert await read_topic(kafka_bootstrap, settings.events_topic, timeout_s=2) == []
        assert all(orjson.loads(r.value)["source_topic"] == settings.requests_topic for r in dead)
    finally:
        stop_all(workers)


async def test_window_summaries_are_published_when_windows_close(kafka_bootstrap: str) -> None:
    # "2,1" keeps one window: its summary must still carry what the window counted (issue 10).
    env = isolated_env(kafka_bootstrap, 2, "2,5 2,1", INBOUND_AUDIT_WINDOW_GRACE_S="0.5")
    settings = await prepare_topics(env)
    workers = await start_workers(env, 1)
    try:
        # Publish at the start of a fresh 2 s window, so the events land well before it closes.
        start = (int(time.time() // 2) + 1) * 2
        await asyncio.sleep(start + 0.02 - time.time())
        events = [
            {"node": "mta-1", "ts": start + 0.5, "ip": "203.0.113.7", "event": "connection", "n": 5},
            {"node": "mta-1", "ts": start + 0.6, "ip": "203.0.113.8", "event": "rejection"},
            {"node": "mta-2", "ts": start + 0.7, "ip": "2001:db8::1", "event": "reception", "n": 2},
        ]
        await publish(settings.bootstrap, settings.events_topic, [(b"mta-1", orjson.dumps(events))])
        records = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            records = [orjson.loads(r.value) for r in await read_topic(kafka_bootstrap, settings.windows_topic)]
            closed = {s["monitor"] for s in records if s["window_start"] == start and s["scope"] == "cluster"}
            if closed == {"2,5", "2,1"}:
                break
            await asyncio.sleep(0.5)
        for summary in records:
            jsonschema.validate(summary, load_schema("window-summary"))
        mine = {(s["scope"], s.get("node")): s for s in records if s["window_start"] == start and s["monitor"] == "2,5"}
        one = {
            (s["scope"], s.get("node")): s["totals"]
            for s in records
            if s["window_start"] == start and s["monitor"] == "2,1"
        }
        assert one == {key: summary["totals"] for key, summary in mine.items()}
        cluster = mine[("cluster", None)]
        assert cluster["monitor"] == "2,5" and cluster["window_end"] == start + 2
        assert cluster["totals"] == {"connection": 5, "reception": 2, "rejection": 1}
        assert cluster["top"]["ipv4/24"] == [
            {"cidr": "203.0.113.0/24", "connection": 5, "reception": 0, "rejection": 1, "total": 6}
        ]
        assert cluster["top"]["ipv4/32"][0]["cidr"] == "203.0.113.7/32"
        assert cluster["top"]["ipv6/64"][0] == {
            "cidr": "2001:db8::/64",
            "connection": 0,
            "reception": 2,
            "rejection": 0,
            "total": 2,
        }
        assert mine[("node", "mta-2")]["totals"] == {"connection": 0, "reception": 2, "rejection": 0}
        # Closing is driven by the clock, not by events: the next, empty windows are summarised too.
        deadline = time.monotonic() + 15
        while not any(s["window_start"] > start and s["scope"] == "cluster" for s in records):
            assert time.monotonic() < deadline, "no summary for a later, empty window"
            await asyncio.sleep(0.5)
            records = [orjson.loads(r.value) for r in await read_topic(kafka_bootstrap, settings.windows_topic)]
        later = next(s for s in records if s["window_start"] > start and s["scope"] == "cluster")
        assert later["totals"] == {"connection": 0, "reception": 0, "rejection": 0}
    finally:
        stop_all(workers)
