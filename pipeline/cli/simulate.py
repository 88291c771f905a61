"""``inbound-audit simulate``: a fleet of MTAs seeing realistic traffic, to try the pipeline out.

The simulated nodes are ``sim-1`` … ``sim-N``, so their start-up ``node_reset`` never touches a
real MTA's sessions. Most traffic comes from many benign IPv4 and IPv6 addresses; a few abusive IPv4 /24s and IPv6
/64s come in bursts with many rejections; sessions open and close. The sequence of events is a
function of ``--seed`` (timestamps are the wall clock), every published event can be recorded
(``--record FILE``, JSON lines), and the abusive blocks are printed at the end for ``show-ip``.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from pipeline.cli.arguments import positive
from pipeline.clients.publisher import EventPublisher
from pipeline.settings import Settings

__all__ = ["Simulation", "TrafficModel", "simulate", "register"]

TICK_S = 0.05
ABUSIVE_V4_BLOCKS = 3
ABUSIVE_V6_BLOCKS = 2
MAX_OPEN_SESSIONS_PER_NODE = 50


@dataclass
class Simulation:
    """What a run published, in order, and the abusive blocks it used."""

    abusive: list[str]
    events: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


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
    clock: Callable[[], float] = time.time,
) -> Simulation:
    """Publish ``round(rate * duration)`` events paced at ``rate`` per second over ``nodes`` MTAs."""
    model = TrafficModel(seed, nodes)
    total = round(rate * duration)
    result = Simulation(abusive=model.abusive)
    publishers = {
        node: EventPublisher(settings, node, bootstrap=bootstrap, clock=clock, reset_on_start=False)
        for node in model.nodes
    }
    for node, publisher in publishers.items():
        await publisher.start()
        reset = {"node": node, "ts": clock(), "ip": "0.0.0.0", "event": "node_reset"}
        await publisher.publish(reset)
        result.events.append(reset)
    try:
        started = time.monotonic()
        reported = started
        while len(result.events) - nodes < total:
            elapsed = time.monotonic() - started
            due = min(total, int(rate * elapsed) + 1)
            model.tick()
            while len(result.events) - nodes < due:
                event = model.event(clock())
                await publishers[event["node"]].publish(event)
                result.events.append(event)
            if progress is not None and time.monotonic() - reported >= 1.0:
                reported = time.monotonic()
                progress(len(result.events) - nodes, reported - started)
            await asyncio.sleep(TICK_S)
    finally:
        for publisher in publishers.values():
            await publisher.close()
    result.seconds = time.monotonic() - started
    if progress is not None:
        progress(len(result.events) - nodes, result.seconds)
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


def _run(args: argparse.Namespace, settings: Settings) -> int:
    total = round(args.rate * args.duration)
    result = asyncio.run(
        simulate(
            settings,
            nodes=args.nodes,
            rate=args.rate,
            duration=args.duration,
            seed=args.seed,
            progress=_progress_printer(total),
        )
    )
    if sys.stdout.isatty():
        print()
    if args.record is not None:
        args.record.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in result.events))
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
    parser.add_argument("--nodes", type=positive(int), default=3, help="how many MTA nodes (default 3)")
    parser.add_argument("--rate", type=positive(float), default=1000.0, metavar="EVENTS_PER_S", help="default 1000")
    parser.add_argument("--duration", type=positive(float), default=10.0, metavar="S", help="seconds (default 10)")
    parser.add_argument("--seed", type=int, default=1, help="same seed, same events (default 1)")
    parser.add_argument("--record", type=Path, metavar="FILE", help="write every published event here (JSON lines)")
    parser.set_defaults(func=_run)
