"""``inbound-audit worker``: run one member of the fleet until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

from pipeline.app.worker import Worker
from pipeline.kafka.local_kafka import resolve_bootstrap
from pipeline.kafka.topic_admin import ensure_topics
from pipeline.settings import Settings

__all__ = ["register"]

log = logging.getLogger(__name__)


async def _serve(settings: Settings) -> None:
    bootstrap = resolve_bootstrap(settings)
    report = await ensure_topics(settings, bootstrap)
    for line in report.lines():
        log.info("%s", line)
    await Worker(settings, bootstrap).run()


def _run(args: argparse.Namespace, settings: Settings) -> int:
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_serve(settings))
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "worker",
        help="run a worker (the only command that starts Kafka)",
        description=(
            "Serve until SIGINT/SIGTERM: count events, answer queries. Without KAFKA_BOOTSTRAP_SERVERS it "
            "starts the bundled local Kafka first (no other command does)."
        ),
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.set_defaults(func=_run)
