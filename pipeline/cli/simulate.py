"""``inbound-audit simulate``: a fleet of MTAs seeing realistic traffic, to try the pipeline out.

The simulated nodes are ``sim-1`` … ``sim-N``, so their start-up ``node_reset`` never touches a
real MTA's sessions. Most traffic comes from many benign IPv4 and IPv6 addresses; a few abusive IPv4 /24s and IPv6
/64s come in bursts with many rejections; sessions open and close. The sequence of events is a
function of ``--seed`` (timestamps are the wall clock), every published event can be recorded
(``--record FILE``, JSON lines, written as they are published), and the abusive blocks are
printed at the end for ``show-ip``. Events are generated as they are due and not kept, so memory
does not grow with the run; a run is bounded (``MAX_NODES``, ``MAX_RATE``, ``MAX_EVENTS``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from pipeline.cli.arguments import positive
from pipeline.clients.publisher import EventPublisher
from pipeline.errors import InboundAuditError
from pipeline.settings import Settings

__all__ = ["Simulation", "TrafficModel", "simulate", "register"]

TICK_S = 0.05
ABUSIVE_V4_BLOCKS = 3
ABUSIVE_V6_BLOCKS = 2
MAX_OPEN_SESSIONS_PER_NODE = 50

#: Bounds of one run: each node is a publisher with a connection of its own, and a run should end.
MAX_NODES = 100
MAX_RATE = 100_000
MAX_EVENTS = 10_000_000


@dataclass
class Simulation:
    """How many events a run published (``node_reset`` included), and the abusive blocks it used."""

    abusive: list[str]
    published: int = 0
    seconds: float = 0.0


def planned_events(nodes: int, rate: float, duration: float) -> int:
    """The events a run will publish (besides one ``node_reset`` per node), or why it may not run."""
    if not 1 <= nodes <= MAX_NODES:
        raise InboundAuditError(f"simulate: --nodes must be 1..{MAX_NODES}, got {nodes}")
    if not 0 < rate <= MAX_RATE:
        raise InboundAuditError(f"simulate: --rate must be more than 0 and at most {MAX_RATE:,}, got {rate:g}")
    total = round(rate * duration)
    if not 1 <= total <= MAX_EVENTS:
        raise InboundAuditError(
            f"simulate: --rate x --duration = {rate:g} x {duration:g} s = {total:,} events; "
            f"a run publishes 1 to {MAX_EVENTS:,}"
        )
    return total


class TrafficModel:
    """Deterministic event source: the same seed gives the same events (apart from ``ts``)."""

    def __init__(self, seed: int, nodes: int) -> None:
        self.rng = random.Random(seed)
        rng = self.rng
        self.nodes = [f"sim-{i}" for i in range(1, nodes + 1)]
        self.abusive_v4 = [
            ipaddress.IPv4Network((rng.randrange(1 << 24) << 8 | 0, 24)) for _ in range(ABUSIVE_V4_BLOCKS)
        ]
        self.abusive_v6 = [
            ipaddress.IPv6Network(((0x20010DB8 << 96) | (rng.randrange(1 << 32) << 64), 64))
            for _ in range(ABUSIVE_V6_BLOCKS)
        ]
        blocks = set(self.abusive_v4)
        self.benign: list[str] = []
        while len(self.benign) < 2000:
            addr = ipaddress.IPv4Address(rng.randrange(1 << 24, 224 << 24))
            if ipaddress.IPv4Network((int(addr) & ~0xFF, 24)) not in blocks:
                self.benign.append(str(addr))
        self.benign += [str(ipaddress.IPv6Address((0x20010DB8 << 96) | rng.getrandbits(96))) for _ in range(500)]
        self.bursting: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self.open: dict[str, list[tuple[str, str]]] = {node: [] for node in self.nodes}

    @property
    def abusive(self) -> list[str]:
        return [str(block) for block in (*self.abusive_v4, *self.abusive_v6)]

    def tick(self) -> None:
        """Abusive blocks burst on and off: each is active in about a third of the ticks."""
        blocks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = [*self.abusive_v4, *self.abusive_v6]
        self.bursting = [block for block in blocks if self.rng.random() < 0.35]

    def event(self, ts: float) -> dict[str, Any]:
        rng = self.rng
        node = rng.choice(self.nodes)
        if rng.random() < 0.08:
            return self._session(node, ts)
        if self.bursting and rng.random() < 0.3:
            block = rng.choice(self.bursting)
            ip = str(block.network_address + rng.randrange(1, min(block.num_addresses, 1 << 16)))
            kind = rng.choices(["connection", "rejection", "reception"], [5, 4, 1])[0]
            return {"node": node, "ts": ts, "ip": ip, "event": kind, "n": rng.randint(1, 3)}
        kind = rng.choices(["connection", "reception", "rejection"], [45, 45, 10])[0]
        return {"node": node, "ts": ts, "ip": rng.choice(self.benign), "event": kind}

    def _session(self, node: str, ts: float) -> dict[str, Any]:
        sessions = self.open[node]
        if sessions and (len(sessions) >= MAX_OPEN_SESSIONS_PER_NODE or self.rng.random() < 0.45):
            ip, service = sessions.pop(self.rng.randrange(len(sessions)))
            kind = "session_close"
        else:
            ip, service = self.rng.choice(self.benign), self.rng.choice(["SMTP", "SMTP", "SMTP", "ECStream"])
            sessions.append((ip, service))
            kind = "session_open"
        return {"node": node, "ts": ts, "ip": ip, "event": kind, "service": service}


async def simulate(
    settings: Settings,
    *,
    nodes: int,
    rate: float,
    duration: float,
    seed: int,
    bootstrap: str | None = None,
    progress: Callable[[int, float], None] | None = None,
    record: Callable[[dict[str, Any]], None] | None = None,
    clock: Callable[[], float] = time.time,
) -> Simulation:
    """Publish ``round(rate * duration)`` events paced at ``rate`` per second over ``nodes`` MTAs,
    handing each published event to ``record`` (if given) rather than keeping it."""
    total = planned_events(nodes, rate, duration)
    model = TrafficModel(seed, nodes)
    result = Simulation(abusive=model.abusive)
    publishers = {
        node: EventPublisher(settings, node, bootstrap=bootstrap, clock=clock, reset_on_start=False)
        for node in model.nodes
    }

    async def publish(event: dict[str, Any]) -> None:
        await publishers[event["node"]].publish(event)
        result.published += 1
        if record is not None:
            record(event)

    started = time.monotonic()
    try:
        for node, publisher in publishers.items():
            await publisher.start()
            await publish({"node": node, "ts": clock(), "ip": "0.0.0.0", "event": "node_reset"})
        started = reported = time.monotonic()
        while result.published - nodes < total:
            due = min(total, int(rate * (time.monotonic() - started)) + 1)
            model.tick()
            while result.published - nodes < due:
                await publish(model.event(clock()))
            if progress is not None and time.monotonic() - reported >= 1.0:
                reported = time.monotonic()
                progress(result.published - nodes, reported - started)
            await asyncio.sleep(TICK_S)
    finally:
        for publisher in publishers.values():
            await publisher.close()
    result.seconds = time.monotonic() - started
    if progress is not None:
        progress(result.published - nodes, result.seconds)
    return result


def _progress_printer(total: int) -> Callable[[int, float], None]:
    """A ``\\r`` bar on a terminal, plain lines otherwise (logs, pipes, tests)."""
    tty = sys.stdout.isatty()

    def show(done: int, seconds: float) -> None:
        rate = done / seconds if seconds > 0 else 0.0
        if tty:
            filled = int(30 * done / max(total, 1))
            bar = "#" * filled + "." * (30 - filled)
            print(f"\r[{bar}] {done}/{total} events, {rate:,.0f} events/s", end="", flush=True)
        else:
            print(f"published {done}/{total} events, {rate:,.0f} events/s", flush=True)

    return show


def _recorder(stack: contextlib.ExitStack, path: Path) -> Callable[[dict[str, Any]], None]:
    """Writes each event to ``path`` as a JSON line as it is published (closed with ``stack``)."""
    try:
        out = stack.enter_context(path.open("wb"))
    except OSError as exc:
        raise InboundAuditError(f"simulate: cannot write --record {path}: {exc.strerror}") from None

    def record(event: dict[str, Any]) -> None:
        out.write(orjson.dumps(event) + b"\n")

    return record


def _run(args: argparse.Namespace, settings: Settings) -> int:
    total = planned_events(args.nodes, args.rate, args.duration)
    with contextlib.ExitStack() as stack:
        record = None if args.record is None else _recorder(stack, args.record)
        result = asyncio.run(
            simulate(
                settings,
                nodes=args.nodes,
                rate=args.rate,
                duration=args.duration,
                seed=args.seed,
                progress=_progress_printer(total),
                record=record,
            )
        )
    if sys.stdout.isatty():
        print()
    print(f"done: {total} events from {args.nodes} nodes in {result.seconds:.1f} s")
    for block in result.abusive:
        print(f"abusive {block}")
    print(f"try: inbound-audit show-ip {result.abusive[0]}")
    return 0


def register(subparsers: Any) -> None:
    """Add ``simulate`` to the ``inbound-audit`` CLI."""
    parser = subparsers.add_parser(
        "simulate",
        help="publish realistic traffic from simulated MTAs",
        description="Publish events from N simulated MTAs at a fixed rate, then print the abusive blocks used.",
    )
    parser.add_argument(
        "--nodes", type=positive(int, MAX_NODES), default=3, help=f"how many MTA nodes, 1..{MAX_NODES} (default 3)"
    )
    parser.add_argument(
        "--rate",
        type=positive(float, MAX_RATE),
        default=1000.0,
        metavar="EVENTS_PER_S",
        help=f"events per second, at most {MAX_RATE:,} (default 1000)",
    )
    parser.add_argument(
        "--duration",
        type=positive(float),
        default=10.0,
        metavar="S",
        help=f"seconds (default 10); rate x duration at most {MAX_EVENTS:,} events",
    )
    parser.add_argument("--seed", type=int, default=1, help="same seed, same events (default 1)")
    parser.add_argument(
        "--record", type=Path, metavar="FILE", help="write every published event here as it goes (JSON lines)"
    )
    parser.set_defaults(func=_run)
