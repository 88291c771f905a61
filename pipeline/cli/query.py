"""``inbound-audit query`` and ``inbound-audit show-ip``: the client from a shell.

``query`` is one Momentum call with its options as flags; ``show-ip`` is Momentum's console
``show ip`` (every configured window of every type for one block). Both ask about the whole
fleet unless ``--node`` names one MTA: one default scope, so the same flags mean the same counts.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, TypeVar

import orjson

from pipeline.clients.client import DEFAULT_TIMEOUT_S, AuditClient
from pipeline.core.query import OPS
from pipeline.core.series_query import SERIES_OPS
from pipeline.core.windows import Monitor
from pipeline.errors import AuditError
from pipeline.settings import Settings

__all__ = ["register", "add_scope", "run_with_client", "show_ip_counts", "show_ip_json", "WindowCount", "SHOW_IP_TYPES"]

T = TypeVar("T")

#: (console label, op) in Momentum's ``show ip`` order.
SHOW_IP_TYPES: tuple[tuple[str, str], ...] = (
    ("Connections", "connections"),
    ("Receptions", "receptions"),
    ("Rejections", "rejections"),
)


def run_with_client(
    settings: Settings, work: Callable[[AuditClient], Awaitable[T]], **client_args: Any
) -> tuple[int, T | None]:
    """Run ``work`` with a started client; an error reply becomes ``error <code>: <message>`` and exit 1."""

    async def main() -> T:
        async with AuditClient(settings, **client_args) as client:
            return await work(client)

    try:
        return 0, asyncio.run(main())
    except AuditError as exc:
        print(f"error {exc.code}: {exc.message}", file=sys.stderr)
        return 1, None


def add_scope(parser: argparse.ArgumentParser) -> None:
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("--cluster", action="store_true", help="the whole fleet (the default)")
    scope.add_argument("--node", help="only this MTA node's counts")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="S",
        help=f"seconds to wait for a worker's reply (default {DEFAULT_TIMEOUT_S:g})",
    )


def _run_query(args: argparse.Namespace, settings: Settings) -> int:
    options: dict[str, Any] = {"cidr": args.cidr, "startv": args.startv, "endv": args.endv}

    async def work(client: AuditClient) -> int:
        if args.op == "inbound_session_count":
            return await client.inbound_session_count(args.cidr, args.service)
        return await client.query(args.op, args.monitor, options)

    status, value = run_with_client(
        settings, work, ip=args.ip, node=args.node, at=args.at, cluster=not args.node, timeout_s=args.timeout
    )
    if status == 0:
        print(value)
    return status


def _show_ip_windows(monitors: tuple[Monitor, ...]) -> list[Monitor]:
    """One ring per window size (the longest configured), as the console shows ``SIZE/OFFSET``."""
    longest: dict[int, Monitor] = {}
    for monitor in monitors:
        if monitor.size_s not in longest or monitor.count > longest[monitor.size_s].count:
            longest[monitor.size_s] = monitor
    return list(longest.values())


class WindowCount(NamedTuple):
    """One ``show ip`` line: ``Connections 300/0: 30``."""

    label: str
    op: str
    size_s: int
    offset: int
    value: int

    def __str__(self) -> str:
        return f"{self.label} {self.size_s}/{self.offset}: {self.value}"


async def show_ip_counts(client: AuditClient, monitors: tuple[Monitor, ...], cidr: str) -> list[WindowCount]:
    """Every window of every type for ``cidr``, in the console's order, against one reference time."""
    at = time.time()
    keys = [
        (label, op, monitor, offset)
        for label, op in SHOW_IP_TYPES
        for monitor in _show_ip_windows(monitors)
        for offset in range(monitor.count)
    ]
    values = await asyncio.gather(
        *(client.query(op, monitor.name, {"cidr": cidr, "startv": k, "endv": k}, at=at) for _, op, monitor, k in keys)
    )
    return [WindowCount(label, op, m.size_s, k, v) for (label, op, m, k), v in zip(keys, values, strict=True)]


def show_ip_json(cidr: str, node: str | None, counts: list[WindowCount]) -> str:
    """``--json``: the block, the scope and one object per window."""
    windows = [{"type": c.op, "size": c.size_s, "offset": c.offset, "value": c.value} for c in counts]
    scope = {"node": node} if node else {"cluster": True}
    return orjson.dumps({"cidr": cidr, **scope, "windows": windows}).decode()


def _run_show_ip(args: argparse.Namespace, settings: Settings) -> int:
    status, counts = run_with_client(
        settings,
        lambda client: show_ip_counts(client, settings.monitors, args.cidr),
        node=args.node,
        cluster=not args.node,
        timeout_s=args.timeout,
    )
    if counts is None:
        return status
    shown = [count for count in counts if count.value] if args.compact else counts
    if args.json:
        print(show_ip_json(args.cidr, args.node, shown))
    elif shown:
        print("\n".join(map(str, shown)))
    else:
        print(f"no traffic from {args.cidr} in any window")
    return status


def register(subparsers: Any) -> None:
    """Add ``query`` and ``show-ip`` to the ``inbound-audit`` CLI (series ops: ``inbound-audit series``)."""
    query = subparsers.add_parser(
        "query",
        help="ask one msys.audit question, print the answer",
        description=(
            "Print the answer (the whole fleet unless --node names one MTA); on an error reply print "
            "'error <code>: <message>' and exit 1."
        ),
    )
    query.add_argument("op", choices=[op for op in OPS if op not in SERIES_OPS])
    query.add_argument("--monitor", help="e.g. 300,6 (required for the windowed ops)")
    query.add_argument("--cidr", help="/N, ADDR/N or ADDR (default: --ip as a single host)")
    query.add_argument("--ip", help="the connecting IP that /N and the default refer to")
    query.add_argument("--startv", type=int, help="first window (0 = current; default 0)")
    query.add_argument("--endv", type=int, help="last window, inclusive (default 0)")
    query.add_argument("--at", type=float, help="Unix time that window 0 contains (default: now)")
    query.add_argument("--service", default="SMTP", help="for inbound_session_count (default SMTP)")
    add_scope(query)
    query.set_defaults(func=_run_query)

    show = subparsers.add_parser(
        "show-ip",
        help="console 'show ip': every window's counts for a block",
        description=(
            "Lines like 'Connections 300/0: 30', by type, window size and offset, for the whole fleet "
            "unless --node names one MTA."
        ),
    )
    show.add_argument("cidr", metavar="CIDR", help="ADDR or ADDR/N")
    show.add_argument("--compact", action="store_true", help="only the windows that counted something")
    show.add_argument("--json", action="store_true", help="one JSON object: cidr, scope and the windows")
    add_scope(show)
    show.set_defaults(func=_run_show_ip)
