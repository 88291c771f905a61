"""Shared fixtures: one real Kafka broker for the whole test session, and per-test unique names.

The test broker listens on its own ports (19092, controller 19093) so it never collides with a
developer's ``make run`` broker on 9092, and shares the jar cache so it downloads nothing twice.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import kafka_for_tests

from pipeline.settings import Settings, load_settings


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--no-native",
        action="store_true",
        help="hide the native decoder (pipeline_native) as if it were not built, to test the Python fallback",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--no-native"):
        sys.modules["pipeline_native"] = None  # type: ignore[assignment]  # makes the import fail


def _settings_from_env() -> Settings:
    """Only the variables that choose the broker and the cache; the rest stay at their defaults."""
    wanted = ("KAFKA_BOOTSTRAP_SERVERS", "INBOUND_AUDIT_HOME")
    return load_settings({name: os.environ[name] for name in wanted if name in os.environ})


@pytest.fixture(scope="session")
def kafka_home() -> Path:
    """Where the Kafka jars are cached (``INBOUND_AUDIT_HOME``), for tests that run their own broker."""
    return _settings_from_env().home_dir


@pytest.fixture
def home_with_jars(tmp_path: Path, kafka_home: Path) -> Path:
    """A private ``INBOUND_AUDIT_HOME`` sharing the jar cache, for a test's own broker (or a command
    that must not start one: one that wrongly did would really start it here, not fail for want of
    jars)."""
    home = tmp_path / "home"
    home.mkdir()
    for cached in kafka_home.glob("kafka-*"):  # a missing cache is fetched here instead
        (home / cached.name).symlink_to(cached)
    return home


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap address of a real broker: ``KAFKA_BOOTSTRAP_SERVERS`` if set, else the test broker."""
    with pytest.MonkeyPatch.context() as patch:
        # The controller port follows the test port (19093), not a developer's own setting.
        patch.delenv("INBOUND_AUDIT_KAFKA_CONTROLLER_PORT", raising=False)
        with kafka_for_tests(_settings_from_env()) as bootstrap:
            patch.undo()  # only the start needed it
            yield bootstrap


@pytest.fixture
def unique_topic_prefix() -> str:
    """A topic-name prefix no other test or earlier run uses, so tests can share one broker."""
    return f"test.{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session", autouse=True)
def _remove_worker_snapshots() -> Iterator[None]:
    """Workers started by tests snapshot their replicas under one directory; leave nothing behind."""
    yield
    from harness import SNAPSHOT_ROOT

    shutil.rmtree(SNAPSHOT_ROOT, ignore_errors=True)
