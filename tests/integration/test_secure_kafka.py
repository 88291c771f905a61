"""Over SASL_SSL with SCRAM, on a broker of its own started by ``deploy/kafka start --secure`` (ports
19392 plaintext, 19393 controller, 19394 SASL_SSL, 19395 SSL with client certificates), with the roles'
ACLs granted by ``deploy/acls.sh``: publisher, client and CLI answers equal the oracle; a wrong password
and an untrusted CA fail fast with one line; the MTA's grants let it write events and not the state
topic, whether it authenticates with SCRAM or with its client certificate.

``test_worker_over_sasl_ssl`` then replaces the plaintext worker by one connecting as ``worker``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import TopicAuthorizationFailedError
from audit_oracle import Monitor
from harness import REPO, WorkerProcess, isolated_env, prepare_topics
from usage import expected, run_cli, settled, stream_of_events, wait_caught_up

from pipeline.clients.client import AuditClient
from pipeline.clients.publisher import EventPublisher
from pipeline.errors import KafkaAccessError
from pipeline.kafka.connection import client_options, connection_error
from pipeline.settings import Settings, load_settings

pytestmark = pytest.mark.integration

PLAIN_PORT, SECURE_PORT = 19392, 19394
MONITORS = [Monitor(3600, 2)]
MONITOR = MONITORS[0].name


@dataclasses.dataclass(frozen=True)
class SecureBroker:
    plaintext: str
    secure: str
    cafile: Path
    mtls: str
    mta_certificate: tuple[Path, Path]  # certificate and key, CN=mta

    def password_file(self, user: str) -> Path:
        return self.cafile.parent / f"{user}.password"


def _deploy_kafka(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "INBOUND_AUDIT_KAFKA_CONTROLLER_PORT"}
    env.update(
        INBOUND_AUDIT_HOME=str(home),
        INBOUND_AUDIT_KAFKA_PORT=str(PLAIN_PORT),
        INBOUND_AUDIT_KAFKA_SECURE_PORT=str(SECURE_PORT),
    )
    return subprocess.run([str(REPO / "deploy" / "kafka"), *args], env=env, capture_output=True, text=True)


@pytest.fixture(scope="session")
def secure_broker(kafka_home: Path) -> Iterator[SecureBroker]:
    """A broker of this module's own with the SASL_SSL listener; the shared test broker is untouched."""
    already_running = _deploy_kafka(kafka_home, "status").returncode == 0
    if not already_running:
        _deploy_kafka(kafka_home, "reset")  # earlier runs' topics would slow its start-up
    started = _deploy_kafka(kafka_home, "start", "--secure")
    assert started.returncode == 0, started.stderr
    lines = started.stdout.splitlines()
    _, secure, cafile = next(line for line in lines if line.startswith("secure ")).split()
    _, mtls, certificate, key = next(line for line in lines if line.startswith("mtls ")).split()
    yield SecureBroker(lines[-1], secure, Path(cafile), mtls, (Path(certificate), Path(key)))
    if not already_running:
        _deploy_kafka(kafka_home, "stop")
        _deploy_kafka(kafka_home, "reset")


@dataclasses.dataclass
class Fleet:
    broker: SecureBroker
    env: dict[str, str]  # the worker's: plaintext listener, this module's topics
    worker: WorkerProcess
    events: list[dict[str, Any]]  # everything published to the events topic, for the oracle
    t0: float

    def role_env(self, user: str, **overrides: str) -> dict[str, str]:
        """The environment of ``user`` (mta, policy, worker, analytics, admin) on the SASL_SSL listener."""
        return {
            **self.env,
            "KAFKA_BOOTSTRAP_SERVERS": self.broker.secure,
            "INBOUND_AUDIT_SECURITY_PROTOCOL": "SASL_SSL",
            "INBOUND_AUDIT_SASL_MECHANISM": "SCRAM-SHA-512",
            "INBOUND_AUDIT_SASL_USERNAME": user,
            "INBOUND_AUDIT_SASL_PASSWORD_FILE": str(self.broker.password_file(user)),
            "INBOUND_AUDIT_SSL_CAFILE": str(self.broker.cafile),
            **overrides,
        }

    def settings(self, user: str, **overrides: str) -> Settings:
        return load_settings(self.role_env(user, **overrides))


@pytest.fixture(scope="module")
async def fleet(secure_broker: SecureBroker, kafka_home: Path) -> AsyncIterator[Fleet]:
    """This module's topics, every role's documented grants on them, and a worker (plaintext for now)."""
    env = isolated_env(secure_broker.plaintext, 2, MONITOR)
    await prepare_topics(env)
    worker = WorkerProcess(env).start()  # on the plaintext listener: it needs no grants
    try:
        grants = await asyncio.to_thread(
            subprocess.run,
            [str(REPO / "deploy" / "acls.sh"), "all"],
            env={
                **os.environ,
                **env,
                "KAFKA_ACLS": f"{REPO / 'deploy' / 'kafka'} acls",
                "INBOUND_AUDIT_HOME": str(kafka_home),
                "INBOUND_AUDIT_KAFKA_PORT": str(PLAIN_PORT),
            },
            capture_output=True,
            text=True,
        )
        assert grants.returncode == 0, grants.stderr
        await worker.wait_ready()
        yield Fleet(secure_broker, env, worker, [], time.time())
    finally:
        worker.stop()


async def _publish_as_mta(fleet: Fleet, node: str, events: list[dict[str, Any]]) -> None:
    async with EventPublisher(fleet.settings("mta", INBOUND_AUDIT_SASL_MECHANISM="SCRAM-SHA-256"), node) as publisher:
        for event in events:
            await publisher.publish(event)
    fleet.events.extend({"node": node, **event} for event in events)


def _traffic(node_ips: list[str], now: float) -> list[dict[str, Any]]:
    kinds = ("connection", "reception", "rejection")
    return [{"ts": now, "ip": ip, "event": kinds[i % 3], "n": 1 + i % 4} for i, ip in enumerate(node_ips * 5)]


def _oracle(fleet: Fleet, op: str, options: dict[str, Any], *, ip: str | None = None, node: str | None = None) -> Any:
    stream = stream_of_events(fleet.events, MONITORS, fleet.t0)
    return lambda now: expected(stream, op, MONITOR, options, ip=ip, node=node, now=now)


async def _caught_up(fleet: Fleet, client: AuditClient) -> None:
    await wait_caught_up(client, stream_of_events(fleet.events, MONITORS, fleet.t0), MONITOR, timeout_s=30)


async def _fleet_answer(fleet: Fleet, op: str, options: dict[str, Any]) -> int:
    """Once the worker has counted everything published, ``op`` for the whole fleet as the policy user;
    it must be the oracle's answer."""
    async with AuditClient(fleet.settings("policy"), cluster=True) as client:
        await _caught_up(fleet, client)
        got, want = await settled(lambda: client.query(op, MONITOR, options), _oracle(fleet, op, options))
    assert got in want, (op, options, got, want)
    return got


async def test_publish_and_query_over_sasl_ssl_equal_the_oracle(fleet: Fleet) -> None:
    ips = ["198.51.100.7", "198.51.100.9", "198.51.100.200", "2001:db8:5::1", "2001:db8:5::2"]
    await _publish_as_mta(fleet, "mta-s1", _traffic(ips, time.time()))
    await _publish_as_mta(fleet, "mta-s2", _traffic(ips[:2], time.time()))
    async with AuditClient(fleet.settings("policy"), cluster=True) as client:
        await _caught_up(fleet, client)
        asks = [
            ("connections", {"cidr": "198.51.100.0/24", "endv": 1}, None),
            ("receptions", {"cidr": "198.51.100.7", "endv": 1}, None),
            ("rejections", {"cidr": "2001:db8:5::/64", "endv": 1}, None),
            ("connections", {"cidr": "198.51.100.0/28", "endv": 1, "cluster": False}, "mta-s2"),
        ]
        for op, options, node in asks:
            got, want = await settled(
                lambda op=op, options=options, node=node: client.query(op, MONITOR, options, node=node),
                _oracle(fleet, op, options, node=node),
            )
            assert got in want, (op, options, got, want)
            assert got > 0
    cli_options = {"cidr": "198.51.100.0/25", "endv": 1}
    before = time.time()
    done = await asyncio.to_thread(
        run_cli,
        fleet.role_env("policy"),
        *("query", "connections", "--monitor", MONITOR, "--cidr", "198.51.100.0/25", "--endv", "1", "--cluster"),
    )
    want = _oracle(fleet, "connections", cli_options)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) in {want(before), want(time.time())}


async def test_analytics_reads_dead_letters_over_sasl_ssl(fleet: Fleet) -> None:
    async with EventPublisher(fleet.settings("mta"), "mta-s3", reset_on_start=False) as publisher:
        await publisher.publish({"ts": time.time(), "ip": "not-an-address", "event": "connection"})
    deadline = time.monotonic() + 20
    while True:
        done = await asyncio.to_thread(run_cli, fleet.role_env("analytics"), "deadletters", "--from-beginning")
        assert done.returncode == 0, done.stderr
        if "invalid_ip" in done.stdout or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert [line for line in done.stdout.splitlines() if " invalid_ip " in line and "not-an-address" in line]


def _one_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = done.stderr.splitlines()
    assert done.returncode == 2 and len(lines) == 1, (done.returncode, done.stderr)
    return lines[0]


async def test_wrong_password_fails_fast_with_one_line(fleet: Fleet, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-the-password-4711\n")
    env = fleet.role_env("policy", INBOUND_AUDIT_SASL_PASSWORD_FILE=str(wrong))
    started = time.monotonic()
    done = await asyncio.to_thread(
        run_cli, env, "query", "connections", "--monitor", MONITOR, "--cluster", "--ip", "192.0.2.1"
    )
    assert time.monotonic() - started < 15
    line = _one_line(done)
    assert line == (
        f"inbound-audit: Kafka authentication failed for user 'policy' (SCRAM-SHA-512) at {fleet.broker.secure}: "
        "check INBOUND_AUDIT_SASL_USERNAME/PASSWORD"
    )
    settings = load_settings(env)
    assert "not-the-password-4711" not in repr(settings) + done.stderr + done.stdout
    with pytest.raises(KafkaAccessError, match="authentication failed for user 'policy'"):
        await EventPublisher(settings, "mta-x").start()


async def test_untrusted_ca_fails_fast_with_one_line(fleet: Fleet, tmp_path: Path) -> None:
    other_ca = tmp_path / "other-ca.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=someone else"]
        + ["-keyout", str(tmp_path / "other-ca.key"), "-out", str(other_ca)],
        check=True,
        capture_output=True,
    )
    env = fleet.role_env("admin", INBOUND_AUDIT_SSL_CAFILE=str(other_ca))
    started = time.monotonic()
    done = await asyncio.to_thread(run_cli, env, "topics")
    assert time.monotonic() - started < 15
    line = _one_line(done)
    assert line.startswith(f"inbound-audit: the TLS certificate of Kafka at {fleet.broker.secure} is not trusted (")
    assert line.endswith("): check INBOUND_AUDIT_SSL_CAFILE")
    with pytest.raises(KafkaAccessError, match="is not trusted"):
        await AuditClient(load_settings(env)).start()


async def _state_ends(fleet: Fleet) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=fleet.broker.plaintext)
    await consumer.start()
    try:
        state = fleet.env["INBOUND_AUDIT_STATE_TOPIC"]
        return await consumer.end_offsets([TopicPartition(state, p) for p in range(2)])
    finally:
        await consumer.stop()


async def test_mta_grants_refuse_the_state_topic_and_counts_stay_exact(fleet: Fleet) -> None:
    settings = fleet.settings("mta")
    producer = AIOKafkaProducer(**client_options(settings), acks="all")
    await producer.start()
    try:
        ends = await _state_ends(fleet)
        with pytest.raises(TopicAuthorizationFailedError) as refused:
            await producer.send_and_wait(settings.state_topic, b'{"forged": "delta"}', partition=0)
        assert await _state_ends(fleet) == ends
        error = await connection_error(settings, refused.value)
        assert str(error) == (
            f"Kafka at {fleet.broker.secure} refused user 'mta': TopicAuthorizationFailedError: "
            f"{settings.state_topic}: check its ACLs"
        )
        event = {"ts": time.time(), "ip": "203.0.113.50", "event": "connection", "node": "mta-s4", "n": 7}
        await producer.send_and_wait(settings.events_topic, orjson.dumps([event]), key=b"mta-s4")
        fleet.events.append(event)
    finally:
        await producer.stop()
    assert await _fleet_answer(fleet, "connections", {"cidr": "203.0.113.0/24", "endv": 1}) == 7


async def test_mtls_client_certificate_authenticates_the_mta(fleet: Fleet) -> None:
    certificate, key = fleet.broker.mta_certificate
    env = {
        **fleet.env,
        "KAFKA_BOOTSTRAP_SERVERS": fleet.broker.mtls,
        "INBOUND_AUDIT_SECURITY_PROTOCOL": "SSL",
        "INBOUND_AUDIT_SSL_CAFILE": str(fleet.broker.cafile),
    }
    with pytest.raises(KafkaAccessError, match="does it require a client certificate"):
        await EventPublisher(load_settings(env), "mta-m1").start()
    settings = load_settings(
        {**env, "INBOUND_AUDIT_SSL_CERTFILE": str(certificate), "INBOUND_AUDIT_SSL_KEYFILE": str(key)}
    )
    events = [{"ts": time.time(), "ip": "203.0.113.80", "event": "rejection", "n": 3}]
    async with EventPublisher(settings, "mta-m1") as publisher:
        await publisher.publish(events[0])
    fleet.events.append({"node": "mta-m1", **events[0]})
    producer = AIOKafkaProducer(**client_options(settings))
    await producer.start()
    try:
        with pytest.raises(TopicAuthorizationFailedError):  # its certificate makes it User:mta, with mta's grants
            await producer.send_and_wait(settings.state_topic, b"{}", partition=0)
    finally:
        await producer.stop()
    assert await _fleet_answer(fleet, "rejections", {"cidr": "203.0.113.80", "endv": 1}) == 3


async def test_a_worker_that_may_not_raise_the_state_retention_refuses_to_start(fleet: Fleet) -> None:
    """The worker's grants (deploy/acls.sh) do not include AlterConfigs: with a monitor longer than the
    state topic keeps deltas, it must refuse to start, naming the command that fixes it."""
    longer = fleet.role_env("worker", INBOUND_AUDIT_MONITORS=f"{MONITOR} 86400,2")
    worker = WorkerProcess(longer, name="long monitors").start()
    assert worker.proc is not None
    assert await asyncio.to_thread(worker.proc.wait, 60) == 2
    worker.stop()  # joins the log pump
    needed = (2 * 86400 + 3600) * 1000
    refusal = [line for line in worker.lines if "kafka-configs.sh --alter" in line]
    assert len(refusal) == 1, worker.lines
    assert f"--entity-name {fleet.env['INBOUND_AUDIT_STATE_TOPIC']} --add-config retention.ms={needed}" in refusal[0]


async def test_worker_over_sasl_ssl(fleet: Fleet) -> None:
    """Runs last in this module: replaces the plaintext worker by one connecting as ``worker`` over SASL_SSL."""
    fleet.worker.stop()
    worker = WorkerProcess(fleet.role_env("worker"), name="secure worker").start()
    try:
        await worker.wait_ready(timeout_s=60)
        await _publish_as_mta(fleet, "mta-s5", _traffic(["192.0.2.77", "192.0.2.78"], time.time()))
        assert await _fleet_answer(fleet, "receptions", {"cidr": "192.0.2.64/26", "endv": 1}) > 0
    finally:
        worker.stop()
