"""One worker's replica of the fleet's state, rebuilt from the delta log, each source message once.

Every delta names its source partition, the source offset it continues from (``prev_offset``)
and the source messages it carries. The replica remembers, per source partition, the last source
offset applied, and judges each delta against it:

* ``duplicate`` — everything in it is already applied (an echo, a recovery re-read, a writer that
  re-processed messages after a crash, a zombie): ignored;
* ``applied``   — it continues what was applied; messages at or below the applied offset (a zombie
  and the new owner writing the same messages) are cut off first, so each counts once;
* ``gap``       — it continues from an offset the replica never reached: some delta between is
  missing here. Nothing is applied; the caller must find the missing delta (re-read the log)
  or knowingly ``skip_gap``, never move on silently.

The owner of a source partition resumes right after ``applied[p]``, so a crash between writing a
delta and committing the source offsets never counts a message twice.
"""

from __future__ import annotations

from typing import Literal

from pipeline.core.counts import WindowedCounts
from pipeline.core.delta import CHAIN_START, Delta
from pipeline.core.series_counts import SeriesCounts
from pipeline.core.sessions import SessionGauge
from pipeline.core.tally import NodeTally
from pipeline.core.windows import Monitor

__all__ = ["Outcome", "Replica"]

Outcome = Literal["applied", "duplicate", "gap"]


class Replica:
    """Counts, gauge, series, the per-partition last applied source offset, and events per node
    (not snapshotted: only its differences are used)."""

    def __init__(self, monitors: tuple[Monitor, ...]) -> None:
        self.counts = WindowedCounts(monitors)
        self.gauge = SessionGauge()
        self.series = SeriesCounts()
        self.tally = NodeTally()
        self.applied: dict[int, int] = {}

    def next_offset(self, partition: int) -> int | None:
        """The first source offset not yet covered by any applied delta (None: nothing seen)."""
        last = self.applied.get(partition)
        return None if last is None else last + 1

    def last_applied(self, partition: int) -> int:
        """What a writer continuing this partition states as its ``prev_offset``."""
        return self.applied.get(partition, CHAIN_START)

    def judge(self, delta: Delta) -> Outcome:
        """What ``apply`` would do with ``delta``, without doing it."""
        last = self.applied.get(delta.partition)
        if last is None:
            return "applied"
        if delta.last_offset <= last:
            return "duplicate"
        if delta.prev_offset > last:
            return "gap"
        return "applied"

    def apply(self, delta: Delta, now_s: float) -> Outcome:
        """Apply the part of ``delta`` not applied yet, unless it does not continue the chain."""
        outcome = self.judge(delta)
        if outcome != "applied":
            return outcome
        last = self.applied.get(delta.partition)
        if last is not None and delta.first_offset <= last:
            delta = delta.after(last)
        self._count(delta, now_s)
        return outcome

    def skip_gap(self, delta: Delta, now_s: float) -> None:
        """Apply a delta across a gap that cannot be filled (the log no longer holds it)."""
        self._count(delta, now_s)

    def _count(self, delta: Delta, now_s: float) -> None:
        self.counts.apply(delta, now_s)
        self.gauge.apply(delta.sessions)
        self.series.apply(delta.series, now_s)
        self.tally.add(delta)
        self.applied[delta.partition] = delta.last_offset
