"""The log gate: aiokafka's unreachable-broker records are dropped, any other message shows once a
``quiet_s``; ``OutageLog`` says one line per transition."""

from __future__ import annotations

import logging

import pytest
from aiokafka.errors import KafkaConnectionError, NodeNotReadyError

from pipeline.kafka.outage_log import KafkaLogGate, OutageLog


def record(msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("aiokafka", logging.ERROR, __file__, 1, msg, args, None)


def test_unreachable_records_are_dropped_and_others_rate_limited() -> None:
    now = [0.0]
    gate = KafkaLogGate(quiet_s=60, clock=lambda: now[0])
    assert not gate.filter(record("Unable connect to node with id %s: %s", 1, OSError(111, "refused")))
    assert not gate.filter(record("Unable to update metadata from %s", [1]))
    assert not gate.filter(record("Got error produce response: %s", NodeNotReadyError("node 1")))
    assert not gate.filter(record("Failed fetch messages from %s: %s", 1, KafkaConnectionError()))
    shown = [gate.filter(record("Topic %s not found in cluster metadata", f"t{i}")) for i in range(100)]
    assert shown == [True] + [False] * 99
    now[0] = 61.0
    assert gate.filter(record("Topic %s not found in cluster metadata", "t"))


def test_outage_log_says_one_line_per_transition(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("test.outage")
    outage = OutageLog(log, "publisher mta-1", "127.0.0.1:9")
    with caplog.at_level(logging.WARNING, logger="test.outage"):
        outage.came_back()  # nothing was down: silent
        for _ in range(1000):
            outage.went_down("refused")
        for _ in range(1000):
            outage.came_back()
        outage.went_down("again")
    assert [r.getMessage().split(" (")[0].split(" after")[0] for r in caplog.records] == [
        "publisher mta-1: Kafka is not reachable at 127.0.0.1:9",
        "publisher mta-1: Kafka at 127.0.0.1:9 is reachable again",
        "publisher mta-1: Kafka is not reachable at 127.0.0.1:9",
    ]
