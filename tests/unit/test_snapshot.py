"""Replica snapshots: a round trip answers exactly as the original; anything that does not fit is refused."""

from __future__ import annotations

from pathlib import Path

from test_counts_oracle import MONITORS, NOW, V4_POOL, V6_POOL, Ev, block_of, to_decoded

from pipeline.core.delta import delta_from_decoded
from pipeline.core.replica import Replica
from pipeline.core.series import SeriesDef
from pipeline.core.series_counts import SERIES_ADD, SERIES_REMOVE
from pipeline.core.snapshot import Snapshot, decode_snapshot, encode_snapshot, read_snapshot, write_bytes_atomically


def sample_replica() -> Replica:
    replica = Replica(MONITORS)
    events = [
        Ev("a", NOW - 5 * i, 4 if i % 2 else 6, (V4_POOL if i % 2 else V6_POOL)[i % 7], i % 3, i + 1) for i in range(60)
    ]
    replica.apply(delta_from_decoded(to_decoded(events), 2, [(159, 60, 0)]), NOW)
    replica.gauge.apply([("open", "a", 4, V4_POOL[1], "SMTP"), ("open", "b", 6, V6_POOL[2], "ECStream")])
    replica.series.apply_ops(
        [
            (SERIES_ADD, V6_SERIES, "a", NOW - 1, V6_POOL[0], 3),
            (SERIES_ADD, V6_SERIES, "b", NOW - 2, V6_POOL[1], -1),
            (SERIES_ADD, NAMES, "a", NOW - 3, "k", 5),
            (SERIES_ADD, NAMES, "a", NOW - 9, "gone", 4),
            (SERIES_REMOVE, NAMES, "b", NOW - 5, "gone", 1),
        ],
        NOW,
    )
    return replica


V6_SERIES = SeriesDef("v6", "cidr_ipv6", 60, 2)
NAMES = SeriesDef("names", "string", 60, 2)


def test_round_trip_answers_like_the_original(tmp_path: Path) -> None:
    original = sample_replica()
    path = tmp_path / "s" / "state.snapshot"
    write_bytes_atomically(path, encode_snapshot(Snapshot("cid-1", "audit.state", 3, {0: 5, 2: 61}, original)))
    loaded = read_snapshot(path, MONITORS)
    assert loaded is not None and loaded.positions == {0: 5, 2: 61}
    assert loaded.replica.applied == {2: 159} and loaded.replica.next_offset(2) == 160
    for monitor in MONITORS:
        for metric in range(3):
            for family, addr in [(4, V4_POOL[1]), (6, V6_POOL[2]), (4, 0)]:
                for prefix in (0, 8, 24, 32):
                    block = block_of(family, addr, prefix)
                    args = (monitor, metric, block, 0, monitor.count - 1, NOW, NOW)
                    for node in (None, "a"):
                        assert loaded.replica.counts.count(*args, node) == original.counts.count(*args, node)
    assert loaded.replica.gauge.entries() == original.gauge.entries()
    for node in (None, "a", "b"):
        for definition, query in [(V6_SERIES, block_of(6, V6_POOL[0], 0)), (NAMES, "k"), (NAMES, "gone")]:
            args = (definition, query, 0, 1, NOW, NOW, node)
            assert loaded.replica.series.count(*args) == original.series.count(*args)
    assert loaded.replica.series.count(V6_SERIES, block_of(6, V6_POOL[0], 0), 0, 1, NOW, NOW, None) == 2
    assert loaded.replica.series.count(NAMES, "gone", 0, 1, NOW, NOW, None) == 0
    assert [p.name for p in tmp_path.joinpath("s").iterdir()] == ["state.snapshot"]  # no temporary left


def test_other_configuration_or_damage_is_refused() -> None:
    raw = encode_snapshot(Snapshot("cid-1", "audit.state", 8, {0: 1}, sample_replica()))
    snapshot = decode_snapshot(raw, MONITORS)
    assert snapshot is not None and snapshot.mismatch("cid-1", "audit.state", 8) is None
    assert "cluster" in (snapshot.mismatch("cid-2", "audit.state", 8) or "")
    assert "topic" in (snapshot.mismatch("cid-1", "other.state", 8) or "")
    assert "partitions" in (snapshot.mismatch("cid-1", "audit.state", 4) or "")
    assert decode_snapshot(raw, MONITORS[:2]) is None  # monitors changed
    for damaged in (b"", b"IAR1", raw[:20], raw[:-5], b"XXXX" + raw[4:]):
        assert decode_snapshot(damaged, MONITORS) is None


def test_missing_file_is_no_snapshot(tmp_path: Path) -> None:
    assert read_snapshot(tmp_path / "nothing", MONITORS) is None
