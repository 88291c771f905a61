"""``inbound-audit series``: named audit series from a shell, in the spirit of Momentum's console.

``define``, ``add``, ``subtract`` (an add of the negated count), ``count`` (the key taking every
CIDR form and the window range, as ``count_cidr`` does), ``delete`` (``delete_ip``: remove a key
everywhere) and ``list`` (the definitions the fleet counts with, read from the series topic).
Counts are of the whole fleet unless ``--node`` names one MTA, as for ``query``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from aiokafka.errors import KafkaError

from pipeline.app.range_reader import RangeReader
from pipeline.cli.arguments import ip_address
from pipeline.cli.query import add_scope, run_with_client
from pipeline.clients.client import AuditClient
from pipeline.core.series import SERIES_TYPES, SeriesCatalog, read_definition_record
from pipeline.kafka.connection import client_options, connection_error
from pipeline.kafka.reachability import require_reachable
from pipeline.settings import Settings

__all__ = ["register", "read_catalog"]

#: Adds and deletes go out as events of this node unless ``--node`` names one.
CONSOLE_NODE = "console"


def _define(args: argparse.Namespace, settings: Settings) -> int:
    options = {"prefix_len": args.prefix_len}
    status, _ = run_with_client(
        settings,
        lambda client: client.series_define(args.name, args.type, args.interval, args.num_windows, options),
        timeout_s=args.timeout,
    )
    if status == 0:
        print(f"defined {args.name}")
    return status


def _add(args: argparse.Namespace, settings: Settings) -> int:
    count = -args.count if args.command_name == "subtract" else args.count

    async def work(client: AuditClient) -> None:
        await client.series_add(args.name, {"key": args.key, "count": count})

    status, _ = run_with_client(settings, work, node=args.node or CONSOLE_NODE, timeout_s=args.timeout)
    return status


def _delete(args: argparse.Namespace, settings: Settings) -> int:
    async def work(client: AuditClient) -> None:
        await client.series_remove(args.name, args.key)

    status, _ = run_with_client(settings, work, node=args.node or CONSOLE_NODE, timeout_s=args.timeout)
    return status


def _count(args: argparse.Namespace, settings: Settings) -> int:
    options: dict[str, Any] = {"key": args.key, "startv": args.startv, "endv": args.endv}
    status, value = run_with_client(
        settings,
        lambda client: client.series_count(args.name, options),
        ip=args.ip,
        node=args.node,
        at=args.at,
        cluster=not args.node,
        timeout_s=args.timeout,
    )
    if status == 0:
        print(value)
    return status


async def read_catalog(settings: Settings) -> SeriesCatalog:
    """The definitions on the series topic, first per name, with the configured ones."""
    await require_reachable(settings.bootstrap)
    catalog = SeriesCatalog(settings.series)
    try:
        records = await RangeReader(lambda: client_options(settings)).read(settings.series_topic, 0, 0, 2**62)
    except KafkaError as exc:
        raise await connection_error(settings, exc, settings.bootstrap) from exc
    for record in records:
        try:
            catalog.apply(record.offset, read_definition_record(record.value))
        except ValueError:
            print(f"record {record.offset} of {settings.series_topic} is not a definition", file=sys.stderr)
    return catalog


def _list(args: argparse.Namespace, settings: Settings) -> int:
    definitions = asyncio.run(read_catalog(settings)).definitions()
    print("\n".join(d.text for d in definitions) if definitions else "no series defined")
    return 0


def _with_key_and_node(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME")
    parser.add_argument("key", metavar="KEY", help="an IP (cidr series) or the string key")
    parser.add_argument("--node", help=f"the MTA node the event is from (default {CONSOLE_NODE})")
    parser.add_argument("--timeout", type=float, default=20.0, metavar="S", help="seconds to wait (default 20)")


def register(subparsers: Any) -> None:
    """Add ``series`` and its commands to the ``inbound-audit`` CLI."""
    series = subparsers.add_parser(
        "series",
        help="named audit series (msys.audit_series)",
        description="Momentum's msys.audit_series (and console add/subtract/count_cidr/delete_ip) for the fleet.",
    )
    commands = series.add_subparsers(dest="series_command", required=True, metavar="COMMAND")

    define = commands.add_parser("define", help="define a series (idempotent; series_conflict if it differs)")
    define.add_argument("name", metavar="NAME")
    define.add_argument("type", choices=SERIES_TYPES)
    define.add_argument("interval", type=int, metavar="INTERVAL", help="window length in seconds")
    define.add_argument("num_windows", type=int, metavar="NUM_WINDOWS", help="windows kept")
    define.add_argument("--prefix-len", type=int, help="cidr_ipv6: truncate keys to this many bits")
    define.add_argument("--timeout", type=float, default=20.0, metavar="S", help="seconds to wait (default 20)")
    define.set_defaults(func=_define)

    for name, help_text in (("add", "add COUNT to KEY"), ("subtract", "subtract COUNT from KEY")):
        command = commands.add_parser(name, help=help_text)
        _with_key_and_node(command)
        command.add_argument("--count", type=int, default=1, help="how much (default 1)")
        command.set_defaults(func=_add, command_name=name)

    delete = commands.add_parser("delete", help="remove every count of KEY so far, on every node")
    _with_key_and_node(delete)
    delete.set_defaults(func=_delete)

    count = commands.add_parser("count", help="print the count of a key or CIDR block over a window range")
    count.add_argument("name", metavar="NAME")
    count.add_argument("key", metavar="KEY", nargs="?", help="cidr series: /N, ADDR/N or ADDR (default --ip)")
    count.add_argument("--ip", type=ip_address, help="the connecting IP that /N and the default refer to")
    count.add_argument("--startv", type=int, help="first window (0 = current; default 0)")
    count.add_argument("--endv", type=int, help="last window, inclusive (default 0)")
    count.add_argument("--at", type=float, help="Unix time that window 0 contains (default: now)")
    add_scope(count)
    count.set_defaults(func=_count)

    listing = commands.add_parser("list", help="the series the fleet counts, as name:type:interval,num_windows")
    listing.set_defaults(func=_list)
