"""The Faust worker under faults, on the real broker: every answer is checked against the oracle.

(a) SIGKILL one of two workers mid-stream, restart it so it rejoins; (b) SIGSTOP a worker past its
session while events flow, then SIGCONT; (c) a snapshot taken on another Kafka cluster is
ignored; (d) SIGTERM during a rebalance exits promptly.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator

import pytest
from audit_oracle import Stream, generate
from harness import Requester, WorkerProcess, isolated_env, prepare_topics, publish
from test_pipeline_e2e import MONITORS, MONITORS_ENV, assert_answers_match, start_workers, stop_all, wait_caught_up

from pipeline.core.snapshot import decode_snapshot, encode_snapshot, write_bytes_atomically
from pipeline.settings import Settings, load_settings

pytestmark = pytest.mark.integration


async def trickle(bootstrap: str, topic: str, messages: list, chunks: int, pause_s: float) -> None:
    step = -(-len(messages) // chunks)
    for i in range(0, len(messages), step):
        await publish(bootstrap, topic, messages[i : i + step])
        await asyncio.sleep(pause_s)


async def ask_all(rq: Requester, count: int, timeout_s: float) -> list[float]:
    """Send ``count`` fleet-wide requests at once; every one must be answered; seconds each took."""

    async def one(i: int) -> float:
        start = time.monotonic()
        reply = await rq.ask(
            {"op": "connections", "monitor": "1800,4", "cidr": "0.0.0.0/0", "cluster": True, "endv": 3},
            timeout_s=timeout_s,
        )
        assert reply["ok"] is True, reply
        return time.monotonic() - start

    return list(await asyncio.gather(*(one(i) for i in range(count))))


@contextlib.asynccontextmanager
async def two_workers_fed(
    bootstrap: str, events: int, seed: int, chunks: int, pause_s: float, **extra: str
) -> AsyncIterator[tuple[Settings, Stream, list[WorkerProcess], asyncio.Task[None]]]:
    """Two workers on a 4-partition group, and a task publishing ``events`` in ``chunks``."""
    env = isolated_env(bootstrap, 4, MONITORS_ENV, **extra)
    settings = await prepare_topics(env)
    stream = generate(MONITORS, time.time(), events, seed=seed)
    workers = await start_workers(env, 2)
    feeding: asyncio.Task[None] | None = None
    try:
        await asyncio.gather(*(w.wait_for_log("owning events partitions") for w in workers))
        publishing = trickle(settings.bootstrap, settings.events_topic, stream.messages, chunks, pause_s)
        feeding = asyncio.create_task(publishing)
        yield settings, stream, workers, feeding
    finally:
        if feeding is not None:
            feeding.cancel()
        stop_all(workers)


async def test_sigkill_one_of_two_then_rejoin(kafka_bootstrap: str) -> None:
    fed = two_workers_fed(kafka_bootstrap, 40_000, 71, 40, 0.15, INBOUND_AUDIT_BATCH_MAX_EVENTS="3000")
    async with fed as (settings, stream, workers, feeding):
        async with Requester(settings) as rq:
            # Every request partition has a committed offset before the kill (the takeover of
            # partitions without one is test_sigkill_before_any_request_was_committed).
            await ask_all(rq, 40, timeout_s=20.0)
            await asyncio.sleep(2.0)
            workers[1].kill()
            assert not feeding.done(), "the stream ended before the kill: the test would prove nothing"
            # Requests on the dead worker's partitions are answered by the survivor once the group
            # notices (session 6 s), inside the client's default timeout (20 s).
            took = await ask_all(rq, 40, timeout_s=20.0)
            workers[1].start()
            await feeding
            await workers[1].wait_ready()
            await wait_caught_up(rq, stream)
            await assert_answers_match(rq, stream, 300, seed=72)
            assert all(w.proc is not None and w.proc.poll() is None for w in workers), "a worker died"
            print(f"answers during the takeover: max {max(took):.1f} s")
            # The survivor alone: its own replica is exact too.
            workers[1].stop()
            await assert_answers_match(rq, stream, 150, seed=73)


async def test_sigkill_before_any_request_was_committed(kafka_bootstrap: str) -> None:
    """A takeover right after a new group started: no request partition has a committed offset.
    The survivor never answered the dead worker's requests in 3 of 3 runs until such partitions
    were sought back to their beginning (``transport.py``); now every request is answered within
    the client's timeout, and counts stay exact."""
    fed = two_workers_fed(kafka_bootstrap, 20_000, 75, 20, 0.3, INBOUND_AUDIT_BATCH_MAX_EVENTS="3000")
    async with fed as (settings, stream, workers, feeding):
        async with Requester(settings) as rq:
            await asyncio.sleep(1.0)
            workers[1].kill()
            # Sent at once, before the group noticed (session 6 s): the dead worker's partitions
            # hold some of them, never committed.
            took = await ask_all(rq, 40, timeout_s=20.0)
            await feeding
            await wait_caught_up(rq, stream)
            await assert_answers_match(rq, stream, 200, seed=76)
            survivor = workers[0]
            assert survivor.proc is not None and survivor.proc.poll() is None, "the survivor died"
            # Delivered by Faust, not rescued by the stall guard (which would answer after ~17 s).
            assert not [line for line in survivor.lines if "reading it directly" in line]
            print(f"answers during the takeover: max {max(took):.1f} s")


async def test_sigstop_past_the_session_then_sigcont(kafka_bootstrap: str) -> None:
    async with two_workers_fed(kafka_bootstrap, 30_000, 81, 40, 0.2) as (settings, stream, workers, feeding):
        paused = workers[0]
        async with Requester(settings) as rq:
            # Every request partition gets a committed offset first, as in the SIGKILL test.
            await ask_all(rq, 40, timeout_s=20.0)
            await asyncio.sleep(1.0)
            assert paused.proc is not None
            paused.proc.send_signal(signal.SIGSTOP)
            # Queries sent while it is frozen, on all request partitions: the other worker takes
            # its partitions over once the session (6 s) expires.
            asking = asyncio.create_task(ask_all(rq, 30, timeout_s=25.0))
            await asyncio.sleep(10.0)
            paused.proc.send_signal(signal.SIGCONT)
            await asking
            await feeding
            await asyncio.sleep(3.0)
            code = paused.proc.poll()
            # Alive means serving (it rejoined); otherwise it must have exited non-zero on its own.
            assert code is None or code != 0, "the paused worker exited 0"
            await wait_caught_up(rq, stream)
            await ask_all(rq, 30, timeout_s=10.0)
            await assert_answers_match(rq, stream, 300, seed=82)


async def test_snapshot_from_another_cluster_is_ignored(kafka_bootstrap: str) -> None:
    env = isolated_env(kafka_bootstrap, 2, MONITORS_ENV)
    settings = await prepare_topics(env)
    stream = generate(MONITORS, time.time(), 10_000, seed=91)
    (worker,) = await start_workers(env, 1)
    try:
        await worker.wait_for_log("owning events partitions")
        await publish(settings.bootstrap, settings.events_topic, stream.messages)
        async with Requester(settings) as rq:
            await wait_caught_up(rq, stream)
        worker.stop()  # writes its snapshot
        path = load_settings(env).snapshot_path
        snapshot = decode_snapshot(path.read_bytes(), settings.monitors)
        assert snapshot is not None
        # The same topic name on another cluster, with counts that are not this cluster's.
        snapshot.cluster_id = "another-kafka-cluster"
        snapshot.replica.counts = type(snapshot.replica.counts)(settings.monitors)
        write_bytes_atomically(path, encode_snapshot(snapshot))
        worker.start()
        await worker.wait_ready()
        assert worker.log_has("ignoring the snapshot") and worker.log_has("another-kafka-cluster")
        assert not worker.log_has("replica restored from")
        async with Requester(settings) as rq:
            await wait_caught_up(rq, stream)
            await assert_answers_match(rq, stream, 150, seed=92)
    finally:
        stop_all([worker])


async def test_sigterm_stops_quietly(kafka_bootstrap: str) -> None:
    """A graceful stop saves its snapshot and says nothing of Kafka: the watchdog's check, cut
    short by the stop closing its producer, used to log "Kafka is not reachable" on every stop."""
    env = isolated_env(kafka_bootstrap, 2, MONITORS_ENV)
    await prepare_topics(env)
    workers = await start_workers(env, 1)
    await asyncio.sleep(2.5)  # the watchdog has checked the broker a few times
    stop_all(workers)
    lines = workers[0].lines
    assert workers[0].proc is not None and workers[0].proc.returncode == 0
    stopping = [i for i, line in enumerate(lines) if "Signal received: 15" in line]
    assert stopping, lines[-20:]
    after = lines[stopping[0] :]
    assert any("replica snapshot written" in line for line in after), after
    warnings = [line for line in after if "WARNING" in line or "ERROR" in line or "CRITICAL" in line]
    assert warnings == [], warnings


async def test_sigterm_during_a_rebalance_exits_promptly(kafka_bootstrap: str) -> None:
    env = isolated_env(kafka_bootstrap, 4, MONITORS_ENV)
    await prepare_topics(env)
    (first,) = await start_workers(env, 1)
    second = WorkerProcess(env, name="second").start()
    try:
        await second.wait_for_log("joining group", timeout_s=60)
        for worker in (second, first):
            assert worker.proc is not None
            started = time.monotonic()
            worker.proc.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(worker.proc.wait, 20)
            took = time.monotonic() - started
            assert took < 12.0, f"{worker.name} took {took:.1f} s to stop"
            assert code == 0, f"{worker.name} exited {code}"
    finally:
        stop_all([first, second])
