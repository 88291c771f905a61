"""``inbound-audit topics``: create what is missing, report what differs (exit 1)."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from pipeline.kafka.local_kafka import resolve_bootstrap
from pipeline.kafka.topic_admin import ensure_topics
from pipeline.settings import Settings

__all__ = ["register"]


def _run(args: argparse.Namespace, settings: Settings) -> int:
    report = asyncio.run(ensure_topics(settings, resolve_bootstrap(settings)))
    for line in report.lines():
        print(line)
    return 1 if report.mismatches else 0


def register(subparsers: Any) -> None:
    """Add the ``topics`` sub-command to the ``inbound-audit`` CLI."""
    parser = subparsers.add_parser(
        "topics",
        help="create missing Kafka topics; report existing ones that differ (exit 1)",
        description=(
            "Create every topic of topics/topics.toml that is missing, with its partitions and configs. "
            "Existing topics are not changed; any difference is printed as MISMATCH and exits 1."
        ),
    )
    parser.set_defaults(func=_run)
