"""The ``topics`` command's output and wiring, without a broker."""

from __future__ import annotations

from pipeline.cli.main import build_parser
from pipeline.kafka.topic_admin import TopicReport
from pipeline.kafka.topic_specs import TopicSpec


def test_report_lines() -> None:
    events = TopicSpec("mta.events", 8, 1, {})
    deadletter = TopicSpec("audit.deadletter", 1, 1, {})
    report = TopicReport(
        created=(events,),
        ok=(deadletter,),
        mismatches=("audit.state: retention.ms is 3600000, expected 10800000",),
    )
    assert report.lines() == [
        "created mta.events (8 partitions)",
        "ok audit.deadletter (1 partition)",
        "MISMATCH audit.state: retention.ms is 3600000, expected 10800000",
    ]


def test_topics_command_is_registered() -> None:
    args = build_parser().parse_args(["topics"])
    assert args.command == "topics" and callable(args.func)
