"""Bad configuration fails fast with one line that names the cause, and a non-zero exit code.

These never start a broker: every check under test runs before ``deploy/kafka`` fetches or starts Kafka.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.cli.main import build_parser
from pipeline.errors import ConfigError
from pipeline.kafka.local_kafka import SCRIPT
from pipeline.settings import load_settings


def _one_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, f"expected one stderr line, got: {stderr!r}"
    return lines[0]


def _kafka_start(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``deploy/kafka start`` with an empty INBOUND_AUDIT_HOME, so nothing is ever cached or running."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    full_env = dict(os.environ)
    full_env.pop("INBOUND_AUDIT_KAFKA_CONTROLLER_PORT", None)  # only the test's own ports count
    full_env.update(INBOUND_AUDIT_HOME=str(home), **env)
    return subprocess.run([str(SCRIPT), "start"], env=full_env, capture_output=True, text=True, timeout=60)


def _path_without(tmp_path: Path, *missing: str, java_version: str | None = None) -> str:
    """A PATH holding the usual tools except ``missing``; optionally a fake ``java`` of that version."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for directory in (Path("/usr/local/bin"), Path("/usr/bin"), Path("/bin")):
        for tool in directory.glob("*"):
            if tool.name not in missing and not (bin_dir / tool.name).exists():
                (bin_dir / tool.name).symlink_to(tool)
    (bin_dir / "python3").unlink(missing_ok=True)
    (bin_dir / "python3").symlink_to(Path(sys.executable).resolve())
    if java_version is not None:
        (bin_dir / "java").unlink(missing_ok=True)
        (bin_dir / "java").write_text(f"#!/bin/sh\necho 'openjdk version \"{java_version}\" 2019-01-15' >&2\n")
        (bin_dir / "java").chmod(0o755)
    return str(bin_dir)


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port something else is listening on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("INBOUND_AUDIT_MONITORS", "sixty seconds"),
        ("INBOUND_AUDIT_MONITORS", "60,0"),
        ("INBOUND_AUDIT_KAFKA_PORT", "99999"),
        ("INBOUND_AUDIT_KAFKA_PORT", "ninety"),
        ("INBOUND_AUDIT_DECODER", "rust"),
    ],
)
def test_load_settings_names_the_bad_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({name: value})
    message = str(caught.value)
    assert "\n" not in message
    assert name in message and repr(value) in message


def test_cli_refuses_unparseable_monitors_with_one_line() -> None:
    (commands,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    command = next(iter(commands.choices))
    env = {**os.environ, "INBOUND_AUDIT_MONITORS": "every minute"}
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", command], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "INBOUND_AUDIT_MONITORS" in _one_line(result.stderr)


def test_kafka_script_rejects_an_invalid_port(tmp_path: Path) -> None:
    result = _kafka_start(tmp_path, INBOUND_AUDIT_KAFKA_PORT="99999")
    assert result.returncode != 0
    line = _one_line(result.stderr)
    assert "INBOUND_AUDIT_KAFKA_PORT" in line and "99999" in line


def test_kafka_script_needs_java(tmp_path: Path) -> None:
    path = _path_without(tmp_path, "java")
    result = _kafka_start(tmp_path, PATH=path, INBOUND_AUDIT_KAFKA_PORT=str(_free_port()))
    assert result.returncode != 0
    assert "java" in _one_line(result.stderr).lower()


def test_kafka_script_needs_java_17(tmp_path: Path) -> None:
    path = _path_without(tmp_path, java_version="11.0.2")
    result = _kafka_start(tmp_path, PATH=path, INBOUND_AUDIT_KAFKA_PORT=str(_free_port()))
    assert result.returncode != 0
    line = _one_line(result.stderr)
    assert "Java 17" in line and "11.0.2" in line


def test_kafka_script_needs_maven_for_an_empty_cache(tmp_path: Path) -> None:
    path = _path_without(tmp_path, "mvn")
    result = _kafka_start(tmp_path, PATH=path, INBOUND_AUDIT_KAFKA_PORT=str(_free_port()))
    assert result.returncode != 0
    assert "Maven (mvn)" in _one_line(result.stderr)
    assert list((tmp_path / "home").iterdir()) == []  # nothing half-fetched left behind


def test_kafka_script_refuses_a_taken_port(tmp_path: Path, taken_port: int) -> None:
    result = _kafka_start(tmp_path, INBOUND_AUDIT_KAFKA_PORT=str(taken_port))
    assert result.returncode != 0
    line = _one_line(result.stderr)
    assert f"127.0.0.1:{taken_port}" in line and "in use" in line


def test_kafka_script_refuses_a_taken_controller_port(tmp_path: Path, taken_port: int) -> None:
    result = _kafka_start(
        tmp_path,
        INBOUND_AUDIT_KAFKA_PORT=str(_free_port()),
        INBOUND_AUDIT_KAFKA_CONTROLLER_PORT=str(taken_port),
    )
    assert result.returncode != 0
    line = _one_line(result.stderr)
    assert "INBOUND_AUDIT_KAFKA_CONTROLLER_PORT" in line and str(taken_port) in line
