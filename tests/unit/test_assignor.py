"""The group leader's assignment while Kafka's metadata lacks the topics (just after a broker
restart): Faust's own assignor raised KeyError there and the worker never joined; ours assigns
what Kafka lists and everything once it lists it all."""

from __future__ import annotations

import pytest
from aiokafka.cluster import ClusterMetadata
from aiokafka.protocol.metadata import MetadataResponse_v0
from faust.assignor import PartitionAssignor
from faust.types import TP

from pipeline.app.app import build_app
from pipeline.settings import load_settings

S = load_settings({"INBOUND_AUDIT_PARTITIONS": "4"})  # the settings of every test here


def _cluster(topics: dict[str, int]) -> ClusterMetadata:
    cluster = ClusterMetadata()
    partitions = {name: [(0, p, 1, [1], [1]) for p in range(n)] for name, n in topics.items()}
    cluster.update_metadata(MetadataResponse_v0([(1, "127.0.0.1", 9092)], [(0, t, ps) for t, ps in partitions.items()]))
    return cluster


def _assign(listed: dict[str, int]) -> dict[str, list[int]]:
    app = build_app(S, "127.0.0.1:1").app
    subscribed = {S.events_topic, S.requests_topic, S.state_topic, S.series_topic}
    assignment = app.assignor.assign(_cluster(listed), {"m1": app.assignor.metadata(subscribed)})
    return {topic: sorted(set(ps)) for topic, ps in assignment["m1"].assignment}


def test_with_no_topic_listed_nothing_is_assigned_and_nothing_raises() -> None:
    assert all(ps == [] for ps in _assign({}).values())


def test_with_only_the_changelogs_missing_the_listed_topics_are_assigned() -> None:
    got = _assign({S.events_topic: 4, S.requests_topic: 4})
    assert got[S.events_topic] == [0, 1, 2, 3]
    assert got[S.requests_topic] == [0, 1, 2, 3]
    assert got.get(S.state_topic, []) == []


def test_once_every_topic_is_listed_everything_is_assigned() -> None:
    got = _assign({S.events_topic: 4, S.requests_topic: 4, S.state_topic: 4, S.series_topic: 1})
    assert got == {
        S.events_topic: [0, 1, 2, 3],
        S.requests_topic: [0, 1, 2, 3],
        S.state_topic: [0, 1, 2, 3],
        S.series_topic: [0],
    }


def test_faust_own_assignor_raises_there_which_is_why_ours_exists() -> None:
    """If Faust fixes this upstream, this test says so and the subclass can go."""
    stock = PartitionAssignor(build_app(S, "127.0.0.1:1").app, replicas=0)
    with pytest.raises(KeyError):
        stock.assign(_cluster({}), {"m1": stock.metadata({S.events_topic, S.state_topic})})


async def test_a_recovery_of_no_state_partition_does_not_make_the_worker_ready() -> None:
    """The empty assignment above recovers nothing: answering then would mean answering zeros."""
    audit = build_app(S, "127.0.0.1:1")
    await audit.manager.on_recovery_completed(set(), set())
    assert not audit.manager.recovered.is_set()
    assert audit.readiness()[0] is False
    some = {TP(S.state_topic, p) for p in range(3)}
    await audit.manager.on_recovery_completed(some, some)
    assert not audit.manager.recovered.is_set()
    every = {TP(S.state_topic, p) for p in range(4)}
    await audit.manager.on_recovery_completed(every, every)
    assert audit.manager.recovered.is_set()
    assert audit.readiness()[0] is True
