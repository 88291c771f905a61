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
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from pipeline.cli.arguments import positive
from pipeline.errors import InboundAuditError
from pipeline.kafka.connection import client_options, connection_error
from pipeline.kafka.reachability import require_reachable
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


async def _read_range(consumer: AIOKafkaConsumer, tp: TopicPartition, start: int, end: int) -> list[ConsumerRecord]:
    """The committed records of ``tp`` between two offsets (transaction markers take offsets, too)."""
    consumer.seek(tp, start)
    records: list[ConsumerRecord] = []
    while await consumer.position(tp) < end:
        batches = await consumer.getmany(tp, timeout_ms=500)
        records += [record for record in batches.get(tp, []) if record.offset < end]
    return records


async def _last_letters(
    consumer: AIOKafkaConsumer, tp: TopicPartition, first: int, end: int, last: int | None
) -> list[ConsumerRecord]:
    """The last ``last`` letters of one partition (all when None). Offsets also count transaction
    markers and rolled-back letters, so the window widens until it holds enough letters."""
    span = end - first if last is None else last
    while True:
        start = max(first, end - span)
        records = await _read_range(consumer, tp, start, end)
        if last is None or len(records) >= last or start == first:
            return records if last is None else records[-last:]
        span *= 2


async def tail_deadletters(
    settings: Settings, bootstrap: str, *, last: int | None, follow: bool, emit: Callable[[str], object] = print
) -> int:
    """Emit the last ``last`` dead letters (all when None), oldest first; return how many."""
    await require_reachable(bootstrap)
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
        letters = [record for tp in tps for record in await _last_letters(consumer, tp, starts[tp], ends[tp], last)]
        letters.sort(key=lambda record: (record.timestamp, record.partition, record.offset))
        if last is not None:
            letters = letters[-last:]
        for record in letters:
            emit(format_letter(record.offset, record.value or b""))
        shown = len(letters)
        while follow:
            for records in (await consumer.getmany(timeout_ms=500)).values():
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
            settings.bootstrap,
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
        help="print the events and requests the pipeline refused",
        description="Show the last dead letters (or all with --from-beginning); --follow waits for more.",
    )
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--from-beginning", action="store_true", help="every letter still retained")
    start.add_argument(
        "--last", type=positive(int), default=20, metavar="N", help="how many recent letters (default 20)"
    )
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing new letters until Ctrl-C")
    parser.set_defaults(func=_run)
