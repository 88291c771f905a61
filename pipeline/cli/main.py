"""The ``inbound-audit`` command: one sub-command per module, each registering its own parser.

Settings are resolved once here and handed down; a ``ConfigError`` (or any other error of ours
that a user can fix) ends the command with one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from pipeline.errors import InboundAuditError
from pipeline.settings import load_settings

__all__ = ["main"]

#: Modules that contribute sub-commands; each has ``register(subparsers) -> None`` and sets
#: ``func(args, settings) -> int`` on its parser.
COMMAND_MODULES: tuple[str, ...] = ("worker", "topics", "query", "simulate", "deadletters", "lua")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inbound-audit",
        description="Fleet-wide inbound traffic counters for MTAs over Apache Kafka.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"pipeline.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        return int(args.func(args, settings) or 0)
    except InboundAuditError as exc:
        print(f"inbound-audit: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Output piped into e.g. `head`, which closed early: not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
