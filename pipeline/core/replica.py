"""One worker's replica of the fleet's state, rebuilt from the delta log, applied exactly once.

Every delta names the source partition and offset range it covers. The replica remembers the
last source offset applied per partition and ignores any delta that does not start right after
it — a re-published or zombie delta can therefore never be counted twice, and the owner of a
partition knows exactly where to resume reading events after a crash or rebalance.
"""

from __future__ import annotations

import logging

from pipeline.core.counts import WindowedCounts
from pipeline.core.delta import Delta
from pipeline.core.sessions import SessionGauge
from pipeline.core.windows import Monitor

__all__ = ["Replica"]

log = logging.getLogger(__name__)


class Replica:
    """Counts, gauge and the per-partition high-water mark of applied source offsets."""

    def __init__(self, monitors: tuple[Monitor, ...]) -> None:
        self.counts = WindowedCounts(monitors)
        self.gauge = SessionGauge()
        self.applied: dict[int, int] = {}

    def next_offset(self, partition: int) -> int | None:
        """The first source offset not yet covered by any applied delta (None: nothing seen)."""
        last = self.applied.get(partition)
        return None if last is None else last + 1

    def apply(self, delta: Delta, now_s: float) -> bool:
        """Apply ``delta`` unless it overlaps what is already applied; True when applied."""
        last = self.applied.get(delta.partition)
        if last is not None and delta.first_offset <= last:
            if delta.last_offset > last:
                log.error(
                    "delta for partition %d offsets %d..%d overlaps applied offset %d; ignored",
                    delta.partition,
                    delta.first_offset,
                    delta.last_offset,
                    last,
                )
            return False
        self.counts.apply(delta, now_s)
        self.gauge.apply(delta.sessions)
        self.applied[delta.partition] = delta.last_offset
        return True
