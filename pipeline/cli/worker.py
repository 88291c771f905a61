"""``inbound-audit worker``: run one member of the fleet (a Faust worker) until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from pipeline.kafka.local_kafka import resolve_bootstrap
from pipeline.settings import Settings

__all__ = ["register"]


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.app.worker import run_worker  # only the worker pays for importing Faust (~0.5 s)

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_worker(settings, resolve_bootstrap(settings), args.log_level)


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
