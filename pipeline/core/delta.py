"""The per-batch delta: validated events of one source-partition offset range, in columns.

The worker that owns an events partition turns each consumed batch into one ``Delta`` and
publishes it to the state topic; every worker (the owner included) applies every delta to its
replica of the counts. The delta names the source offsets it covers, which is what makes
applying it idempotent after a crash or rebalance (``replica.py``).

Wire format: ``b"IAD1"``, a 4-byte header length, an orjson header, then the raw column arrays.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from itertools import compress

import numpy as np
import orjson

from pipeline.core.events import DecodedBatch
from pipeline.core.prefix_counts import KEY_DTYPES

__all__ = ["Delta", "FamilyColumns", "SessionOp", "delta_from_decoded", "encode_delta", "decode_delta"]

_MAGIC = b"IAD1"
_HEADER_LEN = struct.Struct(">I")

#: (kind, node, family, address, service); kind is "open", "close" or "reset".
SessionOp = tuple[str, str, int, int, str]

_COLUMN_DTYPES = (("sec", np.dtype(np.int64)), ("metric", np.dtype(np.uint8)), ("node", np.dtype(np.uint32)))


@dataclass(slots=True)
class FamilyColumns:
    """Windowed events of one address family: whole-second time, metric, node index, key, n."""

    family: int
    sec: np.ndarray
    metric: np.ndarray
    node: np.ndarray
    key: np.ndarray
    n: np.ndarray

    @classmethod
    def empty(cls, family: int) -> FamilyColumns:
        return cls(
            family,
            np.empty(0, np.int64),
            np.empty(0, np.uint8),
            np.empty(0, np.uint32),
            np.empty(0, KEY_DTYPES[family]),
            np.empty(0, np.int64),
        )

    def __len__(self) -> int:
        return len(self.key)


@dataclass(slots=True)
class Delta:
    """Everything one batch of source offsets ``first_offset..last_offset`` changes."""

    partition: int
    first_offset: int
    last_offset: int
    nodes: list[str]
    v4: FamilyColumns
    v6: FamilyColumns
    sessions: list[SessionOp] = field(default_factory=list)

    @property
    def event_count(self) -> int:
        return len(self.v4) + len(self.v6)


def delta_from_decoded(decoded: DecodedBatch, partition: int, first_offset: int, last_offset: int) -> Delta:
    """Columnarise a decoded batch: C-level passes over the lists (``map``, ``compress``), numpy after."""
    count = len(decoded.node)
    node_ids = {name: i for i, name in enumerate(dict.fromkeys(decoded.node))}
    node = np.fromiter(map(node_ids.__getitem__, decoded.node), np.uint32, count)
    sec = np.floor(np.array(decoded.ts, dtype=np.float64)).astype(np.int64)
    metric = np.array(decoded.metric, dtype=np.uint8)
    n = np.array(decoded.n, dtype=np.int64)
    is6 = np.array(decoded.family, dtype=np.uint8) == 6
    if not is6.any():
        v4 = FamilyColumns(4, sec, metric, node, np.array(decoded.addr, dtype=np.uint32), n)
        v6 = FamilyColumns.empty(6)
    else:
        is4 = ~is6
        keys4 = np.fromiter(compress(decoded.addr, is4.tolist()), np.uint32)
        keys6 = np.frombuffer(b"".join([a.to_bytes(16, "big") for a in compress(decoded.addr, is6.tolist())]), "S16")
        v4 = FamilyColumns(4, sec[is4], metric[is4], node[is4], keys4, n[is4])
        v6 = FamilyColumns(6, sec[is6], metric[is6], node[is6], keys6, n[is6])
    return Delta(partition, first_offset, last_offset, list(node_ids), v4, v6, list(decoded.sessions))


def encode_delta(delta: Delta) -> bytes:
    header = orjson.dumps(
        {
            "p": delta.partition,
            "first": delta.first_offset,
            "last": delta.last_offset,
            "nodes": delta.nodes,
            "n4": len(delta.v4),
            "n6": len(delta.v6),
            "sessions": [[k, nd, fam, str(addr), svc] for k, nd, fam, addr, svc in delta.sessions],
        }
    )
    parts = [_MAGIC, _HEADER_LEN.pack(len(header)), header]
    for cols in (delta.v4, delta.v6):
        parts.extend(np.ascontiguousarray(a).tobytes() for a in (cols.sec, cols.metric, cols.node, cols.key, cols.n))
    return b"".join(parts)


def decode_delta(raw: bytes | None) -> Delta:
    """Inverse of ``encode_delta``; raises ``ValueError`` on anything that is not a whole delta."""
    if not raw or raw[:4] != _MAGIC:
        raise ValueError("not an inbound-audit delta (bad magic)")
    try:
        return _decode_delta(raw)
    except (KeyError, TypeError, IndexError, struct.error, orjson.JSONDecodeError) as exc:
        raise ValueError(f"corrupt inbound-audit delta: {exc!r}") from None


def _decode_delta(raw: bytes) -> Delta:
    (header_len,) = _HEADER_LEN.unpack_from(raw, 4)
    offset = 8 + header_len
    header = orjson.loads(raw[8:offset])
    families = []
    for family, count in ((4, header["n4"]), (6, header["n6"])):
        arrays = []
        for _, dtype in (*_COLUMN_DTYPES, ("key", KEY_DTYPES[family]), ("n", np.dtype(np.int64))):
            arrays.append(np.frombuffer(raw, dtype=dtype, count=count, offset=offset))
            offset += dtype.itemsize * count
        families.append(FamilyColumns(family, *arrays))
    if offset != len(raw):
        raise ValueError(f"delta length mismatch: {len(raw)} bytes, expected {offset}")
    sessions = [(k, nd, fam, int(addr), svc) for k, nd, fam, addr, svc in header["sessions"]]
    return Delta(header["p"], header["first"], header["last"], header["nodes"], families[0], families[1], sessions)
