"""Worker fuzz runner: a million generated inputs (events and requests, mutated from valid ones)
published to one live worker. At the end the worker must be alive, the valid events counted
exactly, every bad event dead-lettered with its reason, every request with a usable ``reply_to``
answered exactly once and every other request dead-lettered. Prints one summary line; exit
status 0 only when every input is accounted for.

    python tests/support/worker_fuzz.py --inputs 1000000     # make fuzz (a private broker on 19592)

Value-level event inputs (most of them) go as JSON arrays of up to 2,000 elements (SPEC batches),
so a million inputs are about a thousand messages; byte-level mutated messages and requests go
one per message.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp
import orjson
from aiokafka import AIOKafkaProducer
from audit_oracle import Monitor, block_of
from decoder_fuzz import mutated_message
from fuzz_inputs import FUZZ_IPS, FUZZ_NODES, EventInput, encode, event_input, request_input
from fuzz_ledger import Ledger
from harness import SNAPSHOT_ROOT, create_topics, isolated_env, prepare_topics, read_topic
from soak_cluster import Fleet, FleetWorker, PrivateBroker

from pipeline.core.decoding import BatchDecoder
from pipeline.settings import Settings

__all__ = ["FuzzResult", "run_fuzz", "main"]

MONITOR = Monitor(3600, 3)
PARTITIONS = 2
BATCH_ELEMENTS = 2000
BATCH_BYTES = 1_000_000
MUTATED_SHARE = 0.03
REQUEST_SHARE = 0.02
BAD_SHARE = 0.2
SETTLE_S = 1800.0  # at most this long for the worker to count everything
STALL_S = 300.0  # or until its totals have not moved for this long (a starved replica lags)
MUTATED_NODES = ("mx1", "mx2", "é" * 3)  # decoder_fuzz's nodes
MUTATED_IPS = ("10.0.0.1", "192.0.2.66", "2001:db8::25", "198.51.100.7", "::1")


@dataclass
class FuzzResult:
    inputs: Counter[str] = field(default_factory=Counter)
    messages: int = 0
    seconds: float = 0.0
    crashed: list[str] = field(default_factory=list)
    wrong_counts: list[str] = field(default_factory=list)
    checked_counts: int = 0
    letters_owed: int = 0
    letters_missing: int = 0
    letters_repeated: int = 0
    letters_unexpected: list[str] = field(default_factory=list)
    replies_owed: int = 0
    replies_missing: int = 0
    replies_extra: int = 0

    @property
    def ok(self) -> bool:
        return not (
            self.crashed
            or self.wrong_counts
            or self.letters_missing
            or self.letters_unexpected
            or self.replies_missing
            or self.replies_extra
        )

    def summary(self) -> str:
        kinds = ", ".join(f"{n:,} {kind}s" for kind, n in sorted(self.inputs.items()))
        return (
            f"worker fuzz: {sum(self.inputs.values()):,} inputs ({kinds}) in {self.messages:,} messages, "
            f"{self.seconds:.0f} s; worker crashes {len(self.crashed)}; counts wrong {len(self.wrong_counts)} "
            f"of {self.checked_counts}; dead letters owed {self.letters_owed:,}, missing {self.letters_missing}, "
            f"repeated {self.letters_repeated}, unexpected {len(self.letters_unexpected)}; replies owed "
            f"{self.replies_owed:,}, missing {self.replies_missing}, extra {self.replies_extra}"
        )


class Sender:
    """Sends messages and books each one at the offset and append time the broker gives it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pending: list[tuple[asyncio.Future[object], object]] = []
        self.messages = 0

    async def start(self) -> None:
        self.producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.bootstrap, linger_ms=20, acks="all", max_request_size=2 << 20
        )
        await self.producer.start()

    async def send(self, topic: str, value: bytes, booking: object) -> None:
        self.pending.append((await self.producer.send(topic, value), booking))
        self.messages += 1
        if len(self.pending) >= 500:
            await self.drain()

    async def drain(self) -> None:
        pending, self.pending = self.pending, []
        for future, booking in pending:
            metadata = await future
            booking(metadata)  # type: ignore[operator]


async def _publish(settings: Settings, ledger: Ledger, inputs: int, seed: int, reply_to: str) -> int:
    rng = random.Random(seed)
    sender = Sender(settings)
    await sender.start()
    events, requests = settings.events_topic, settings.requests_topic
    batch: list[EventInput] = []
    size = 0

    async def flush_batch() -> None:
        nonlocal batch, size
        elements = batch
        value = b"[" + b",".join(encode(e.value) for e in elements) + b"]"
        await sender.send(events, value, lambda md: ledger.batch((events, md.partition, md.offset), elements))
        batch, size = [], 0

    try:
        now = time.time()
        for serial in range(inputs):
            r = rng.random()
            if r < REQUEST_SHARE:
                request = request_input(rng, reply_to, serial, now, settings.state_topic)
                await sender.send(
                    requests,
                    request.raw,
                    lambda md, rq=request: ledger.request((requests, md.partition, md.offset), rq.reply_id),
                )
            elif r < REQUEST_SHARE + MUTATED_SHARE:
                value = mutated_message(rng, int(now * 1000))
                await sender.send(
                    events, value, lambda md, v=value: ledger.mutated_message(md.partition, md.offset, md.timestamp, v)
                )
            else:
                element = event_input(rng, now, BAD_SHARE)
                encoded = len(encode(element.value)) + 1
                if batch and (len(batch) >= BATCH_ELEMENTS or size + encoded > BATCH_BYTES):
                    await flush_batch()
                batch.append(element)
                size += encoded
        if batch:
            await flush_batch()
        await sender.drain()
    finally:
        await sender.producer.stop()
    return sender.messages


def _count_queries(ledger: Ledger, at: float) -> list[tuple[dict[str, str], int]]:
    """Fleet and per-node totals per op over the kept range, at /0 and at every address used."""
    oldest = MONITOR.start(at) - (MONITOR.count - 1) * MONITOR.size
    cidrs = ["0.0.0.0/0", "::/0", *(ip for ip in FUZZ_IPS + MUTATED_IPS if not ip.startswith("::ffff:"))]
    out = []
    for node in [None, *FUZZ_NODES, *MUTATED_NODES]:
        scope = {"cluster": "true"} if node is None else {"node": node}
        for op in ("connections", "receptions", "rejections"):
            for cidr in cidrs:
                params = {"op": op, "monitor": MONITOR.name, "cidr": cidr, "startv": "0", "endv": "2", "at": repr(at)}
                out.append(({**params, **scope}, ledger.total(node, op, block_of(cidr, None), oldest)))
    return out


async def _answers(session: aiohttp.ClientSession, worker: FleetWorker, queries: list) -> list[object]:
    out = []
    for params, _ in queries:
        async with session.get(
            f"http://127.0.0.1:{worker.web_port}/query", params=params, timeout=aiohttp.ClientTimeout(total=30)
        ) as response:
            body = orjson.loads(await response.read())
            out.append(body.get("value") if body.get("ok") else body)
    return out


async def _settle(
    settings: Settings, worker: FleetWorker, queries: list, letters: int, replies: int, reply_to: str
) -> None:
    """Until the worker's totals match and the owed dead letters and replies are all there."""
    deadline = time.monotonic() + SETTLE_S
    totals = [q for q in queries if q[0]["cidr"].endswith("/0") and "cluster" in q[0]]
    answers: list[object] = []
    latest: list[object] = []
    progressed = time.monotonic()
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < min(deadline, progressed + STALL_S) and worker.alive:
            latest = await _answers(session, worker, totals)
            if latest == [want for _, want in totals]:
                break
            if latest != answers:  # still counting: a loaded machine is slow, not wrong
                answers, progressed = latest, time.monotonic()
            await asyncio.sleep(2.0)
    print(f"fleet totals {latest}, oracle {[want for _, want in totals]}", file=sys.stderr)
    for topic, owed in ((settings.deadletter_topic, letters), (reply_to, replies)):
        got = len(await read_topic(settings.bootstrap, topic, owed, timeout_s=max(10.0, deadline - time.monotonic())))
        print(f"{topic}: {got:,} records, {owed:,} owed", file=sys.stderr)


async def _check(
    settings: Settings, worker: FleetWorker, ledger: Ledger, reply_to: str, at: float, result: FuzzResult
) -> None:
    queries = _count_queries(ledger, at)
    owed_letters = sum(sum(c.values()) for c in ledger.letters.values())
    result.letters_owed, result.replies_owed = owed_letters, sum(ledger.replies.values())
    await _settle(settings, worker, queries, owed_letters, result.replies_owed, reply_to)
    async with aiohttp.ClientSession() as session:
        if not await Fleet({}).healthy(worker, session):
            result.crashed.append(f"{worker.name}: /healthz does not answer")
        answers = await _answers(session, worker, queries)
    result.checked_counts = len(queries)
    for (params, want), got in zip(queries, answers, strict=True):
        if got != want:
            result.wrong_counts.append(f"{params}: got {got}, oracle {want}")
    _check_letters(await read_topic(settings.bootstrap, settings.deadletter_topic), ledger, result)
    replies = Counter(
        _reply_key(orjson.loads(r.value).get("id")) for r in await read_topic(settings.bootstrap, reply_to)
    )
    result.replies_missing = sum((ledger.replies - replies).values())
    result.replies_extra = sum((replies - ledger.replies).values())
    for request_id in (ledger.replies - replies) | (replies - ledger.replies):
        print(
            f"request {request_id!r}: {ledger.replies[request_id]} replies owed, {replies[request_id]} got",
            file=sys.stderr,
        )


def _reply_key(request_id: object) -> str:
    """How replies are matched to requests: by id, and those whose id is not a string together
    (``fuzz_inputs`` books them under "")."""
    return request_id if isinstance(request_id, str) else ""


def _check_letters(records: list, ledger: Ledger, result: FuzzResult) -> None:
    got: dict[tuple[str, int, int], Counter[str]] = {}
    for record in records:
        letter = orjson.loads(record.value)
        if not letter.get("reason") or not letter.get("detail"):
            result.letters_unexpected.append(f"a letter without reason or detail: {letter}")
        location = (letter["source_topic"], letter["partition"], letter["offset"])
        got.setdefault(location, Counter())[letter["reason"]] += 1
    for location, want in ledger.letters.items():
        have = got.pop(location, Counter())
        if "*" in want:  # an unroutable request: one letter, whatever the reason
            have = Counter({"*": sum(have.values())})
        result.letters_missing += sum((want - have).values())
        result.letters_repeated += sum((have - want).values())
        if have and set(have) - set(want):
            result.letters_unexpected.append(f"{location}: {dict(have)}, owed {dict(want)}")
    result.letters_unexpected += [f"{location}: {dict(c)} owed nothing" for location, c in got.items()]


async def run_fuzz(inputs: int, seed: int, bootstrap: str | None, port: int) -> FuzzResult:
    """Publish ``inputs`` inputs to one worker and check every one; the worker (and the broker,
    when this started one) is stopped before it returns."""
    result = FuzzResult()
    broker = None if bootstrap else PrivateBroker(port)
    if broker is not None:
        await broker.start()
        bootstrap = broker.bootstrap
    assert bootstrap is not None
    env = isolated_env(bootstrap, PARTITIONS, MONITOR.name, INBOUND_AUDIT_SNAPSHOT_INTERVAL_S="0")
    fleet = Fleet(env)
    try:
        settings = await prepare_topics(env)
        reply_to = f"{settings.reply_topic_prefix}.fuzz-{env['INBOUND_AUDIT_GROUP_ID']}"
        await create_topics(bootstrap, {reply_to: 1})
        worker = fleet.join()
        await fleet.ready()
        started = time.monotonic()
        ledger = Ledger(MONITOR)
        result.messages = await _publish(settings, ledger, inputs, seed, reply_to)
        ledger.judge_mutated(BatchDecoder(settings.monitors, settings.max_future_s, "python"), settings.events_topic)
        result.inputs = ledger.inputs
        await _check(settings, worker, ledger, reply_to, time.time(), result)
        result.seconds = time.monotonic() - started
        if not worker.alive:
            result.crashed.append(f"{worker.name} exited: {' | '.join(worker.process.lines[-5:])}")
    finally:
        await fleet.stop_all()
        result.crashed += fleet.crashes
        if broker is not None:
            await broker.close()
        shutil.rmtree(SNAPSHOT_ROOT, ignore_errors=True)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--bootstrap", help="an existing broker (default: start a private one on --port)")
    parser.add_argument("--port", type=int, default=19592, help="the private broker's port; controller: port + 1")
    args = parser.parse_args(argv)
    result = asyncio.run(run_fuzz(args.inputs, args.seed, args.bootstrap, args.port))
    for line in result.crashed + result.wrong_counts[:10] + result.letters_unexpected[:10]:
        print(line, file=sys.stderr)
    print(result.summary())
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
