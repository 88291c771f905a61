"""A Momentum policy (real Lua via lupa) decides from the fleet's counts, as the published events say."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from audit_oracle import Monitor, Stream
from harness import REPO
from usage import clear_of_boundary, expected, run_cli, running_worker, stream_of_events, wait_caught_up

from pipeline.clients.client import AuditClient, SyncAuditClient
from pipeline.clients.lua_policy import LuaPolicyError, run_policy
from pipeline.clients.publisher import EventPublisher
from pipeline.settings import Settings

pytestmark = pytest.mark.integration

POLICY = REPO / "examples" / "policy.lua"
MONITORS = [Monitor(60, 1), Monitor(3600, 2)]

# (node, ip, events): a benign client, a fast one, a refused network, one with too many sessions.
TRAFFIC: list[tuple[str, str, list[tuple[str, int]]]] = [
    ("mta-1", "198.51.100.9", [("connection", 3), ("reception", 2)]),
    ("mta-1", "192.0.2.66", [("connection", 150), ("reception", 20)]),
    ("mta-2", "203.0.113.5", [("connection", 2), ("rejection", 60), ("reception", 5)]),
    ("mta-1", "2001:db8:77::5", [("session_open", 11), ("connection", 11)]),
    ("mta-2", "2001:db8:77::6", [("session_open", 2), ("connection", 2), ("reception", 2)]),
]
# (ip, node) sessions asked about, including a fast client seen from a node it never used.
SESSIONS = [(ip, node) for node, ip, _ in TRAFFIC] + [("192.0.2.66", "mta-2")]


def oracle_decision(stream: Stream, ip: str, node: str, now: float) -> str:
    """examples/policy.lua, in Python, over the oracle's counts."""

    def ask(op: str, options: Any) -> int:
        monitor = None if op == "inbound_session_count" else "60,1"
        return expected(stream, op, monitor, options, ip=ip, node=node, now=now)

    if ask("inbound_session_count", "/32") > 10:
        return "VALIDATE_DONE 421 connection limit exceeded"
    if ask("connections", None) > 100 or ask("connections", {"cidr": "/24", "cluster": True}) > 1000:
        return "VALIDATE_DONE 421 connection rate limit exceeded"
    refused, accepted = ask("rejections", "/24"), ask("receptions", {"cidr": "/24"})
    if refused > 50 and refused > accepted:
        return "VALIDATE_DONE 421 too many rejected messages from your network"
    return "VALIDATE_CONT"


async def publish_traffic(settings: Settings) -> Stream:
    events: list[dict[str, Any]] = []
    for node in ("mta-1", "mta-2"):
        async with EventPublisher(settings, node, reset_on_start=False) as publisher:
            for ev_node, ip, kinds in TRAFFIC:
                if ev_node != node:
                    continue
                for kind, count in kinds:
                    for _ in range(count):
                        event = {"node": node, "ts": time.time(), "ip": ip, "event": kind}
                        await publisher.publish(event)
                        events.append(event)
    return stream_of_events(events, MONITORS, time.time())


@pytest.fixture(scope="module")
async def policy_env(kafka_bootstrap: str) -> Any:
    await clear_of_boundary(60, 20)
    async with running_worker(kafka_bootstrap, "60,1 3600,2") as running:
        stream = await publish_traffic(running.settings)
        async with AuditClient(running.settings) as client:
            await wait_caught_up(client, stream, "3600,2")
        yield running, stream


async def test_policy_decides_as_the_counts_say(policy_env: Any) -> None:
    running, stream = policy_env

    def decide_all() -> list[tuple[str, str, set[str]]]:
        with SyncAuditClient(running.settings) as client:
            out = []
            for ip, node in SESSIONS:
                before = time.time()
                got = str(run_policy(POLICY, "validate_mailfrom", ip, node, client, argument="<a@example.com>"))
                out.append((ip, got, {oracle_decision(stream, ip, node, t) for t in (before, time.time())}))
            return out

    decisions = await asyncio.to_thread(decide_all)
    for ip, got, want in decisions:
        assert got in want, (ip, got, want)
    assert [got for _, got, _ in decisions] == [
        "VALIDATE_CONT",
        "VALIDATE_DONE 421 connection rate limit exceeded",
        "VALIDATE_DONE 421 too many rejected messages from your network",
        "VALIDATE_DONE 421 connection limit exceeded",
        "VALIDATE_CONT",
        "VALIDATE_CONT",
    ], "the traffic no longer exercises every branch of the policy"


UNCONFIGURED = """
require("msys.core")
require("msys.audit")
local mod = {}
function mod:validate_connect(accept, vctx)
  local ok, err = pcall(msys.audit.connections, "120,5", {cluster = true})
  vctx:set_code(451, err)
  return msys.core.VALIDATE_DONE
end
function mod:validate_ehlo(str, accept, vctx)
  return msys.audit.receptions("120,5", "/24") > 0 and msys.core.VALIDATE_DONE or msys.core.VALIDATE_CONT
end
msys.registerModule("unconfigured", mod)
"""
SPEC_MESSAGE = "monitor '120,5' is not configured; configured: 60,1 3600,2"


async def test_unconfigured_monitor_is_a_lua_error_with_the_spec_message(policy_env: Any, tmp_path: Path) -> None:
    running, _ = policy_env
    script = tmp_path / "unconfigured.lua"
    script.write_text(UNCONFIGURED)

    def run() -> tuple[str, str]:
        with SyncAuditClient(running.settings) as client:
            caught = run_policy(script, "validate_connect", "192.0.2.1", "mta-1", client)
            with pytest.raises(LuaPolicyError) as raised:
                run_policy(script, "validate_ehlo", "192.0.2.1", "mta-1", client, argument="mx.example.com")
            return str(caught.message), str(raised.value)

    caught, raised = await asyncio.to_thread(run)
    assert caught == SPEC_MESSAGE  # pcall'ed directly: no script position to prepend
    assert raised == f"unconfigured.lua:11: {SPEC_MESSAGE}"


async def test_lua_command(policy_env: Any, tmp_path: Path) -> None:
    running, _ = policy_env
    done = await asyncio.to_thread(
        run_cli, running.env, "lua", str(POLICY), "--hook", "validate_mailfrom", "--ip", "192.0.2.66", "--node", "mta-1"
    )
    assert (done.returncode, done.stdout) == (0, "VALIDATE_DONE 421 connection rate limit exceeded\n"), done.stderr
    broken = tmp_path / "broken.lua"
    broken.write_text(
        "local mod = {}\nfunction mod:validate_connect() return undefined_function() end\n"
        'msys.registerModule("broken", mod)\n'
    )
    failed = await asyncio.to_thread(
        run_cli, running.env, "lua", str(broken), "--hook", "validate_connect", "--ip", "192.0.2.1", "--node", "mta-1"
    )
    assert failed.returncode == 1 and failed.stdout == ""
    assert failed.stderr.startswith("lua error: broken.lua:2: attempt to call a nil value"), failed.stderr
