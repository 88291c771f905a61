"""Local snapshots of a worker's replica, so a restart replays only the state topic's tail.

Kafka stays the source of truth: a snapshot is the replica (counts, gauge, applied source
offsets) together with the state-topic positions it reflects, taken between two fetches. A worker
that finds one for its configuration loads it and resumes reading the state topic at those
positions; anything that does not fit (other monitors, other topic, positions the topic no longer
has) is ignored and the state topic is replayed from the beginning instead.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import orjson

from pipeline.core.counts import WindowedCounts
from pipeline.core.replica import Replica
from pipeline.core.sessions import SessionGauge
from pipeline.core.windows import Monitor

__all__ = ["Snapshot", "encode_snapshot", "decode_snapshot", "write_bytes_atomically", "read_snapshot"]

_MAGIC = b"IAR1"
_HEADER_LEN = struct.Struct(">I")


@dataclass(slots=True)
class Snapshot:
    """A replica and the state-topic positions (next offset per partition) it is complete up to."""

    state_topic: str
    positions: dict[int, int]
    replica: Replica


def encode_snapshot(snapshot: Snapshot) -> bytes:
    replica = snapshot.replica
    header = orjson.dumps(
        {
            "state_topic": snapshot.state_topic,
            "monitors": [m.name for m in replica.counts.monitors],
            "positions": {str(p): o for p, o in snapshot.positions.items()},
            "applied": {str(p): o for p, o in replica.applied.items()},
            "gauge": [[nd, svc, fam, str(addr), n] for nd, svc, fam, addr, n in replica.gauge.entries()],
        }
    )
    return b"".join([_MAGIC, _HEADER_LEN.pack(len(header)), header, replica.counts.to_bytes()])


def decode_snapshot(raw: bytes, monitors: tuple[Monitor, ...], state_topic: str) -> Snapshot | None:
    """The snapshot, or None when it was taken for another configuration or is damaged."""
    try:
        if raw[:4] != _MAGIC:
            return None
        (header_len,) = _HEADER_LEN.unpack_from(raw, 4)
        header = orjson.loads(raw[8 : 8 + header_len])
        if header["state_topic"] != state_topic or header["monitors"] != [m.name for m in monitors]:
            return None
        replica = Replica(monitors)
        replica.counts = WindowedCounts.from_bytes(raw[8 + header_len :], monitors)
        replica.gauge = SessionGauge.from_entries(
            (nd, svc, fam, int(addr), n) for nd, svc, fam, addr, n in header["gauge"]
        )
        replica.applied = {int(p): o for p, o in header["applied"].items()}
        return Snapshot(state_topic, {int(p): o for p, o in header["positions"].items()}, replica)
    except (ValueError, KeyError, TypeError, struct.error):
        return None


def write_bytes_atomically(path: Path, raw: bytes) -> None:
    """Temporary file, then rename: a crash never leaves half a snapshot behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(raw)
    os.replace(tmp, path)


def read_snapshot(path: Path, monitors: tuple[Monitor, ...], state_topic: str) -> Snapshot | None:
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    return decode_snapshot(raw, monitors, state_topic)
