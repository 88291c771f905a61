"""How far this worker is behind, per partition, for the metrics and the dashboard.

Both lags compare the end offset from the consumer's last fetch response (``highwater``) with what
is done, so reading them costs no broker call: a partition this worker does not consume, or has
not fetched yet, has no lag to report.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from faust.exceptions import ConsumerNotStarted
from faust.types import TP

if TYPE_CHECKING:
    from pipeline.app.app import AuditApp

__all__ = ["consumer_lag", "state_lag"]


def consumer_lag(audit: AuditApp) -> dict[int, int]:
    """Event messages not yet written into a delta, per events partition this worker owns."""
    return _behind(audit, audit.settings.events_topic, audit.ingester.last_written)


def state_lag(audit: AuditApp) -> dict[int, int]:
    """State-topic records not yet applied to the replica, per partition; empty until it caught up."""
    if not audit.manager.recovered.is_set():
        return {}
    positions = audit.manager.positions
    return _behind(audit, audit.settings.state_topic, lambda partition: positions.get(partition, -1))


def _behind(audit: AuditApp, topic: str, last_done: Callable[[int], int]) -> dict[int, int]:
    consumer = audit.app.consumer
    try:
        assigned = consumer.assignment()
    except ConsumerNotStarted:
        return {}
    lag = {}
    for partition in range(audit.settings.partitions):
        tp = TP(topic, partition)
        end = consumer.highwater(tp) if tp in assigned else None
        if end is not None:
            lag[partition] = max(0, end - 1 - last_done(partition))
    return lag
