"""``inbound-audit topics``: create what is missing, report what differs (exit 1)."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from pipeline.kafka.reachability import require_reachable
from pipeline.kafka.topic_admin import TopicReport, ensure_topics
from pipeline.settings import Settings

__all__ = ["register"]


async def _ensure(settings: Settings) -> TopicReport:
    await require_reachable(settings.bootstrap)
    return await ensure_topics(settings, settings.bootstrap)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    report = asyncio.run(_ensure(settings))
    for line in report.lines():
        print(line)
    return 1 if report.mismatches else 0


def register(subparsers: Any) -> None:
    """Add the ``topics`` sub-command to the ``inbound-audit`` CLI."""
    parser = subparsers.add_parser(
        "topics",
        help="create missing topics, report ones that differ",
        description=(
            "Create every topic of topics/topics.toml that is missing, with its partitions and configs. "
            "Existing topics are not changed; any difference is printed as MISMATCH and exits 1."
        ),
    )
    parser.set_defaults(func=_run)
