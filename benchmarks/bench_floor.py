"""The design's floor: what a process that only moves the events through Kafka's topics manages.

Run (the broker must be up, e.g. ``INBOUND_AUDIT_KAFKA_PORT=19092 deploy/kafka start``)::

    .venv/bin/python benchmarks/bench_floor.py [--bootstrap 127.0.0.1:19092] [--events 1000000] [--repeat 3]

A script that prints numbers, not a test. The worker's design (fixed: Faust agents and a global table)
moves every event three times through Kafka: the owner reads the event messages, writes one delta per
batch to the state topic, and every worker (the owner too) reads the state topic back and applies it.
This measures that path with plain aiokafka, without Faust, in one process and one event loop, on the
same pre-filled topic (the events of ``bench_pipeline.py``), adding one stage at a time:

1. raw      — read the events and ``orjson.loads`` each value (``bench_pipeline.py``'s raw consume);
2. decode   — read, decode each partition's batch to a ``Delta`` with the worker's decoder (native in
              a thread, as the worker does), nothing written;
3. write    — 2. plus encode each delta and write it to a fresh state topic, until all are acked;
4. read     — 3. plus a second consumer reading that state topic back and decoding every delta,
              until it has every event (what a global table's reader must do);
5. apply    — 4. plus applying each delta to a ``Replica``: the whole design minus Faust. Its fleet
              totals per metric and family must then be what was published.

Then the same loop answers requests while it ingests: a child process runs 5. on ``--answer-copies``
times the events (a topic of their own) and, on the same event loop, answers the requests topic
from its replica with a consumer and a zero-linger producer of its own (what the worker would be
with requests off Faust's one consumer). With ``--answer-role replica`` that loop ingests nothing:
another child runs 5. and the answering loop only reads the deltas back and applies them (a worker
that only answers, as every worker of the design must still replicate every delta). This process
sends ``bench_pipeline.py``'s query mix one at a time until the answering child has counted
everything, each request also to a plain aiokafka echo in another process right after (the
broker's floor at that moment), then the same mix idle.

Rounds alternate the stages (one of each per repeat) and the medians are printed, each as events/s
and as a share of 1.'s rate in the same run. Every stage but 1. must end with every event accounted
for, or the script stops. Fetch sizes are the raw consumer's generous ones (4 MiB per partition), so
these floors are upper bounds for a worker with smaller fetches; ``--worker-fetches`` uses the
worker's (``INBOUND_AUDIT_FETCH_MAX_BYTES``' default: 2 MiB a fetch, 512 KiB per partition) instead
for stages 2-5 and the answering (1. stays ``raw_consume``, the baseline of the ratios).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import orjson  # noqa: E402
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402

from benchmarks.bench_pipeline import (  # noqa: E402
    MONITORS,
    PARTITIONS,
    calibration_us,
    delete_topics,
    echo_server,
    make_messages,
    pct,
    produce,
    query_mix,
    raw_consume,
    topic_names,
    totals_requests,
)
from pipeline.core.decoding import BatchDecoder  # noqa: E402
from pipeline.core.delta import CHAIN_START, Delta, decode_delta, encode_delta  # noqa: E402
from pipeline.core.query import Request, answer, parse_request, reply_value  # noqa: E402
from pipeline.core.replica import Replica  # noqa: E402
from pipeline.kafka.topic_admin import ensure_topics  # noqa: E402
from pipeline.settings import Settings, load_settings  # noqa: E402
from tests.support.harness import Requester, isolated_env, prepare_topics  # noqa: E402

STAGES = ("raw", "decode", "write", "read", "apply")
#: Consumer fetch sizes: raw_consume's by default, the worker's with --worker-fetches.
Fetch = dict[str, int]
RAW_FETCH: Fetch = {"max_partition_fetch_bytes": 4 << 20}
_WORKER_BYTES = Settings().fetch_max_bytes
WORKER_FETCH: Fetch = {"fetch_max_bytes": _WORKER_BYTES, "max_partition_fetch_bytes": _WORKER_BYTES // 4}
READ_BACK_IDLE_S = 30.0


async def _read_events(bootstrap: str, topic: str, fetch: Fetch) -> tuple[AIOKafkaConsumer, dict[TopicPartition, int]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **fetch)
    await consumer.start()
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    return consumer, await consumer.end_offsets(tps)


async def _read_back(bootstrap: str, topic: str, expected: int, replica: Replica | None, fetch: Fetch) -> None:
    """Read the state topic from its start and decode (and apply) deltas until ``expected`` events."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        **fetch,
        fetch_max_wait_ms=20,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen, idle_since = 0, time.monotonic()
        while seen < expected:
            if time.monotonic() - idle_since > READ_BACK_IDLE_S:
                raise SystemExit(f"read back {seen} events, expected {expected}: nothing more came")
            for records in (await consumer.getmany(timeout_ms=200)).values():
                idle_since = time.monotonic()
                for record in records:
                    delta = decode_delta(record.value)
                    seen += delta.event_count
                    if replica is not None and replica.apply(delta, time.time()) != "applied":
                        raise SystemExit(f"state record {record.offset} did not continue its chain")
        if seen != expected:
            raise SystemExit(f"read back {seen} events, expected {expected}")
    finally:
        await consumer.stop()


Totals = dict[tuple[str, int], int]  # (metric, family) -> events


def fleet_totals(replica: Replica, settings: Settings) -> Totals:
    """The fleet's count per metric and family over the longest monitor, asked as a client would."""
    out = {}
    for key, obj in totals_requests():
        request = parse_request({"id": "totals", **obj}, settings.monitors)
        assert isinstance(request, Request)
        out[key] = answer(request, replica.counts, replica.gauge, time.time())
    return out


async def pipeline_floor(
    settings: Settings, stage: str, want: Totals, fetch: Fetch, replica: Replica | None = None
) -> float:
    """Events/s from the first fetch until ``stage`` has handled every event (``apply``: into
    ``replica``, a new one by default, whose fleet totals must then be ``want``)."""
    expected = sum(want.values())
    bootstrap = settings.bootstrap
    decoder = BatchDecoder(settings.monitors, settings.max_future_s, settings.decoder, None)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=5, acks="all", max_request_size=16 << 20
    )  # as the worker's
    consumer, ends = await _read_events(bootstrap, settings.events_topic, fetch)
    await producer.start()
    if stage == "apply" and replica is None:
        replica = Replica(settings.monitors)
    reader: asyncio.Task[None] | None = None
    try:
        start = time.perf_counter()
        if stage in ("read", "apply"):
            reader = asyncio.create_task(_read_back(bootstrap, settings.state_topic, expected, replica, fetch))
        cursor = {tp.partition: CHAIN_START for tp in ends}
        remaining = {tp for tp, end in ends.items() if end > 0}
        acks: list[asyncio.Future[object]] = []
        decoded = 0
        while remaining:
            for tp, records in (await consumer.getmany(timeout_ms=200, max_records=20)).items():
                values = [r.value or b"" for r in records]
                offsets = [r.offset for r in records]
                stamps = [r.timestamp for r in records]
                delta: Delta
                delta, _ = await asyncio.to_thread(
                    decoder.decode, tp.partition, cursor[tp.partition], values, offsets, stamps
                )
                cursor[tp.partition] = offsets[-1]
                decoded += delta.event_count
                if stage != "decode":
                    acks.append(await producer.send(settings.state_topic, encode_delta(delta), partition=tp.partition))
                if offsets[-1] + 1 >= ends[tp]:
                    remaining.discard(tp)
        await asyncio.gather(*acks)
        if reader is not None:
            await reader
        elapsed = time.perf_counter() - start
    finally:
        if reader is not None and not reader.done():
            reader.cancel()
        await consumer.stop()
        await producer.stop()
    if decoded != expected:
        raise SystemExit(f"{stage}: decoded {decoded} events, expected {expected}")
    if replica is not None and (got := fleet_totals(replica, settings)) != want:
        raise SystemExit(f"{stage}: the replica's fleet totals are {got}, published {want}")
    return expected / elapsed


# ---- answering while ingesting ---------------------------------------------------------------
async def _answer(settings: Settings, replica: Replica, ready: asyncio.Event) -> None:
    """Answer every request on the requests topic from ``replica``, with a consumer of its own."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=500)
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, linger_ms=0, acks=1)
    await consumer.start()
    await producer.start()
    try:
        tps = [TopicPartition(settings.requests_topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)
        ready.set()
        while True:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    obj = orjson.loads(record.value)
                    request = parse_request(obj, settings.monitors)
                    assert isinstance(request, Request)
                    value = answer(request, replica.counts, replica.gauge, time.time())
                    await producer.send(obj["reply_to"], reply_value(obj["id"], value), key=obj["id"].encode())
    finally:
        await consumer.stop()
        await producer.stop()


def ingesting_child(env: dict[str, str], want: Totals, fetch: Fetch) -> None:
    """Child process: ingest the events (stage 5), as another worker of the fleet."""
    asyncio.run(pipeline_floor(load_settings(env), "apply", want, fetch))


def answering_child(env: dict[str, str], want: Totals, fetch: Fetch, role: str, conn: Any) -> None:
    """Child process: answer requests; on "go" ingest the events (stage 5) or, as a ``replica``,
    only read back the deltas another child writes; report the rate, answer until "stop"."""

    async def main() -> None:
        settings = load_settings(env)
        replica = Replica(settings.monitors)
        ready = asyncio.Event()
        server = asyncio.create_task(_answer(settings, replica, ready))
        await ready.wait()
        conn.send("ready")
        await asyncio.to_thread(conn.recv)
        if role == "ingest":
            conn.send(await pipeline_floor(settings, "apply", want, fetch, replica))
        else:
            writer = mp.get_context("spawn").Process(target=ingesting_child, args=(env, want, fetch))
            started = time.perf_counter()
            writer.start()
            await _read_back(settings.bootstrap, settings.state_topic, sum(want.values()), replica, fetch)
            conn.send(sum(want.values()) / (time.perf_counter() - started))
            writer.join(30)
        await asyncio.to_thread(conn.recv)
        server.cancel()

    asyncio.run(main())


async def answering(args: argparse.Namespace, env: dict[str, str], want: Totals, fetch: Fetch) -> dict[str, Any]:
    """Round trips to the ingesting child (and to the echo right after each), then idle ones."""
    settings = load_settings(env)
    ctx = mp.get_context("spawn")
    conn, child_conn = ctx.Pipe()
    child = ctx.Process(target=answering_child, args=(env, want, fetch, args.answer_role, child_conn))
    child.start()
    try:
        async with echo_server(args, settings) as echo, Requester(settings) as requester:
            await asyncio.to_thread(conn.recv)
            mix = query_mix(100_000, 7)
            for _, request in mix[:20]:  # warm-up
                await requester.ask(request)

            async def timed(req: Requester, request: dict[str, Any]) -> float:
                t = time.perf_counter()
                reply = await req.ask(request)
                if not reply.get("ok"):
                    raise SystemExit(f"error reply {reply}")
                return (time.perf_counter() - t) * 1000

            conn.send("go")
            busy, floor = [], []
            for _, request in mix:
                if conn.poll():
                    break
                busy.append(await timed(requester, request))
                floor.append(await timed(echo, request))
            rate = conn.recv()
            idle = [await timed(requester, request) for _, request in mix[: args.queries]]
            conn.send("stop")
    finally:
        child.join(10)
        child.kill()
    return {"rate": rate, "busy": busy, "floor": floor, "idle": idle}


async def with_fresh(base: dict[str, str], topics: list[str], *names: str) -> dict[str, str]:
    """``base`` with new topics for ``names`` (``events``, ``state``), created and listed in ``topics``
    (deleted at the end)."""
    env = {**base, **{f"INBOUND_AUDIT_{n.upper()}_TOPIC": f"t{uuid.uuid4().hex[:10]}.{n}" for n in names}}
    topics += [env[f"INBOUND_AUDIT_{n.upper()}_TOPIC"] for n in names]
    settings = load_settings(env)
    await ensure_topics(settings, settings.bootstrap)
    return env


async def run(args: argparse.Namespace) -> dict[str, list[float]]:
    base = isolated_env(args.bootstrap, PARTITIONS, MONITORS)
    topics = topic_names(base)
    rates: dict[str, list[float]] = {stage: [] for stage in STAGES}
    fetch = WORKER_FETCH if args.worker_fetches else RAW_FETCH
    try:
        settings = await prepare_topics(base)
        messages, want = make_messages(args.events, 1)
        await produce(args.bootstrap, settings.events_topic, messages)
        print(f"prefill: {args.events:,} events in 1,000-event messages on {PARTITIONS} partitions", flush=True)
        answer_env = await with_fresh(base, topics, "events", "state")
        for _ in range(args.answer_copies):
            await produce(args.bootstrap, answer_env["INBOUND_AUDIT_EVENTS_TOPIC"], messages)
        del messages
        for round_ in range(args.repeat):
            for stage in STAGES:
                if stage == "raw":
                    rate = await raw_consume(args.bootstrap, settings.events_topic, args.events)
                else:
                    state = load_settings(await with_fresh(base, topics, "state"))
                    rate = await pipeline_floor(state, stage, want, fetch)
                rates[stage].append(rate)
                print(f"  round {round_ + 1} {stage:<7} {rate:>12,.0f} events/s", flush=True)
        if args.answer_copies:
            copies = {key: args.answer_copies * n for key, n in want.items()}
            answered = await answering(args, answer_env, copies, fetch)
            rates["apply+answer"] = [answered["rate"]]
            for name in ("busy", "floor", "idle"):
                ms = answered[name]
                print(f"  {name:<6} {len(ms):>4} round trips: p50 {pct(ms, 50):6.2f} ms, p99 {pct(ms, 99):6.2f} ms")
    finally:
        await delete_topics(args.bootstrap, topics)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:19092")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--answer-copies", type=int, default=4, help="copies of the events to answer during (0: skip)")
    parser.add_argument("--queries", type=int, default=300, help="idle round trips")
    parser.add_argument(
        "--answer-role",
        choices=("ingest", "replica"),
        default="ingest",
        help="the answering loop ingests the events, or only replicates what another process ingests",
    )
    parser.add_argument(
        "--worker-fetches", action="store_true", help="the worker's fetch sizes (2 MiB, 512 KiB per partition)"
    )
    args = parser.parse_args()
    print(f"CPU calibration: sum(range(1000)) = {calibration_us():.2f} us/loop", flush=True)
    rates = asyncio.run(run(args))
    raw = statistics.median(rates["raw"])
    print(f"\n{'stage':<8} {'median events/s':>16} {'÷ raw':>7}")
    for stage in rates:
        median = statistics.median(rates[stage])
        print(f"{stage:<8} {median:>16,.0f} {median / raw:>6.2f}x")


if __name__ == "__main__":
    main()
