"""Local snapshots of a worker's replica, so a restart replays only the state topic's tail.

Kafka stays the source of truth: a snapshot is the replica (counts, gauge, applied source
offsets) together with the last state-topic record it reflects per partition, and the identity of
what it was taken from: the Kafka cluster id, the state topic and its partition count. A worker
loads one only when all of these match (``mismatch``) and the topic still holds the records after
its positions; anything else is ignored with one log line and the state topic is replayed instead.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import orjson

from pipeline.core.counts import WindowedCounts
from pipeline.core.replica import Replica
from pipeline.core.series_counts import SeriesCounts
from pipeline.core.sessions import SessionGauge
from pipeline.core.windows import Monitor

__all__ = ["Snapshot", "encode_snapshot", "decode_snapshot", "write_bytes_atomically", "read_snapshot"]

#: IAR2 added the series; an IAR1 snapshot is ignored (the state topic is replayed instead).
_MAGIC = b"IAR2"
_HEADER_LEN = struct.Struct(">I")


@dataclass(slots=True)
class Snapshot:
    """A replica and the last state-topic record per partition it reflects, with their origin."""

    cluster_id: str
    state_topic: str
    partitions: int
    positions: dict[int, int]
    replica: Replica

    def mismatch(self, cluster_id: str, state_topic: str, partitions: int) -> str | None:
        """Why this snapshot cannot seed a worker of that cluster and topic (None: it can)."""
        if cluster_id != self.cluster_id:
            return f"it was taken on Kafka cluster {self.cluster_id!r}, this is {cluster_id!r}"
        if state_topic != self.state_topic:
            return f"it is of topic {self.state_topic!r}, not {state_topic!r}"
        if partitions != self.partitions:
            return f"{state_topic} had {self.partitions} partitions then and has {partitions} now"
        return None


def encode_snapshot(snapshot: Snapshot) -> bytes:
    replica = snapshot.replica
    header = orjson.dumps(
        {
            "cluster_id": snapshot.cluster_id,
            "state_topic": snapshot.state_topic,
            "partitions": snapshot.partitions,
            "monitors": [m.name for m in replica.counts.monitors],
            "positions": {str(p): o for p, o in snapshot.positions.items()},
            "applied": {str(p): o for p, o in replica.applied.items()},
            "gauge": [[nd, svc, fam, str(addr), n] for nd, svc, fam, addr, n in replica.gauge.entries()],
            "series": replica.series.export(),
        }
    )
    return b"".join([_MAGIC, _HEADER_LEN.pack(len(header)), header, replica.counts.to_bytes()])


def decode_snapshot(raw: bytes, monitors: tuple[Monitor, ...]) -> Snapshot | None:
    """The snapshot, or None when it was taken for other monitors or is damaged."""
    try:
        if raw[:4] != _MAGIC:
            return None
        (header_len,) = _HEADER_LEN.unpack_from(raw, 4)
        header = orjson.loads(raw[8 : 8 + header_len])
        if header["monitors"] != [m.name for m in monitors]:
            return None
        replica = Replica(monitors)
        replica.counts = WindowedCounts.from_bytes(raw[8 + header_len :], monitors)
        replica.gauge = SessionGauge.from_entries(
            (nd, svc, fam, int(addr), n) for nd, svc, fam, addr, n in header["gauge"]
        )
        replica.series = SeriesCounts.restore(header["series"])
        replica.applied = {int(p): o for p, o in header["applied"].items()}
        positions = {int(p): o for p, o in header["positions"].items()}
        return Snapshot(header["cluster_id"], header["state_topic"], header["partitions"], positions, replica)
    except (ValueError, KeyError, TypeError, struct.error):
        return None


def write_bytes_atomically(path: Path, raw: bytes) -> None:
    """Temporary file, then rename: a crash never leaves half a snapshot behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(raw)
    os.replace(tmp, path)


def read_snapshot(path: Path, monitors: tuple[Monitor, ...]) -> Snapshot | None:
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    return decode_snapshot(raw, monitors)
