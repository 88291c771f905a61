"""``inbound-audit deadletters``: read the dead-letter topic like ``tail``, one line per letter.

Without ``--from-beginning`` it shows the last ``--last`` letters; ``--follow`` keeps waiting for
new ones. Lines are ``offset reason detail`` (detail on one line), so they grep and sort well.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from pipeline.errors import InboundAuditError
from pipeline.kafka.connection import client_options, connection_error
from pipeline.kafka.local_kafka import resolve_bootstrap
from pipeline.settings import Settings

__all__ = ["register", "format_letter", "tail_deadletters"]


def format_letter(offset: int, raw: bytes) -> str:
    """``offset reason detail``; a record that is not a dead letter is shown rather than dropped."""
    try:
        letter = orjson.loads(raw)
        reason, detail = str(letter["reason"]), str(letter.get("detail", ""))
    except (orjson.JSONDecodeError, KeyError, TypeError):
        reason, detail = "unreadable", raw[:200].decode("utf-8", "replace")
    return f"{offset} {reason} {' '.join(detail.split())}"


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    for _ in range(20):
        partitions = consumer.partitions_for_topic(topic)
        if partitions:
            return [TopicPartition(topic, p) for p in sorted(partitions)]
        await consumer._client.force_metadata_update()  # noqa: SLF001 - no public refresh in aiokafka
        await asyncio.sleep(0.1)
    raise InboundAuditError(f"dead-letter topic {topic!r} does not exist; run 'inbound-audit topics'")


async def tail_deadletters(
    settings: Settings, bootstrap: str, *, last: int | None, follow: bool, emit: Callable[[str], object] = print
) -> int:
    """Emit dead letters (the last ``last`` per partition, or all when None); return how many."""
    # read_committed: a dead letter whose batch was rolled back (a crashed or fenced worker) is
    # not shown; the batch is re-read and its dead letters committed again.
    consumer = AIOKafkaConsumer(
        **client_options(settings, bootstrap),
        enable_auto_commit=False,
        fetch_max_wait_ms=200,
        isolation_level="read_committed",
    )
    try:
        await consumer.start()
        tps = await _partitions(consumer, settings.deadletter_topic)
        consumer.assign(tps)
        starts = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, starts[tp] if last is None else max(starts[tp], ends[tp] - last))
        shown = 0
        while follow or [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    emit(format_letter(record.offset, record.value or b""))
                    shown += 1
        return shown
    except KafkaError as exc:
        raise await connection_error(settings, exc, bootstrap) from exc
    finally:
        await consumer.stop()


def _run(args: argparse.Namespace, settings: Settings) -> int:
    last = None if args.from_beginning else args.last
    asyncio.run(
        tail_deadletters(
            settings,
            resolve_bootstrap(settings),
            last=last,
            follow=args.follow,
            emit=lambda line: print(line, flush=True),
        )
    )
    return 0


def register(subparsers: Any) -> None:
    """Add ``deadletters`` to the ``inbound-audit`` CLI."""
    parser = subparsers.add_parser(
        "deadletters",
        help="show rejected events and requests: 'offset reason detail' per line",
        description="Show the last dead letters (or all with --from-beginning); --follow waits for more.",
    )
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--from-beginning", action="store_true", help="every letter still retained")
    start.add_argument("--last", type=int, default=20, metavar="N", help="how many recent letters (default 20)")
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing new letters until Ctrl-C")
    parser.set_defaults(func=_run)
