"""``inbound-audit lua``: run a Momentum policy hook for one session against the fleet."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from pipeline.cli.arguments import ip_address, positive
from pipeline.clients.client import DEFAULT_TIMEOUT_S, SyncAuditClient
from pipeline.clients.lua_policy import LuaPolicyError, PolicyTimeout, run_policy
from pipeline.settings import Settings

__all__ = ["register"]


def _run(args: argparse.Namespace, settings: Settings) -> int:
    started = time.monotonic()
    with SyncAuditClient(settings, cluster=args.cluster_default, timeout_s=args.timeout) as client:
        left = args.timeout - (time.monotonic() - started)
        try:
            outcome = run_policy(args.script, args.hook, args.ip, args.node, client, argument=args.arg, timeout_s=left)
        except PolicyTimeout:
            print(f"lua error: the policy did not finish within {args.timeout:g} s (--timeout)", file=sys.stderr)
            return 1
        except LuaPolicyError as exc:
            print(f"lua error: {exc}", file=sys.stderr)
            return 1
    print(outcome)
    return 0


def register(subparsers: Any) -> None:
    """Add ``lua`` to the ``inbound-audit`` CLI."""
    parser = subparsers.add_parser(
        "lua",
        help="run a Momentum Lua policy hook for one session",
        description=(
            "Load SCRIPT, call HOOK for a session from --ip on --node, print the decision: "
            "VALIDATE_CONT, or e.g. 'VALIDATE_DONE 421 connection rate limit exceeded'. "
            "A Lua error (including an audit error reply) or running out of --timeout prints "
            "'lua error: ...' and exits 1."
        ),
    )
    parser.add_argument("script", metavar="SCRIPT", type=Path)
    parser.add_argument("--hook", default="validate_mailfrom", help="default validate_mailfrom")
    parser.add_argument("--ip", required=True, type=ip_address, help="the connecting IP of the session")
    parser.add_argument("--node", required=True, help="the MTA node the session is on")
    parser.add_argument("--arg", default="", help="the hook's string argument (EHLO name, MAIL FROM address)")
    parser.add_argument(
        "--cluster-default", action="store_true", help="without an explicit cluster option, ask about the whole fleet"
    )
    parser.add_argument(
        "--timeout",
        type=positive(float),
        default=DEFAULT_TIMEOUT_S,
        metavar="S",
        help=f"seconds for the whole run: connecting, the script and all its queries (default {DEFAULT_TIMEOUT_S:g})",
    )
    parser.set_defaults(func=_run)
