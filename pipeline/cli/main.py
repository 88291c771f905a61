"""The ``inbound-audit`` command: one sub-command per module, each registering its own parser.

Settings are resolved once here and handed down; a ``ConfigError`` (or any other error of ours
that a user can fix) ends the command with one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from pipeline.errors import InboundAuditError
from pipeline.settings import load_settings

__all__ = ["main"]

#: Modules that contribute sub-commands; each has ``register(subparsers) -> None`` and sets
#: ``func(args, settings) -> int`` on its parser.
COMMAND_MODULES: tuple[str, ...] = ("worker", "topics", "query", "series", "simulate", "deadletters", "lua")


class _CommandListFormatter(argparse.HelpFormatter):
    """Keeps each command's description on the command's line in ``--help``: argparse measures
    sub-command names without their own indent, so a long one (``deadletters``) wrapped."""

    def add_argument(self, action: argparse.Action) -> None:
        super().add_argument(action)
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001 - argparse has no public name
            longest = max(map(len, action.choices), default=0)
            self._action_max_length = max(self._action_max_length, longest + self._current_indent + 4)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inbound-audit",
        description="Fleet-wide inbound traffic counters for MTAs over Apache Kafka.",
        formatter_class=_CommandListFormatter,
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"pipeline.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command != "worker":
        # A one-shot command reports Kafka trouble in one line of its own (an exception, or the
        # publisher's outage lines); aiokafka's per-retry errors would only bury it.
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
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
