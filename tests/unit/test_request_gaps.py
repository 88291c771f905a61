"""The query agent's read-back of requests Faust skipped, against a reader that records its calls."""

from __future__ import annotations

from typing import Any

from aiokafka.errors import KafkaConnectionError

from pipeline.app.request_gaps import RequestGaps


class _Reader:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, int, int, int]] = []
        self.fail = fail

    async def read(self, topic: str, partition: int, start: int, stop: int) -> list[Any]:
        self.calls.append((topic, partition, start, stop))
        if self.fail:
            raise KafkaConnectionError("broker away")
        return [f"{partition}@{offset}" for offset in range(start, stop)]


def _gaps(reader: _Reader, committed: dict[int, int | None]) -> RequestGaps:
    async def lookup(partition: int) -> int | None:
        return committed[partition]

    return RequestGaps(reader, "requests", lookup)  # type: ignore[arg-type]


async def test_skipped_requests_are_read_back_from_the_committed_offset_and_between_deliveries() -> None:
    reader = _Reader()
    gaps = _gaps(reader, {0: 10, 1: None})
    assert await gaps.missed(0, 13) == ["0@10", "0@11", "0@12"]  # 10..12 fetched and dropped by Faust
    assert await gaps.missed(0, 14) == []
    assert await gaps.missed(0, 17) == ["0@15", "0@16"]
    assert await gaps.missed(0, 12) == []  # a re-delivery after a rewind: nothing read
    assert gaps.answered(0, 12) and not gaps.answered(0, 18)  # ... and the agent skips it
    assert await gaps.missed(0, 18) == []
    # Never committed: the consumer starts from the beginning (earliest), so 0..4 were skipped.
    assert await gaps.missed(1, 5) == ["1@0", "1@1", "1@2", "1@3", "1@4"]
    assert await gaps.missed(1, 7) == ["1@6"]
    assert reader.calls == [
        ("requests", 0, 10, 13),
        ("requests", 0, 15, 17),
        ("requests", 1, 0, 5),
        ("requests", 1, 6, 7),
    ]
    assert gaps.read_back == 11


async def test_a_never_committed_partition_delivered_from_its_start_reads_nothing() -> None:
    reader = _Reader()
    gaps = _gaps(reader, {2: None})
    assert await gaps.missed(2, 0) == []
    assert await gaps.missed(2, 1) == []
    assert reader.calls == []


async def test_a_revoked_partition_starts_again_from_its_committed_offset() -> None:
    reader = _Reader()
    committed: dict[int, int | None] = {0: 3}
    gaps = _gaps(reader, committed)
    assert await gaps.missed(0, 3) == []
    gaps.forget([0])
    committed[0] = 40  # another worker answered and committed meanwhile
    assert await gaps.missed(0, 42) == ["0@40", "0@41"]


async def test_kafka_away_answers_what_arrived() -> None:
    gaps = _gaps(_Reader(fail=True), {0: 0})
    assert await gaps.missed(0, 5) == []
    assert await gaps.missed(0, 6) == []  # and goes on from there


async def test_a_stalled_partition_answered_directly_is_not_answered_again_when_faust_delivers_it() -> None:
    reader = _Reader()
    gaps = _gaps(reader, {0: 10, 1: None})
    assert await gaps.next_expected(0) == 10 and await gaps.next_expected(1) == 0
    for offset in (10, 11, 12):  # read directly by the stall guard and answered
        gaps.handled(0, offset)
    assert await gaps.next_expected(0) == 13
    assert [gaps.answered(0, offset) for offset in (10, 12, 13)] == [True, True, False]
    assert await gaps.missed(0, 13) == [] and reader.calls == []
    gaps.forget([0])  # revoked: from the committed offset again
    assert not gaps.answered(0, 10) and await gaps.next_expected(0) == 10
