"""When a partition counts as stalled: behind its log's end and unmoved for ``stall_s``; which
partitions a guard watches."""

from __future__ import annotations

from typing import Any

from aiokafka import TopicPartition

from pipeline.app.stalls import StallClock, StallGuard


def test_behind_and_unmoved_for_stall_s_is_stalled() -> None:
    clock = StallClock(stall_s=8.0)
    assert clock.stalled({0: 9, 1: 4}, {0: 20, 1: 5}, now_s=0.0) == []  # 0 behind: the clock starts
    assert clock.stalled({0: 9, 1: 4}, {0: 20, 1: 5}, now_s=7.9) == []
    assert clock.stalled({0: 9, 1: 4}, {0: 20, 1: 5}, now_s=8.0) == [0]  # 1 is caught up (end 5 = last 4 + 1)
    assert clock.stalled({0: 9, 1: 4}, {0: 30, 1: 5}, now_s=20.0) == [0]  # more written: still stalled


def test_progress_restarts_the_clock_and_catching_up_clears_it() -> None:
    clock = StallClock(stall_s=8.0)
    clock.stalled({0: 9}, {0: 20}, now_s=0.0)
    assert clock.stalled({0: 12}, {0: 20}, now_s=8.0) == []  # moved: a slow partition, not a stalled one
    assert clock.stalled({0: 12}, {0: 20}, now_s=15.9) == []
    assert clock.stalled({0: 12}, {0: 20}, now_s=16.0) == [0]
    assert clock.stalled({0: 19}, {0: 20}, now_s=17.0) == []  # caught up
    assert clock.stalled({0: 19}, {0: 25}, now_s=18.0) == []  # behind again: a new clock
    assert clock.stalled({0: 19}, {0: 25}, now_s=26.0) == [0]


def test_a_partition_no_longer_owned_or_without_an_end_is_forgotten() -> None:
    clock = StallClock(stall_s=8.0)
    clock.stalled({0: 1, 1: 1}, {0: 9, 1: 9}, now_s=0.0)
    assert clock.stalled({1: 1}, {1: 9}, now_s=8.0) == [1]
    assert clock.stalled({0: 1, 1: 1}, {0: 9}, now_s=9.0) == []  # 0 owned again: starts afresh; 1 has no end
    assert clock.stalled({0: 1, 1: 1}, {0: 9, 1: 9}, now_s=17.0) == [0]  # 1's clock starts at 17
    assert clock.stalled({0: 1, 1: 1}, {0: 9, 1: 9}, now_s=25.0) == [0, 1]


def test_one_warning_per_stall_and_offsets_without_messages_are_not_behind() -> None:
    clock = StallClock(stall_s=1.0)
    clock.stalled({0: 1}, {0: 9}, now_s=0.0)
    assert clock.stalled({0: 1}, {0: 9}, now_s=1.0) == [0]
    assert clock.first_warning(0) and not clock.first_warning(0)
    clock.no_messages(0, 8)  # a direct read found only transaction markers up to the end
    assert clock.stalled({0: 1}, {0: 9}, now_s=5.0) == []
    assert clock.first_warning(0)  # a new stall is reported again
    assert clock.stalled({0: 1}, {0: 12}, now_s=6.0) == []  # a new record past the markers: a new clock
    assert clock.stalled({0: 1}, {0: 12}, now_s=7.0) == [0]


def test_what_the_guard_read_itself_keeps_the_partition_stalled() -> None:
    clock = StallClock(stall_s=8.0)
    clock.stalled({0: 9}, {0: 5000}, now_s=0.0)
    assert clock.stalled({0: 9}, {0: 5000}, now_s=8.0) == [0]
    clock.read_up_to(0, 1009)  # read directly and handled: the next check reads on
    assert clock.stalled({0: 1009}, {0: 5000}, now_s=10.0) == [0]
    clock.read_up_to(0, 2009)
    assert clock.stalled({0: 2500}, {0: 5000}, now_s=12.0) == []  # Faust delivers again: a new clock


def test_a_guard_watches_what_is_owned_or_for_a_global_table_every_partition() -> None:
    def guard(topic: str, everywhere: int = 0) -> StallGuard:
        async def nothing(*args: Any) -> Any:
            raise AssertionError("not called")

        return StallGuard(None, topic, topic, nothing, nothing, everywhere=everywhere)  # type: ignore[arg-type]

    assigned = {TopicPartition("events", 3), TopicPartition("events", 1), TopicPartition("requests", 2)}
    assert guard("events").watched(assigned) == [1, 3]
    assert guard("requests").watched(assigned) == [2]
    assert guard("state", everywhere=4).watched(assigned) == [0, 1, 2, 3]  # none of it assigned here
    assert guard("state", everywhere=4).watched(set()) == []  # rebalancing: nothing is checked
    assert guard("events").watched(set()) == []
