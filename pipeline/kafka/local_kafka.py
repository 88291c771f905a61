"""The local development broker, driven through ``deploy/kafka`` so the CLI, tests and humans share one
way to fetch, start and stop it (and one jar cache under ``Settings.home_dir``)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from pipeline.errors import LocalKafkaError
from pipeline.settings import Settings

__all__ = [
    "ensure_local_kafka",
    "stop_local_kafka",
    "reset_local_kafka",
    "local_kafka_running",
    "resolve_bootstrap",
    "SCRIPT",
]

#: The one script that knows how to run Kafka locally; located from the source tree, not the cwd.
SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "kafka"


def _run(settings: Settings, command: str) -> subprocess.CompletedProcess[str]:
    """Run ``deploy/kafka COMMAND`` for the broker these settings describe."""
    env = dict(os.environ)
    env["INBOUND_AUDIT_HOME"] = str(settings.home_dir)
    env["INBOUND_AUDIT_KAFKA_PORT"] = str(settings.local_kafka_port)
    try:
        return subprocess.run([str(SCRIPT), command], env=env, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise LocalKafkaError(f"cannot run {SCRIPT}: {exc}") from None


def _failure(result: subprocess.CompletedProcess[str], command: str) -> LocalKafkaError:
    """The script's own one-line reason (its last stderr line), which already names the cause."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    reason = lines[-1] if lines else f"deploy/kafka {command} exited with status {result.returncode}"
    return LocalKafkaError(reason)


def ensure_local_kafka(settings: Settings) -> str:
    """Start the local broker unless it already runs, and return its bootstrap address."""
    result = _run(settings, "start")
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise _failure(result, "start")
    return lines[-1].strip()


def stop_local_kafka(settings: Settings) -> None:
    """Stop the local broker gracefully; a broker that is not running is not an error."""
    result = _run(settings, "stop")
    if result.returncode != 0:
        raise _failure(result, "stop")


def reset_local_kafka(settings: Settings) -> None:
    """Delete a stopped local broker's data, so a broker the tests own starts empty and fast."""
    result = _run(settings, "reset")
    if result.returncode != 0:
        raise _failure(result, "reset")


def local_kafka_running(settings: Settings) -> bool:
    """Whether the local broker for these settings runs, so callers only stop what they started."""
    result = _run(settings, "status")
    if result.returncode not in (0, 3):
        raise _failure(result, "status")
    return result.returncode == 0


def resolve_bootstrap(settings: Settings) -> str:
    """The worker's bootstrap: the configured cluster, or the bundled local broker, started on demand.

    Only ``inbound-audit worker`` (and so ``make run``) calls this. Every other command and client
    connects to ``settings.bootstrap`` and fails fast when nothing answers there
    (``reachability.require_reachable``): a query must never restart a broker its user just stopped.
    """
    return ensure_local_kafka(settings) if settings.uses_local_kafka else settings.bootstrap
