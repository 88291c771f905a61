"""End-to-end benchmark of one worker on the real local Kafka: ingest rate and query round trip.

Run (the broker must be up, e.g. ``INBOUND_AUDIT_KAFKA_PORT=19092 deploy/kafka start``)::

    .venv/bin/python benchmarks/bench_pipeline.py [--bootstrap 127.0.0.1:19092] [--events 400000]
        [--repeat 3] [--queries 1000] [--py-spy /tmp/worker.svg]

A script that prints numbers, not a test. Everything runs on ONE events topic (4 partitions, unique
names from ``tests.support.harness.isolated_env``); all topics it created are deleted at the end.

1. prefill   — ``--events`` events as JSON arrays of 1,000 (one node per array, keyed by node; ts in
               the last 3 minutes; 70% IPv4 from a 200k pool, 5% ``::ffff:``-mapped IPv4, 25% IPv6
               from a 20k pool; connection 50% / reception 35% / rejection 15%).
2. raw       — plain aiokafka consumer (no group, assign + seek_to_beginning, getmany, orjson.loads
               each value, count the events): events/s, median of ``--repeat``.
3. pipeline  — a fresh worker (fresh group and state topic, same events topic) per repeat. The clock
               starts at the worker's own log line that ends its start-up (the later of "owning
               events partitions" and "replica caught up"; log timestamps, ms resolution) and stops
               when a poll of the cluster-wide totals (three windowed ops x 0.0.0.0/0 and ::/0,
               monitor 1800,4, windows 0-3) first returns exactly what was published. Start-up
               (process spawn -> that log line) is reported separately.
   live      — the same worker, a second batch published by a child process WHILE it runs: from the
               first send until the totals match.
4. queries   — sequential round trips (mixed /32, /24, /16, /0, IPv6 /64, local and cluster, the three
               windowed ops over all monitors, inbound_session_count): idle (after ingest), and during
               ingest of a third batch (``--busy-events``, default 2 x ``--events``, published by a
               child process; only requests sent before the totals matched are kept; their number is
               printed). That batch's ingest rate is printed too ("with queries running").
   floor     — the same idle query mix answered by a plain aiokafka echo in a child process (no
               Faust, no counting) on a topic of its own: what the broker and the client alone cost.
               During ingest every request is also sent to the echo right after the worker has
               answered it, so the floor is measured under the same moment's load.

7. series    — ``--series-events`` ``series_add`` events of one cidr series (IPv4 keys from the same
               pool, counts 1-3, as 1,000-event arrays) on a topic of their own, a fresh worker per
               repeat as in 3., until the series' cluster-wide count over 0.0.0.0/0 is the total
               published: events/s, and as a share of 3.'s rate (issue 15: the same order).

Timings are wall-clock on a shared machine: medians of repeats, plus a CPU calibration line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import multiprocessing as mp
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import orjson  # noqa: E402
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient  # noqa: E402

from pipeline.settings import Settings  # noqa: E402
from tests.support.harness import Requester, WorkerProcess, create_topics, isolated_env, prepare_topics  # noqa: E402

MONITORS = "60,1 300,6 1800,4"
MONITOR_LIST = [(60, 1), (300, 6), (1800, 4)]
PARTITIONS = 4
EVENTS_PER_MESSAGE = 1_000
NODES = [f"mta-{i:02d}.example.net" for i in range(16)]
METRICS = ("connection", "reception", "rejection")
METRIC_WEIGHTS = (50, 35, 15)
V4_POOL = 200_000
V6_POOL = 20_000
TOTALS_MONITOR = "1800,4"
OPS = {"connection": "connections", "reception": "receptions", "rejection": "rejections"}
SERIES_NAME = "bench_hosts"
SERIES_DEF = f"{SERIES_NAME}:cidr:300,6"

# Targets from the brief.
TARGET_RATIO = 0.2  # issue 12: >= 1M ev/s on 1,000-event messages, ~0.2x raw; 0.4x on 10,000-event ones
TARGET_RATE = 1_000_000
TARGET_P99_MS = 10.0


# ---- data ------------------------------------------------------------------------------------
def _pools(seed: int) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    v4: set[int] = set()
    while len(v4) < V4_POOL:
        a = rng.getrandbits(32)
        if 1 <= a >> 24 <= 223 and a >> 24 not in (10, 127):
            v4.add(a)
    v4s = [f"{a >> 24}.{(a >> 16) & 255}.{(a >> 8) & 255}.{a & 255}" for a in sorted(v4)]
    rng.shuffle(v4s)
    prefixes = [f"2001:db8:{rng.randrange(1 << 16):x}" for _ in range(40)]
    v6s = [
        f"{rng.choice(prefixes)}:{rng.randrange(1 << 16):x}::{rng.randrange(1 << 16):x}:{rng.randrange(1 << 16):x}"
        for _ in range(V6_POOL)
    ]
    return v4s, v6s


def make_messages(n_events: int, seed: int) -> tuple[list[tuple[bytes, bytes]], dict[tuple[str, int], int]]:
    """(key, value) messages of 1,000 events and the totals per (metric, family)."""
    v4s, v6s = _pools(0)  # the same address pools for every batch: later batches hit known addresses
    rng = random.Random(seed)
    now = time.time()
    totals = {(m, f): 0 for m in METRICS for f in (4, 6)}
    messages = []
    for first in range(0, n_events, EVENTS_PER_MESSAGE):
        size = min(EVENTS_PER_MESSAGE, n_events - first)
        node = rng.choice(NODES)
        kinds = rng.choices((0, 1, 2), weights=(70, 5, 25), k=size)
        metrics = rng.choices(METRICS, weights=METRIC_WEIGHTS, k=size)
        events = []
        for kind, metric in zip(kinds, metrics, strict=True):
            if kind == 0:
                ip, family = v4s[rng.randrange(V4_POOL)], 4
            elif kind == 1:
                ip, family = "::ffff:" + v4s[rng.randrange(V4_POOL)], 4
            else:
                ip, family = v6s[rng.randrange(V6_POOL)], 6
            totals[(metric, family)] += 1
            events.append({"node": node, "ts": round(now - rng.random() * 180, 3), "ip": ip, "event": metric})
        messages.append((node.encode(), orjson.dumps(events)))
    return messages, totals


def make_series_messages(n_events: int, seed: int) -> tuple[list[tuple[bytes, bytes]], int]:
    """(key, value) messages of 1,000 ``series_add`` events and the sum of their counts."""
    v4s, _ = _pools(0)
    rng = random.Random(seed)
    now = time.time()
    total = 0
    messages = []
    for first in range(0, n_events, EVENTS_PER_MESSAGE):
        node = rng.choice(NODES)
        counts = [rng.randint(1, 3) for _ in range(min(EVENTS_PER_MESSAGE, n_events - first))]
        total += sum(counts)
        events = [
            {
                "node": node,
                "ts": round(now - rng.random() * 180, 3),
                "event": "series_add",
                "series": SERIES_NAME,
                "key": v4s[rng.randrange(V4_POOL)],
                "count": count,
            }
            for count in counts
        ]
        messages.append((node.encode(), orjson.dumps(events)))
    return messages, total


async def produce(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> tuple[float, float]:
    """Send everything as fast as possible; (wall time of the first send, wall time all acked)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        linger_ms=5,
        acks=1,
        max_batch_size=1_000_000,  # below the events topic's max.message.bytes (1 MiB + 64 KiB)
        max_request_size=4 << 20,
    )
    await producer.start()
    try:
        t_first = time.time()
        futures = [await producer.send(topic, value, key=key) for key, value in messages]
        await asyncio.gather(*futures)
        return t_first, time.time()
    finally:
        await producer.stop()


def publisher_child(bootstrap: str, topic: str, n_events: int, seed: int, conn: Any) -> None:
    """Child process: build a batch, report ready + totals, publish on "go", report the times."""
    messages, totals = make_messages(n_events, seed)
    conn.send(("ready", totals))
    conn.recv()
    conn.send(("done", *asyncio.run(produce(bootstrap, topic, messages))))
    conn.close()


class Publisher:
    """A batch published from a child process (keeps the benchmark's own event loop free)."""

    def __init__(self, bootstrap: str, topic: str, n_events: int, seed: int) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=publisher_child, args=(bootstrap, topic, n_events, seed, child), daemon=True)
        self.proc.start()
        self.totals: dict[tuple[str, int], int] = {}

    async def ready(self) -> None:
        msg = await asyncio.to_thread(self.conn.recv)
        self.totals = msg[1]

    def go(self) -> None:
        self.conn.send("go")

    async def done(self) -> tuple[float, float]:
        msg = await asyncio.to_thread(self.conn.recv)
        await asyncio.to_thread(self.proc.join, 30)
        return msg[1], msg[2]

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)


def echo_child(bootstrap: str, topic: str, conn: Any) -> None:
    """Child process: answer every request on ``topic`` at once with a plain aiokafka loop (no
    Faust, no counting): the floor the broker sets under any worker's round trip."""

    async def echo() -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, fetch_max_wait_ms=500)
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, acks=1)
        await consumer.start()
        await producer.start()
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)
        conn.send("ready")
        while True:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                for record in records:
                    request = orjson.loads(record.value)
                    reply = orjson.dumps({"id": request["id"], "ok": True, "value": 0})
                    await producer.send(request["reply_to"], reply, key=request["id"].encode())

    asyncio.run(echo())


# ---- raw consume -----------------------------------------------------------------------------
async def raw_consume(bootstrap: str, topic: str, expected: int) -> float:
    """Events/s of a plain consumer reading the whole topic and parsing every value."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 << 20,  # as the worker's events consumer
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if ends[tp] > 0}
        count = 0
        start = time.perf_counter()
        while remaining:
            batches = await consumer.getmany(timeout_ms=200, max_records=1000)
            for tp, records in batches.items():
                for record in records:
                    count += len(orjson.loads(record.value))
                if records and records[-1].offset + 1 >= ends[tp]:
                    remaining.discard(tp)
        elapsed = time.perf_counter() - start
    finally:
        await consumer.stop()
    if count != expected:
        raise SystemExit(f"raw consume read {count} events, expected {expected}")
    return count / elapsed


# ---- worker helpers --------------------------------------------------------------------------
_STAMP = re.compile(r"^\[?(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3})[] ]")  # plain or Faust "[...]" lines


def log_time(worker: WorkerProcess, text: str) -> float | None:
    for line in worker.lines:
        if text in line:
            m = _STAMP.match(line)
            if m:
                return (
                    time.mktime(datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").timetuple()) + int(m.group(2)) / 1000
                )
    return None


class SpiedWorker(WorkerProcess):
    """A worker run under ``py-spy record`` (py-spy is then the worker's parent, so ptrace is allowed)."""

    def __init__(self, env: dict[str, str], svg: str) -> None:
        super().__init__(env)
        self.svg = svg

    def start(self) -> SpiedWorker:
        import threading

        self.lines = []
        self.proc = subprocess.Popen(
            [
                shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"),
                "record",
                "--rate",
                "200",
                "-o",
                self.svg,
                "--format",
                "flamegraph" if self.svg.endswith(".svg") else "raw",
                "--",
                sys.executable,
                "-m",
                "pipeline.cli",
                "worker",
            ],
            cwd=REPO,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()
        return self

    def stop(self) -> None:
        # SIGINT to the whole group: the worker stops, py-spy writes its file.
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.proc is not None:
            self._pump_thread.join(timeout=5)


def totals_requests() -> list[tuple[tuple[str, int], dict[str, Any]]]:
    return [
        ((op, fam), {"op": OPS[op], "monitor": TOTALS_MONITOR, "cidr": cidr, "cluster": True, "startv": 0, "endv": 3})
        for op in METRICS
        for fam, cidr in ((4, "0.0.0.0/0"), (6, "::/0"))
    ]


async def read_totals(req: Requester) -> dict[tuple[str, int], int]:
    specs = totals_requests()
    replies = await asyncio.gather(*(req.ask(r) for _, r in specs))
    out = {}
    for (key, _), reply in zip(specs, replies, strict=True):
        if not reply.get("ok"):
            raise SystemExit(f"totals request failed: {reply}")
        out[key] = reply["value"]
    return out


async def read_series_total(req: Requester) -> dict[tuple[str, int], int]:
    """The benchmark series' cluster-wide count over every IPv4 key and window, as one total."""
    request = {"op": "series_count", "series": SERIES_NAME, "key": "0.0.0.0/0", "cluster": True, "endv": 5}
    reply = await req.ask(request)
    if not reply.get("ok"):
        raise SystemExit(f"series total request failed: {reply}")
    return {(SERIES_NAME, 4): reply["value"]}


async def wait_totals(
    req: Requester,
    want: dict[tuple[str, int], int],
    timeout_s: float = 300.0,
    read: Callable[[Requester], Awaitable[dict[tuple[str, int], int]]] = read_totals,
) -> float:
    """Poll until the cluster totals (as ``read`` gets them) equal ``want``; wall time of the
    reply that matched."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = await read(req)
        if got == want:
            return time.time()
        if any(got[k] > want[k] for k in want):
            raise SystemExit(f"totals overshoot: got {got}, want {want}")
        if time.monotonic() > deadline:
            raise SystemExit(f"totals not reached in {timeout_s}s: got {got}, want {want}")
        await asyncio.sleep(0.02)


def add(a: dict[tuple[str, int], int], b: dict[tuple[str, int], int]) -> dict[tuple[str, int], int]:
    return {k: a.get(k, 0) + b.get(k, 0) for k in set(a) | set(b)}


async def wait_started(worker: WorkerProcess) -> float:
    """Wall time (from the worker's log) at which it could start consuming events."""
    await worker.wait_ready(120)
    await worker.wait_for_log("owning events partitions", 120)
    owning = log_time(worker, "owning events partitions")
    caught_up = log_time(worker, "replica caught up")
    assert owning is not None and caught_up is not None
    return max(owning, caught_up)


# ---- queries ---------------------------------------------------------------------------------
QUERY_KINDS = ("v4/32", "v4/24", "v4/16", "v4/0", "v6/64", "sessions")


def query_mix(n: int, seed: int) -> list[tuple[str, dict[str, Any]]]:
    v4s, v6s = _pools(0)
    rng = random.Random(seed)
    out = []
    for i in range(n):
        kind = QUERY_KINDS[i % len(QUERY_KINDS)]
        cluster = rng.random() < 0.5
        req: dict[str, Any] = {"cluster": cluster}
        if not cluster:
            req["node"] = rng.choice(NODES)
        if kind == "sessions":
            req.update(op="inbound_session_count", ip=rng.choice(v4s), service="SMTP")
        else:
            size, count = rng.choice(MONITOR_LIST)
            endv = rng.randrange(count)
            req.update(
                op=OPS[rng.choice(METRICS)], monitor=f"{size},{count}", startv=rng.randrange(endv + 1), endv=endv
            )
            if kind == "v6/64":
                req.update(ip=rng.choice(v6s), cidr="/64")
            else:
                req["ip"] = rng.choice(v4s)
                if kind != "v4/32":
                    req["cidr"] = {"v4/24": "/24", "v4/16": "/16", "v4/0": "0.0.0.0/0"}[kind]
        out.append((kind, req))
    return out


async def timed_queries(
    req: Requester,
    mix: list[tuple[str, dict[str, Any]]],
    *,
    stop_when: dict[tuple[str, int], int] | None = None,
    floor: tuple[Requester, list[float]] | None = None,
) -> list[tuple[str, float]]:
    """Sequential round trips in ms. With ``stop_when``: every 20 requests check the totals (not
    timed) and stop once they match, so only requests sent during ingest are kept. With ``floor``
    (the echo's requester and a list): each request is also sent to the echo right after, and its
    round trip appended to the list, so both see the same moment's load."""
    samples: list[tuple[str, float]] = []
    errors = 0
    for i, (kind, request) in enumerate(mix):
        if stop_when is not None and i % 20 == 0 and await read_totals(req) == stop_when:
            break
        t = time.perf_counter()
        reply = await req.ask(request)
        samples.append((kind, (time.perf_counter() - t) * 1000))
        errors += not reply.get("ok")
        if floor is not None:
            t = time.perf_counter()
            await floor[0].ask(request)
            floor[1].append((time.perf_counter() - t) * 1000)
    if errors:
        print(f"  WARNING: {errors} error replies in the query mix")
    return samples


@contextlib.asynccontextmanager
async def echo_server(args: argparse.Namespace, settings: Settings) -> AsyncIterator[Requester]:
    """``echo_child`` on a requests topic of its own, and a warmed-up requester for it."""
    topic = f"{settings.requests_topic}.echo"
    await create_topics(args.bootstrap, {topic: PARTITIONS})
    ctx = mp.get_context("spawn")
    conn, child = ctx.Pipe()
    proc = ctx.Process(target=echo_child, args=(args.bootstrap, topic, child), daemon=True)
    proc.start()
    try:
        await asyncio.to_thread(conn.recv)
        async with Requester(dataclasses.replace(settings, requests_topic=topic)) as echo:
            for _ in range(20):  # warm-up, as for the worker
                await echo.ask(query_mix(1, 0)[0][1])
            yield echo
    finally:
        proc.kill()
        proc.join(5)
        await delete_topics(args.bootstrap, [topic])


async def echo_round_trips(args: argparse.Namespace, echo: Requester) -> tuple[float, float]:
    """Median p50 and p99 of the same query mix answered by the echo (idle)."""
    p50s, p99s = [], []
    for r in range(args.repeat):
        ms = [s for _, s in await timed_queries(echo, query_mix(args.queries, 100 + r))]
        p50s.append(pct(ms, 50))
        p99s.append(pct(ms, 99))
        print(f"  echo floor: {len(ms)} round trips, p50 {p50s[-1]:.2f} ms, p99 {p99s[-1]:.2f} ms", flush=True)
    return statistics.median(p50s), statistics.median(p99s)


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))]


# ---- main ------------------------------------------------------------------------------------
def calibration_us() -> float:
    return min(timeit.repeat("sum(range(1000))", number=10_000, repeat=5)) / 10_000 * 1e6


async def delete_topics(bootstrap: str, topics: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        doomed = [t for t in topics if t in existing]
        if doomed:
            await admin.delete_topics(doomed)
        print(f"cleanup: deleted {len(doomed)} topics")
    finally:
        await admin.close()


def topic_names(env: dict[str, str]) -> list[str]:
    return [v for k, v in env.items() if k.startswith("INBOUND_AUDIT_") and k.endswith("_TOPIC")]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    res: dict[str, Any] = {}
    topics: list[str] = []
    workers: list[WorkerProcess] = []
    publishers: list[Publisher] = []
    req: Requester | None = None
    stack = contextlib.AsyncExitStack()
    try:
        base = isolated_env(args.bootstrap, PARTITIONS, MONITORS)
        topics += topic_names(base)
        settings = await prepare_topics(base)
        events_topic = base["INBOUND_AUDIT_EVENTS_TOPIC"]

        # Batches 2 and 3 are built by child processes meanwhile.
        publishers = [
            Publisher(args.bootstrap, events_topic, args.events, 2),
            Publisher(args.bootstrap, events_topic, args.busy_events or 2 * args.events, 3),
        ]

        # 1. prefill
        t = time.perf_counter()
        messages, want = make_messages(args.events, 1)
        gen_s = time.perf_counter() - t
        t_first, t_acked = await produce(args.bootstrap, events_topic, messages)
        del messages
        res["produce_rate"] = args.events / (t_acked - t_first)
        print(
            f"prefill: {args.events:,} events in {args.events // EVENTS_PER_MESSAGE} messages "
            f"(generated in {gen_s:.1f}s, produced at {res['produce_rate']:,.0f} events/s)",
            flush=True,
        )

        # 2. raw consume
        raw = []
        for _ in range(args.repeat):
            raw.append(await raw_consume(args.bootstrap, events_topic, args.events))
            print(f"  raw consume: {raw[-1]:,.0f} events/s", flush=True)
        res["raw"] = statistics.median(raw)

        # 3. pipeline on the pre-filled topic, a fresh worker (group, state topic) per repeat; the
        # baseline revision's worker (if asked) on the same topic, alternating, for a same-run ratio.
        if args.baseline_rev:
            baseline = []
            for _ in range(args.repeat):
                env = {**isolated_env(args.bootstrap, PARTITIONS, MONITORS), "INBOUND_AUDIT_EVENTS_TOPIC": events_topic}
                topics += [t for t in topic_names(env) if t != events_topic]
                env_settings = await prepare_topics(env)
                old = WorkerProcess(env, name="baseline", cwd=baseline_tree(args.baseline_rev))
                workers.append(old)
                old.start()
                t0 = await wait_started(old)
                async with Requester(env_settings) as breq:
                    topics.append(breq.reply_topic)
                    t_end = await wait_totals(breq, want)
                baseline.append(args.events / (t_end - t0))
                print(f"  baseline {args.baseline_rev} (1 worker): {baseline[-1]:,.0f} events/s", flush=True)
                old.stop()
            res["baseline"] = statistics.median(baseline)
        rates, startups = [], []
        for r in range(args.repeat):
            env = (
                base
                if r == args.repeat - 1
                else {**isolated_env(args.bootstrap, PARTITIONS, MONITORS), "INBOUND_AUDIT_EVENTS_TOPIC": events_topic}
            )
            env_settings = settings
            if env is not base:
                topics += [t for t in topic_names(env) if t != events_topic]
                env_settings = await prepare_topics(env)
            spied = args.py_spy and r == 0
            worker = SpiedWorker(env, args.py_spy) if spied else WorkerProcess(env)
            workers.append(worker)
            t_spawn = time.time()
            worker.start()
            t0 = await wait_started(worker)
            wreq = Requester(env_settings)
            await wreq.__aenter__()
            topics.append(wreq.reply_topic)
            try:
                t_end = await wait_totals(wreq, want)
            finally:
                if env is not base:
                    await wreq.__aexit__(None, None, None)
            rates.append(args.events / (t_end - t0))
            startups.append(t0 - t_spawn)
            print(
                f"  pipeline (1 worker{', under py-spy' if spied else ''}): {rates[-1]:,.0f} events/s "
                f"({t_end - t0:.2f}s from consume start to all queryable; start-up {t0 - t_spawn:.2f}s)",
                flush=True,
            )
            if env is not base:
                worker.stop()
            else:
                req = wreq
        res["pipeline"] = statistics.median(rates[1:] if args.py_spy and len(rates) > 1 else rates)
        res["startup"] = statistics.median(startups)
        assert req is not None

        # 4a. idle query round trips
        for _ in range(20):  # warm-up
            await req.ask(query_mix(1, 0)[0][1])
        p50s, p99s, idle_all = [], [], []
        for r in range(args.repeat):
            samples = await timed_queries(req, query_mix(args.queries, 100 + r))
            ms = [s for _, s in samples]
            p50s.append(pct(ms, 50))
            p99s.append(pct(ms, 99))
            idle_all += samples
            print(
                f"  idle queries: {len(ms)} round trips, p50 {p50s[-1]:.2f} ms, p99 {p99s[-1]:.2f} ms, "
                f"max {max(ms):.2f} ms",
                flush=True,
            )
        res["idle_p50"], res["idle_p99"] = statistics.median(p50s), statistics.median(p99s)
        echo = await stack.enter_async_context(echo_server(args, settings))
        res["echo_p50"], res["echo_p99"] = await echo_round_trips(args, echo)
        res["idle_by_kind"] = {
            k: (pct([s for kk, s in idle_all if kk == k], 50), pct([s for kk, s in idle_all if kk == k], 99))
            for k in QUERY_KINDS
        }

        # 3b. publish while the worker runs (no queries besides the totals poll)
        live = publishers[0]
        await live.ready()
        want = add(want, live.totals)
        live.go()
        t_end = await wait_totals(req, want)
        t_first, t_acked = await live.done()
        res["live"] = args.events / (t_end - t_first)
        print(
            f"  live publish: {res['live']:,.0f} events/s from first send to all queryable "
            f"({t_end - t_first:.2f}s; publishing itself took {t_acked - t_first:.2f}s)",
            flush=True,
        )

        # 4b. query round trips during ingest of a third batch
        third = publishers[1]
        await third.ready()
        want = add(want, third.totals)
        third.go()
        await asyncio.sleep(0.2)  # let the first messages reach the worker
        floor_ms: list[float] = []  # the echo's round trips, each right after a worker's
        samples = await timed_queries(req, query_mix(args.queries, 999), stop_when=want, floor=(echo, floor_ms))
        ms = [s for _, s in samples]
        res["busy_p50"], res["busy_p99"], res["busy_n"] = pct(ms, 50), pct(ms, 99), len(ms)
        res["busy_echo_p50"], res["busy_echo_p99"] = pct(floor_ms, 50), pct(floor_ms, 99)
        t_end = await wait_totals(req, want)
        t_first, _ = await third.done()
        res["live_queried"] = sum(third.totals.values()) / (t_end - t_first)
        print(
            f"  queries during ingest: {len(ms)} round trips, p50 {res['busy_p50']:.2f} ms, "
            f"p99 {res['busy_p99']:.2f} ms, max {max(ms, default=float('nan')):.2f} ms; that ingest ran at "
            f"{res['live_queried']:,.0f} events/s; the echo meanwhile: p50 {res['busy_echo_p50']:.2f} ms, "
            f"p99 {res['busy_echo_p99']:.2f} ms",
            flush=True,
        )

        # 5. restart with the snapshot written on stop: from spawn until the totals are answered again
        worker = workers[-1]
        worker.stop()
        t_spawn = time.time()
        worker.start()
        await wait_totals(req, want)
        res["restart"] = time.time() - t_spawn
        print(f"  restart with snapshot: answering exact totals {res['restart']:.2f}s after spawn", flush=True)

        # 6. replica apply rate: a worker of another group that ingests nothing (its events topic is
        # empty) replays the whole state topic from scratch: what one worker can apply bounds the fleet.
        replay_env = {
            **isolated_env(args.bootstrap, PARTITIONS, MONITORS),
            "INBOUND_AUDIT_STATE_TOPIC": base["INBOUND_AUDIT_STATE_TOPIC"],
        }
        topics += [t for t in topic_names(replay_env) if t != base["INBOUND_AUDIT_STATE_TOPIC"]]
        replay_settings = await prepare_topics(replay_env)
        replayer = WorkerProcess(replay_env, name="replayer")
        workers.append(replayer)
        t0 = time.time()  # the replay is the recovery before it is ready: count from spawn (start-up included)
        replayer.start()
        await replayer.wait_ready(120)
        async with Requester(replay_settings) as rreq:
            topics.append(rreq.reply_topic)
            t_end = await wait_totals(rreq, want)
        applied = sum(want.values())
        res["apply"] = applied / (t_end - t0) if t_end > t0 else float("inf")
        print(f"  replica apply (no ingest): {applied:,} events in {t_end - t0:.2f}s from spawn", flush=True)

        # 7. series adds through the same worker path
        if args.series_events:
            res["series"] = await series_rates(args, topics, workers)
        return res
    finally:
        await stack.aclose()
        for p in publishers:
            p.kill()
        if req is not None:
            await req.__aexit__(None, None, None)
        for w in workers:
            w.stop()
        if workers:
            counted = [ln for ln in workers[-1].lines if "stats:" in ln]
            if counted:
                print(f"last worker at exit: {counted[-1].split('stats: ', 1)[1]}")
        await delete_topics(args.bootstrap, topics)


async def series_rates(args: argparse.Namespace, topics: list[str], workers: list[WorkerProcess]) -> float:
    """Step 7: median events/s of a fresh worker counting a pre-filled topic of series adds."""
    messages, total = make_series_messages(args.series_events, 4)
    events_topic = ""
    rates = []
    for _ in range(args.repeat):
        env = isolated_env(args.bootstrap, PARTITIONS, MONITORS, INBOUND_AUDIT_SERIES=SERIES_DEF)
        if events_topic:
            env["INBOUND_AUDIT_EVENTS_TOPIC"] = events_topic
        topics += [t for t in topic_names(env) if t != events_topic]
        settings = await prepare_topics(env)
        if not events_topic:
            events_topic = env["INBOUND_AUDIT_EVENTS_TOPIC"]
            await produce(args.bootstrap, events_topic, messages)
        worker = WorkerProcess(env, name="series")
        workers.append(worker)
        worker.start()
        t0 = await wait_started(worker)
        async with Requester(settings) as sreq:
            topics.append(sreq.reply_topic)
            t_end = await wait_totals(sreq, {(SERIES_NAME, 4): total}, read=read_series_total)
        worker.stop()
        rates.append(args.series_events / (t_end - t0))
        print(f"  series pipeline (1 worker): {rates[-1]:,.0f} series_add events/s ({t_end - t0:.2f}s)", flush=True)
    return statistics.median(rates)


def baseline_tree(rev: str) -> Path:
    """A checkout of ``rev`` beside this one (made once, reused): its worker runs with our venv."""
    tree = Path(tempfile.gettempdir()) / f"inbound-audit-baseline-{rev}"
    if not tree.exists():
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), rev], check=True)
    return tree


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:19092")
    parser.add_argument("--events", type=int, default=400_000, help="events per batch (default 400,000)")
    parser.add_argument("--repeat", type=int, default=3, help="repeats of each measurement (median printed)")
    parser.add_argument(
        "--busy-events",
        type=int,
        default=0,
        help="events published while querying during ingest (default 2 x --events)",
    )
    parser.add_argument("--queries", type=int, default=1000, help="sequential requests per latency round")
    parser.add_argument(
        "--events-per-message",
        type=int,
        default=1_000,
        help="events per message (SPEC max 10,000)",
    )
    parser.add_argument(
        "--series-events",
        type=int,
        default=-1,
        help="series_add events for step 7 (default --events; 0 skips it)",
    )
    parser.add_argument("--baseline-rev", help="also measure the worker of this git revision, same data, same run")
    parser.add_argument(
        "--py-spy",
        metavar="OUT",
        help="run the first pipeline repeat's worker under py-spy record: OUT.svg = flame graph, "
        "anything else = collapsed stacks (py-spy --format raw); that repeat is left out of the median",
    )
    args = parser.parse_args()
    if args.series_events < 0:
        args.series_events = args.events
    global EVENTS_PER_MESSAGE
    EVENTS_PER_MESSAGE = args.events_per_message  # before the publisher children fork

    calib = calibration_us()
    print(
        f"CPU calibration: sum(range(1000)) = {calib:.2f} us/loop (timeit, best of 5); "
        f"{os.cpu_count()} CPUs; Python {sys.version.split()[0]}",
        flush=True,
    )
    started = time.perf_counter()

    async def guarded() -> dict[str, Any]:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await run(args)

    res = asyncio.run(guarded())
    ratio = res["pipeline"] / res["raw"]
    ratio_base = res["pipeline"] / res["baseline"] if "baseline" in res else 0.0

    def ok(flag: bool) -> str:
        return "ok" if flag else "MISS"

    rows = [
        ("produce (prefill, 1 producer)", f"{res['produce_rate']:,.0f} ev/s", ""),
        ("raw consume + orjson (median)", f"{res['raw']:,.0f} ev/s", ""),
        (
            "pipeline, pre-filled (median)",
            f"{res['pipeline']:,.0f} ev/s",
            f">= {TARGET_RATE:,} ev/s: {ok(res['pipeline'] >= TARGET_RATE)}",
        ),
        ("pipeline / raw consume", f"{ratio:.2f}x", f">= {TARGET_RATIO}x: {ok(ratio >= TARGET_RATIO)}"),
        ("worker start-up (spawn->consuming)", f"{res['startup']:.2f} s", ""),
        ("pipeline, publish while running", f"{res['live']:,.0f} ev/s", f"{res['live'] / res['raw']:.2f}x raw"),
        ("  same, with queries running", f"{res['live_queried']:,.0f} ev/s", ""),
        *(
            [("baseline worker, pre-filled (median)", f"{res['baseline']:,.0f} ev/s", f"{ratio_base:.2f}x of it")]
            if "baseline" in res
            else []
        ),
        ("restart with snapshot -> exact answers", f"{res['restart']:.2f} s", f"< 5 s: {ok(res['restart'] < 5)}"),
        ("replica apply rate (ingests nothing)", f"{res['apply']:,.0f} ev/s", "bounds the fleet's total rate"),
        *(
            [
                (
                    "series_add pipeline, pre-filled (median)",
                    f"{res['series']:,.0f} ev/s",
                    f"{res['series'] / res['pipeline']:.2f}x the built-in events' (same order)",
                )
            ]
            if "series" in res
            else []
        ),
        ("query p50 idle (median)", f"{res['idle_p50']:.2f} ms", ""),
        (
            "query p99 idle (median)",
            f"{res['idle_p99']:.2f} ms",
            f"<= {TARGET_P99_MS:g} ms: {ok(res['idle_p99'] <= TARGET_P99_MS)}",
        ),
        (
            "  floor: plain aiokafka echo p50/p99",
            f"{res['echo_p50']:.2f}/{res['echo_p99']:.2f} ms",
            f"idle / floor: p50 {res['idle_p50'] / res['echo_p50']:.2f}x, p99 {res['idle_p99'] / res['echo_p99']:.2f}x",
        ),
        (f"query p50 during ingest (n={res['busy_n']})", f"{res['busy_p50']:.2f} ms", ""),
        (f"query p99 during ingest (n={res['busy_n']})", f"{res['busy_p99']:.2f} ms", ""),
        (
            "  floor meanwhile: echo p50/p99",
            f"{res['busy_echo_p50']:.2f}/{res['busy_echo_p99']:.2f} ms",
            f"busy / floor: p50 {res['busy_p50'] / res['busy_echo_p50']:.2f}x, "
            f"p99 {res['busy_p99'] / res['busy_echo_p99']:.2f}x",
        ),
    ]
    print()
    print(f"{'measure':<40} {'value':>16}  target")
    for name, value, target in rows:
        print(f"{name:<40} {value:>16}  {target}")
    print("idle p50/p99 ms by kind: " + ", ".join(f"{k} {a:.1f}/{b:.1f}" for k, (a, b) in res["idle_by_kind"].items()))
    print(f"CPU calibration {calib:.2f} us/loop; total run time {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
