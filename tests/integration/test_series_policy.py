"""The README's series policy (examples/auth_policy.lua, real Lua) decides as the fleet's counts say;
the Python clients' series calls answer what a brute-force count says."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from pathlib import Path

import pytest
from harness import REPO
from usage import clear_of_boundary, running_worker

from pipeline.clients.client import AuditClient, SyncAuditClient
from pipeline.clients.lua_policy import LuaPolicyError, run_policy
from pipeline.clients.publisher import EventPublisher
from pipeline.errors import AuditError

pytestmark = pytest.mark.integration

POLICY = REPO / "examples" / "auth_policy.lua"
LIMIT = 20
#: Failed AUTH attempts per (node, client IP): one /24 over the limit fleet-wide (but not on one
#: node), one under it, one IPv4-mapped spelling that counts as IPv4.
FAILURES = {
    ("mta-1", "192.0.2.10"): 9,
    ("mta-2", "192.0.2.11"): 8,
    ("mta-2", "::ffff:192.0.2.12"): 4,
    ("mta-1", "198.51.100.7"): 12,
    ("mta-2", "198.51.100.8"): 3,
}
SESSIONS = [("192.0.2.200", "mta-1"), ("192.0.2.10", "mta-2"), ("198.51.100.7", "mta-1"), ("203.0.113.1", "mta-2")]


def failures_in_24(ip: str, extra: dict[str, int]) -> int:
    """Brute force: the fleet's failures inside the /24 of ``ip`` (ipaddress, no pipeline code)."""
    net = ipaddress.ip_network(f"{ip}/24", strict=False)
    total = 0
    for (_, source), count in FAILURES.items():
        addr = ipaddress.ip_address(source)
        addr = addr.ipv4_mapped or addr if addr.version == 6 else addr
        total += count if addr in net else 0
    return total + sum(count for source, count in extra.items() if ipaddress.ip_address(source) in net)


async def test_the_auth_policy_refuses_a_24_over_the_limit_fleet_wide(kafka_bootstrap: str) -> None:
    async with running_worker(kafka_bootstrap, "60,1 1800,4") as running:
        settings = running.settings
        with SyncAuditClient(settings) as sync:
            # Loading the policy defines the series (idempotently: every run does).
            first = await asyncio.to_thread(run_policy, POLICY, "validate_auth", "192.0.2.200", "mta-1", sync)
            assert first.name == "VALIDATE_CONT"
            for node in ("mta-1", "mta-2"):
                async with EventPublisher(settings, node, reset_on_start=False) as publisher:
                    for (source_node, ip), count in FAILURES.items():
                        if source_node == node:
                            for _ in range(count):
                                await publisher.series_add("auth_failures", ip)
            # One more failure through the policy's own hook (Lua add, default key = the session IP).
            await asyncio.to_thread(run_policy, POLICY, "auth_failed", "203.0.113.1", "mta-2", sync)
            sync.flush()
            extra = {"203.0.113.1": 1}
            async with AuditClient(settings, cluster=True) as client:
                deadline = time.monotonic() + 60
                while True:
                    got = [
                        await client.series_count("auth_failures", {"key": "/24", "endv": 5}, ip=ip)
                        for ip, _ in SESSIONS
                    ]
                    want = [failures_in_24(ip, extra) for ip, _ in SESSIONS]
                    if got == want or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.3)
                assert got == want
                per_node = await client.series_count(
                    "auth_failures", {"key": "192.0.2.0/24", "cluster": False}, node="mta-2"
                )
                assert per_node == 12
            for ip, node in SESSIONS:
                outcome = await asyncio.to_thread(run_policy, POLICY, "validate_auth", ip, node, sync)
                refused = failures_in_24(ip, extra) > LIMIT
                assert (outcome.name, outcome.code) == (("VALIDATE_DONE", 454) if refused else ("VALIDATE_CONT", None))


async def test_series_calls_from_the_clients_and_lua_errors(kafka_bootstrap: str, tmp_path: Path) -> None:
    async with running_worker(kafka_bootstrap, "60,1 1800,4") as running:
        settings = running.settings
        async with AuditClient(settings, ip="2001:db8:5::1", node="mta-9", cluster=True) as client:
            assert await client.series_define("v6fail", "cidr_ipv6", 60, 3, {"prefix_len": 48}) == 1
            assert await client.series_define("who", "string", 60, 3) == 1
            with pytest.raises(AuditError) as conflict:
                await client.series_define("who", "string", 60, 4)
            assert conflict.value.code == "series_conflict"
            await clear_of_boundary(60, 30)  # counts below ask for window 0: the adds must stay in it
            await client.series_add("v6fail")  # the connecting IP
            await client.series_add("v6fail", {"key": "2001:db8:5:ffff::2", "count": 4})
            await client.series_add("who", "alice")
            await client.series_add("who", {"key": "alice", "count": -3})
            await client.series_add("who", {"key": "bob", "count": 2})
            with pytest.raises(AuditError) as no_key:
                await client.series_add("who")
            assert no_key.value.code == "invalid_key"
            await client.flush()
            expected = {("v6fail", None): 5, ("who", "alice"): -2, ("who", "bob"): 2}

            async def answers() -> dict:
                return {(name, key): await client.series_count(name, key) for name, key in expected}

            deadline = time.monotonic() + 60
            while await answers() != expected and time.monotonic() < deadline:
                await asyncio.sleep(0.3)
            assert await answers() == expected
            await asyncio.sleep(0.01)  # the remove's ts is after every add's
            await client.series_remove("who", "alice")
            await client.flush()
            deadline = time.monotonic() + 60
            while await client.series_count("who", "alice") != 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.3)
            assert await client.series_count("who", "alice") == 0
            assert await client.series_count("who", "bob") == 2
        with SyncAuditClient(settings) as sync:
            script = str(tmp_path / "series_errors.lua")
            with open(script, "w") as fh:
                fh.write(
                    'require("msys.audit_series")\nlocal m = {}\n'
                    'function m:check(msg, accept, vctx) return msys.audit_series.count("who") end\n'
                    'msys.registerModule("m", m)\n'
                )
            with pytest.raises(LuaPolicyError, match="string series 'who' needs a 'key'"):
                await asyncio.to_thread(run_policy, script, "check", "192.0.2.1", "mta-1", sync)
