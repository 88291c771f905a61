"""The Kafka topics of ``topics/topics.toml``, resolved against the settings.

The TOML stays declarative (names come from settings, partition counts may say ``"settings"``,
values that depend on the monitors name a rule in ``RULES``) so that one file documents every
topic and the ``topics`` command, the worker and the tests all read the same definitions.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError
from pipeline.settings import Settings

__all__ = [
    "TOPICS_DIR",
    "TOPICS_FILE",
    "SCHEMAS_DIR",
    "RULES",
    "TopicSpec",
    "topic_specs",
    "topic_specs_by_role",
    "load_schema",
    "schema_names",
]

TOPICS_DIR = Path(__file__).resolve().parents[2] / "topics"
TOPICS_FILE = TOPICS_DIR / "topics.toml"
SCHEMAS_DIR = TOPICS_DIR / "schemas"

_HOUR_MS = 3_600_000


def _monitor_span_plus_1h(settings: Settings) -> str:
    """A state delta is needed while any monitor (or configured series) keeps its window; the
    hour is replay slack."""
    return str(settings.longest_span_s * 1000 + _HOUR_MS)


#: Named rules a topic's ``computed`` table may use; each maps settings to a config value.
RULES: dict[str, Callable[[Settings], str]] = {
    "monitor_span_plus_1h": _monitor_span_plus_1h,
}


@dataclass(frozen=True)
class TopicSpec:
    """One topic as it must exist on the broker."""

    name: str
    partitions: int
    replication_factor: int
    configs: dict[str, str]


@cache
def _declarations() -> dict[str, dict[str, Any]]:
    with TOPICS_FILE.open("rb") as fh:
        topics: dict[str, dict[str, Any]] = tomllib.load(fh)["topics"]
    return topics


def _count(value: int | str, from_settings: int, what: str) -> int:
    if value == "settings":
        return from_settings
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise ValueError(f'{TOPICS_FILE}: {what} must be a positive integer or "settings", got {value!r}')


def _config_text(value: object) -> str:
    """Kafka wants strings; TOML integers keep the file readable (``604_800_000``)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _resolve(role: str, decl: dict[str, Any], settings: Settings) -> TopicSpec:
    configs = {key: _config_text(value) for key, value in decl.get("configs", {}).items()}
    for key, rule in decl.get("computed", {}).items():
        if rule not in RULES:
            raise ValueError(f"{TOPICS_FILE}: topic {role!r}: unknown rule {rule!r} for {key}")
        configs[key] = RULES[rule](settings)
    return TopicSpec(
        name=getattr(settings, decl["setting"]),
        partitions=_count(decl["partitions"], settings.partitions, f"topics.{role}.partitions"),
        replication_factor=_count(
            decl["replication_factor"], settings.replication_factor, f"topics.{role}.replication_factor"
        ),
        configs=configs,
    )


def topic_specs_by_role(settings: Settings) -> dict[str, TopicSpec]:
    """Specs keyed by the TOML's logical name (``events``, ``state``, ...), in file order.

    Two roles configured to share one topic name would mix unrelated records, so that is refused.
    """
    specs = {role: _resolve(role, decl, settings) for role, decl in _declarations().items()}
    seen: dict[str, str] = {}
    for role, spec in specs.items():
        if spec.name in seen:
            raise ConfigError(f"topics {seen[spec.name]!r} and {role!r} are both named {spec.name!r}")
        seen[spec.name] = role
    return specs


def topic_specs(settings: Settings) -> tuple[TopicSpec, ...]:
    """Every topic inbound-audit needs, named and sized by ``settings``."""
    return tuple(topic_specs_by_role(settings).values())


def schema_names() -> tuple[str, ...]:
    """File names of every JSON Schema in ``topics/schemas``."""
    return tuple(sorted(p.name for p in SCHEMAS_DIR.glob("*.schema.json")))


def load_schema(name: str) -> dict[str, Any]:
    """The JSON Schema ``name`` (``"event"`` or ``"event.schema.json"``) as a dict."""
    filename = name if name.endswith(".schema.json") else f"{name}.schema.json"
    path = SCHEMAS_DIR / filename
    if path.parent != SCHEMAS_DIR or not path.is_file():
        raise FileNotFoundError(f"no schema {name!r} in {SCHEMAS_DIR} (have: {', '.join(schema_names())})")
    schema: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return schema
