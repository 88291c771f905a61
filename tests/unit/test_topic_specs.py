"""topics/topics.toml resolves to the topics SPEC needs, and topics/schemas/ matches SPEC's formats."""

from __future__ import annotations

from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from pipeline.errors import ERROR_CODES, SERIES_ERROR_CODES, ConfigError
from pipeline.kafka.topic_specs import load_schema, schema_names, topic_specs, topic_specs_by_role
from pipeline.settings import Settings, load_settings

SCHEMAS = (
    "event",
    "event-batch",
    "request",
    "reply",
    "deadletter",
    "window-summary",
    "series-definition",
    "series-window-summary",
)


def _validator(name: str) -> Draft202012Validator:
    registry: Registry = Registry().with_resources(
        (load_schema(n)["$id"], Resource.from_contents(load_schema(n))) for n in schema_names()
    )
    return Draft202012Validator(
        load_schema(name), registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER
    )


def _valid(name: str, instance: Any) -> bool:
    return _validator(name).is_valid(instance)


# --- topics ---------------------------------------------------------------------------------------


def test_every_spec_topic_is_declared_with_default_names() -> None:
    specs = topic_specs_by_role(Settings())
    assert {role: s.name for role, s in specs.items()} == {
        "events": "mta.events",
        "requests": "audit.requests",
        "deadletter": "audit.deadletter",
        "windows": "audit.windows",
        "state": "audit.state",
        "series": "audit.series",
    }
    assert topic_specs(Settings()) == tuple(specs.values())


def test_names_partitions_and_replication_come_from_settings() -> None:
    settings = load_settings(
        {
            "INBOUND_AUDIT_EVENTS_TOPIC": "t.ev",
            "INBOUND_AUDIT_REQUESTS_TOPIC": "t.req",
            "INBOUND_AUDIT_DEADLETTER_TOPIC": "t.dl",
            "INBOUND_AUDIT_WINDOWS_TOPIC": "t.win",
            "INBOUND_AUDIT_STATE_TOPIC": "t.state",
            "INBOUND_AUDIT_SERIES_TOPIC": "t.series",
            "INBOUND_AUDIT_PARTITIONS": "5",
            "INBOUND_AUDIT_REPLICATION_FACTOR": "3",
        }
    )
    specs = topic_specs_by_role(settings)
    assert [s.name for s in specs.values()] == ["t.ev", "t.req", "t.dl", "t.win", "t.state", "t.series"]
    assert {s.replication_factor for s in specs.values()} == {3}
    assert specs["events"].partitions == specs["requests"].partitions == 5
    assert specs["deadletter"].partitions == specs["windows"].partitions == specs["series"].partitions == 1


def test_state_is_co_partitioned_with_events() -> None:
    for partitions in (1, 8, 13):
        specs = topic_specs_by_role(Settings(partitions=partitions))
        assert specs["state"].partitions == specs["events"].partitions == partitions


def test_declared_configs() -> None:
    specs = topic_specs_by_role(Settings())
    week = str(7 * 24 * 3600 * 1000)
    assert specs["events"].configs == {
        "cleanup.policy": "delete",
        "retention.ms": week,
        "message.timestamp.type": "LogAppendTime",
        "max.message.bytes": str(1024 * 1024 + 64 * 1024),
    }
    assert specs["requests"].configs == {"cleanup.policy": "delete", "retention.ms": "3600000"}
    for role in ("deadletter", "windows"):
        assert specs[role].configs == {"cleanup.policy": "delete", "retention.ms": week}
    state = specs["state"].configs
    assert state["cleanup.policy"] == "delete"
    assert state["message.timestamp.type"] == "CreateTime"
    assert state["max.message.bytes"] == str(8 * 1024 * 1024)
    assert specs["series"].configs == {"cleanup.policy": "compact", "retention.ms": "-1"}
    assert all(isinstance(v, str) for s in specs.values() for v in s.configs.values())


@pytest.mark.parametrize(
    ("monitors", "longest_span_s"),
    [("60,1 300,6 1800,4", 7200), ("60,1", 60), ("86400,7 60,1", 604800), ("300, 6", 1800)],
)
def test_state_retention_follows_the_longest_monitor(monitors: str, longest_span_s: int) -> None:
    settings = load_settings({"INBOUND_AUDIT_MONITORS": monitors})
    state = topic_specs_by_role(settings)["state"]
    assert state.configs["retention.ms"] == str((longest_span_s + 3600) * 1000)


def test_state_retention_covers_configured_series_longer_than_every_monitor() -> None:
    settings = load_settings(
        {"INBOUND_AUDIT_MONITORS": "60,1", "INBOUND_AUDIT_SERIES": "auth:cidr:600,12 s:string:1,1"}
    )
    assert topic_specs_by_role(settings)["state"].configs["retention.ms"] == str((7200 + 3600) * 1000)


def test_two_roles_sharing_a_topic_name_is_refused() -> None:
    settings = load_settings({"INBOUND_AUDIT_STATE_TOPIC": "mta.events"})
    with pytest.raises(ConfigError, match="mta.events"):
        topic_specs(settings)


# --- schemas --------------------------------------------------------------------------------------


def test_every_schema_file_is_a_valid_draft_2020_12_schema() -> None:
    assert set(schema_names()) == {f"{n}.schema.json" for n in SCHEMAS}
    for name in schema_names():
        schema = load_schema(name)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["$id"].endswith("/" + name)
        Draft202012Validator.check_schema(schema)


def test_load_schema_accepts_short_names_and_refuses_unknown_ones() -> None:
    assert load_schema("event") == load_schema("event.schema.json")
    with pytest.raises(FileNotFoundError):
        load_schema("nope")
    with pytest.raises(FileNotFoundError):
        load_schema("../topics")


EVENT = {"node": "mx1", "ts": 1764000123.25, "ip": "203.0.113.7", "event": "connection"}


@pytest.mark.parametrize(
    "event",
    [
        EVENT,
        {**EVENT, "n": 3, "event": "rejection"},
        {**EVENT, "ip": "2001:db8::1", "event": "reception"},
        {**EVENT, "ip": "::ffff:203.0.113.7", "event": "session_open", "service": "SMTP"},
        {**EVENT, "ip": "0.0.0.0", "event": "node_reset", "ts": 1764000000},
        {**EVENT, "unknown_field": {"is": "ignored"}},
    ],
)
def test_event_accepts(event: dict[str, Any]) -> None:
    assert _valid("event", event)


@pytest.mark.parametrize(
    "event",
    [
        {k: v for k, v in EVENT.items() if k != "ip"},
        {k: v for k, v in EVENT.items() if k != "node"},
        {k: v for k, v in EVENT.items() if k != "ts"},
        {k: v for k, v in EVENT.items() if k != "event"},
        {**EVENT, "node": ""},
        {**EVENT, "node": "x" * 256},
        {**EVENT, "ts": "1764000123"},
        {**EVENT, "ip": "203.0.113.300"},
        {**EVENT, "ip": "mx.example.com"},
        {**EVENT, "event": "delivery"},
        {**EVENT, "n": 0},
        {**EVENT, "n": 1.5},
        [EVENT],
    ],
)
def test_event_rejects(event: Any) -> None:
    assert not _valid("event", event)


def test_event_batch_limits() -> None:
    assert _valid("event-batch", [EVENT])
    assert _valid("event-batch", [EVENT] * 10_000)
    assert not _valid("event-batch", [EVENT] * 10_001)
    assert not _valid("event-batch", [])
    assert not _valid("event-batch", EVENT)
    assert not _valid("event-batch", [EVENT, {**EVENT, "ip": None}])


REQUEST = {
    "id": "q-1",
    "reply_to": "audit.replies.mx1",
    "op": "connections",
    "monitor": "300,6",
    "ip": "203.0.113.7",
    "node": "mx1",
}


@pytest.mark.parametrize(
    "request_",
    [
        REQUEST,
        {**REQUEST, "cidr": "/24", "startv": 0, "endv": 5, "at": 1764000300.5},
        {**REQUEST, "monitor": "300, 6", "cluster": True, "cidr": "10.0.0.7/24"},
        {k: v for k, v in REQUEST.items() if k not in ("ip", "node")} | {"cluster": True, "cidr": "[2001:db8::]/32"},
        {**REQUEST, "op": "inbound_session_count", "service": "SMTP"},
        {k: v for k, v in REQUEST.items() if k != "monitor"} | {"op": "inbound_session_count"},
        {**REQUEST, "extra": 1},
    ],
)
def test_request_accepts(request_: dict[str, Any]) -> None:
    assert _valid("request", request_)


@pytest.mark.parametrize(
    "request_",
    [
        {k: v for k, v in REQUEST.items() if k != "id"},
        {k: v for k, v in REQUEST.items() if k != "reply_to"},
        {**REQUEST, "id": "x" * 129},
        {**REQUEST, "reply_to": "not a topic"},
        {**REQUEST, "op": "deliveries"},
        {k: v for k, v in REQUEST.items() if k != "monitor"},
        {k: v for k, v in REQUEST.items() if k != "ip"},
        {k: v for k, v in REQUEST.items() if k != "ip"} | {"cidr": "/24"},
        {k: v for k, v in REQUEST.items() if k != "node"},
        {k: v for k, v in REQUEST.items() if k != "node"} | {"cluster": False},
        {**REQUEST, "startv": -1},
        {**REQUEST, "cluster": "yes"},
        {**REQUEST, "monitor": "300"},
    ],
)
def test_request_rejects(request_: dict[str, Any]) -> None:
    assert not _valid("request", request_)


def test_reply_accepts_spec_examples_and_every_error_code() -> None:
    assert _valid("reply", {"id": "q-1", "ok": True, "value": 42})
    message = "monitor '120,5' is not configured; configured: 60,1 300,6 1800,4"
    assert _valid("reply", {"id": "q-1", "ok": False, "error": {"code": "unknown_monitor", "message": message}})
    for code in ERROR_CODES + SERIES_ERROR_CODES:
        assert _valid("reply", {"id": None, "ok": False, "error": {"code": code, "message": "m"}})


def test_reply_error_codes_are_exactly_the_spec_ones() -> None:
    failure = next(b for b in load_schema("reply")["oneOf"] if b["properties"]["ok"] == {"const": False})
    assert tuple(failure["properties"]["error"]["properties"]["code"]["enum"]) == ERROR_CODES + SERIES_ERROR_CODES


@pytest.mark.parametrize(
    "reply",
    [
        {"id": "q-1", "ok": False, "error": {"code": "timeout", "message": "m"}},
        {"id": "q-1", "ok": False, "error": {"code": "no_such_thing", "message": "m"}},
        {"id": "q-1", "ok": False, "error": {"code": "invalid_cidr"}},
        {"id": "q-1", "ok": True},
        {"id": "q-1", "ok": True, "value": -1},
        {"id": "q-1", "ok": True, "value": 1, "error": {"code": "invalid_cidr", "message": "m"}},
        {"id": "q-1", "ok": False, "value": 1},
        {"ok": True, "value": 1},
    ],
)
def test_reply_rejects(reply: dict[str, Any]) -> None:
    assert not _valid("reply", reply)


DEADLETTER = {
    "reason": "too_late",
    "detail": "ts 1764000000 is older than every kept window",
    "source_topic": "mta.events",
    "partition": 0,
    "offset": 123,
    "value": '{"node":"mx1","ts":1764000000,"ip":"203.0.113.7","event":"connection"}',
}


def test_deadletter() -> None:
    assert _valid("deadletter", DEADLETTER)
    assert _valid("deadletter", {**DEADLETTER, "reason": "future_timestamp", "value": "x" * 4096})
    assert not _valid("deadletter", {**DEADLETTER, "value": "x" * 4097})
    assert not _valid("deadletter", {**DEADLETTER, "offset": -1})
    assert not _valid("deadletter", {**DEADLETTER, "reason": "Too Late"})
    assert not _valid("deadletter", {k: v for k, v in DEADLETTER.items() if k != "source_topic"})


def _talker(cidr: str, total: int) -> dict[str, Any]:
    return {"cidr": cidr, "connection": total, "reception": 0, "rejection": 0, "total": total}


SUMMARY = {
    "monitor": "300,6",
    "window_start": 1764000000,
    "window_end": 1764000300,
    "scope": "node",
    "node": "mx1",
    "totals": {"connection": 12, "reception": 30, "rejection": 2},
    "top": {
        "ipv4/32": [_talker("203.0.113.7/32", 9), _talker("198.51.100.1/32", 3)],
        "ipv4/24": [_talker("203.0.113.0/24", 9)],
        "ipv6/128": [],
        "ipv6/64": [_talker("2001:db8::/64", 1)],
    },
    "closed_at": 1764000305.5,
}


def test_window_summary() -> None:
    assert _valid("window-summary", SUMMARY)
    cluster = {k: v for k, v in SUMMARY.items() if k != "node"} | {"scope": "cluster"}
    assert _valid("window-summary", cluster)
    assert not _valid("window-summary", {**cluster, "node": "mx1"})
    assert not _valid("window-summary", {k: v for k, v in SUMMARY.items() if k != "node"})
    assert not _valid("window-summary", {**SUMMARY, "scope": "region"})
    assert not _valid("window-summary", {**SUMMARY, "monitor": "300, 6"})
    assert not _valid("window-summary", {**SUMMARY, "totals": {"connection": 1}})
    assert not _valid("window-summary", {**SUMMARY, "top": {**SUMMARY["top"], "ipv4/16": []}})
    bad_talker = {**SUMMARY["top"], "ipv4/32": [{"cidr": "203.0.113.7/32", "total": 9}]}
    assert not _valid("window-summary", {**SUMMARY, "top": bad_talker})
