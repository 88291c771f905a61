"""The soak's final check: every surviving worker's answers, the dead letters and the replies,
against the independent record.

Every query names a fixed instant ``at`` (after the last event) and explicit windows, so its answer
does not depend on when it runs. Answers below the oracle are *lost* events, above it *doubled*:
lost and doubled sum the differences of the fleet-wide ``/0`` answers over each monitor's whole
range (each event once per worker, monitor, op and family); *wrong answers* counts every query,
at every block, scope and window, whose answer differs.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from audit_oracle import Monitor
from harness import read_topic
from soak_cluster import FleetWorker
from soak_record import Block, SoakRecord, window_sum
from soak_requests import RequestDriver
from soak_traffic import SERVICES

from pipeline.settings import Settings

__all__ = ["Expectation", "Verdict", "expectations", "check_worker", "wait_caught_up", "check_dead_letters"]

CONCURRENCY = 16
SEQ = re.compile(r"soak_seq\D{1,4}(\d+)")


@dataclass(frozen=True)
class Expectation:
    """One query (as HTTP parameters) and the oracle's answer; ``total`` marks a fleet /0 range."""

    params: tuple[tuple[str, str], ...]
    value: int
    total: bool = False


@dataclass
class Verdict:
    """What one worker's answers came to."""

    checked: int = 0
    wrong: list[str] = field(default_factory=list)
    lost: int = 0
    doubled: int = 0


def expectations(
    record: SoakRecord, blocks: list[Block], nodes: list[str], monitors: list[Monitor], first: float, at: float
) -> list[Expectation]:
    """Each window of each monitor from the one holding ``first`` (the first event's time) to the
    one holding ``at``, and each monitor's whole range, for every block, scope (each node and the
    fleet) and op; the session gauge for every block, scope and service."""
    minutes = record.minute_totals(blocks)
    out = []
    for block in blocks:
        for scope in [None, *nodes]:
            where = (("cluster", "true"),) if scope is None else (("node", scope),)
            for op in ("connections", "receptions", "rejections"):
                counts = minutes.get((block, scope, op), Counter())
                for monitor in monitors:
                    windows = (monitor.start(at) - monitor.start(first)) // monitor.size + 1
                    ranges = [(k, k) for k in range(min(windows, monitor.count))] + [(0, monitor.count - 1)]
                    for startv, endv in ranges:
                        params = (
                            ("op", op),
                            ("monitor", monitor.name),
                            ("cidr", block[3]),
                            ("startv", str(startv)),
                            ("endv", str(endv)),
                            ("at", repr(at)),
                            *where,
                        )
                        total = scope is None and block[3].endswith("/0") and endv == monitor.count - 1 and startv == 0
                        out.append(Expectation(params, window_sum(counts, monitor, at, startv, endv), total))
            for service in SERVICES:
                gauge = (("op", "inbound_session_count"), ("cidr", block[3]), ("service", service), *where)
                out.append(Expectation(gauge, record.open_sessions(block, service, scope)))
    return out


async def _answer(session: aiohttp.ClientSession, port: int, params: tuple[tuple[str, str], ...]) -> Any:
    for _ in range(5):
        try:
            async with session.get(
                f"http://127.0.0.1:{port}/query", params=list(params), timeout=aiohttp.ClientTimeout(total=30)
            ) as response:
                body = orjson.loads(await response.read())
                return body.get("value") if body.get("ok") else body
        except (aiohttp.ClientError, TimeoutError) as exc:
            failure: Any = repr(exc)
            await asyncio.sleep(1.0)
    return failure


async def check_worker(session: aiohttp.ClientSession, worker: FleetWorker, wanted: list[Expectation]) -> Verdict:
    """Ask one worker every expectation over HTTP; classify each difference."""
    verdict = Verdict()
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(expectation: Expectation) -> None:
        async with gate:
            got = await _answer(session, worker.web_port, expectation.params)
        verdict.checked += 1
        if got == expectation.value:
            return
        verdict.wrong.append(f"{worker.name} {dict(expectation.params)}: got {got}, oracle {expectation.value}")
        if expectation.total and isinstance(got, int):
            verdict.lost += max(0, expectation.value - got)
            verdict.doubled += max(0, got - expectation.value)

    await asyncio.gather(*(one(e) for e in wanted))
    return verdict


async def wait_caught_up(
    session: aiohttp.ClientSession, worker: FleetWorker, wanted: list[Expectation], timeout_s: float
) -> bool:
    """Until the worker's fleet-wide totals equal the oracle's (it has read everything)."""
    totals = [e for e in wanted if e.total]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        answers = [await _answer(session, worker.web_port, e.params) for e in totals]
        if answers == [e.value for e in totals]:
            return True
        await asyncio.sleep(1.0)
    return False


async def check_bus_answers(requests: RequestDriver, wanted: list[Expectation], sample: int) -> list[str]:
    """A sample of the same questions on the bus (any worker answers): each must be exact."""
    wrong = []
    for expectation in wanted[:: max(1, len(wanted) // sample)]:
        body: dict[str, Any] = dict(expectation.params)
        for name in ("startv", "endv"):
            if name in body:
                body[name] = int(body[name])
        if "at" in body:
            body["at"] = float(body["at"])
        if body.pop("cluster", None):
            body["cluster"] = True
        reply = await requests.ask(body)
        if reply.get("value") != expectation.value:
            wrong.append(f"bus {body}: got {reply}, oracle {expectation.value}")
    return wrong


async def check_dead_letters(
    settings: Settings, record: SoakRecord, requests: RequestDriver
) -> tuple[list[str], int, list[str], int]:
    """(the missing ones, how many repeated, the unexpected ones, how many replies were
    undeliverable): every malformed event and unroutable request must have a dead letter with
    its reason (repeats are allowed: dead letters are at least once). A reply the worker could not
    deliver while the broker was away is dead-lettered ``undeliverable_reply``, as documented;
    the client re-sends that request, so such a letter is counted, not unexpected."""
    unroutable = {r.id: r.expect.removeprefix("deadletter:") for r in requests.sent.values() if not r.routable}
    records = await read_topic(settings.bootstrap, settings.deadletter_topic, len(record.malformed) + len(unroutable))
    seen = Counter[tuple[str, str]]()
    unexpected: list[str] = []
    undeliverable = 0
    for item in records:
        letter = orjson.loads(item.value)
        if letter["source_topic"] == settings.events_topic:
            match = SEQ.search(letter["value"])
            key = match.group(1) if match else ""
            if record.malformed.get(int(key or 0)) != letter["reason"]:
                unexpected.append(f"unexpected dead letter {letter}")
            seen[("event", key)] += 1
        elif letter["reason"] == "undeliverable_reply" and any(i in letter["value"] for i in requests.sent):
            undeliverable += 1
        else:
            ids = [i for i in unroutable if i in letter["value"]]
            if len(ids) != 1 or unroutable[ids[0]] != letter["reason"]:
                unexpected.append(f"unexpected dead letter {letter}")
            seen[("request", ids[0] if ids else "")] += 1
    wanted = [("event", str(seq)) for seq in record.malformed] + [("request", i) for i in unroutable]
    reasons = {
        **{("event", str(seq)): reason for seq, reason in record.malformed.items()},
        **{("request", i): reason for i, reason in unroutable.items()},
    }
    missing = [
        f"no dead letter for {kind} {key} ({reasons[(kind, key)]})" for kind, key in wanted if not seen[(kind, key)]
    ]
    repeated = sum(max(0, seen[key] - 1) for key in wanted)
    return missing, repeated, unexpected, undeliverable
