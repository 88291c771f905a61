"""``inbound-audit series``: define, add, subtract, count (every CIDR form), delete and list, as a
shell user sees them, against a brute-force sum of what the commands sent."""

from __future__ import annotations

import asyncio
import time

import pytest
from usage import run_cli, running_worker

pytestmark = pytest.mark.integration


async def cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    done = await asyncio.to_thread(run_cli, env, "series", *args)
    return done.returncode, done.stdout.strip(), done.stderr.strip()


async def count_settles(env: dict[str, str], expected: str, *args: str) -> None:
    """Polls ``series count ARGS`` over the last three windows (the test spans minutes) until it
    prints ``expected`` (events travel through Kafka)."""
    deadline = time.monotonic() + 60
    while True:
        status, out, err = await cli(env, "count", *args, "--endv", "2")
        if (status, out) == (0, expected) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.3)
    assert (status, out) == (0, expected), (args, err)


async def test_series_commands(kafka_bootstrap: str) -> None:
    async with running_worker(kafka_bootstrap, "60,1 1800,4") as running:
        env = running.env
        assert await cli(env, "list") == (0, "no series defined", "")
        assert await cli(env, "define", "auth", "cidr", "60", "5") == (0, "defined auth", "")
        assert await cli(env, "define", "auth", "cidr", "60", "5") == (0, "defined auth", "")
        status, _, err = await cli(env, "define", "auth", "cidr", "60", "6")
        assert status == 1 and err.startswith(
            "error series_conflict: series 'auth' is already defined as auth:cidr:60,5"
        )
        assert (await cli(env, "define", "names", "string", "60", "3"))[0] == 0
        # Sent: mta-1 +3 and mta-2 -1 for 192.0.2.1, console +1 for 192.0.2.9, 2 for "alice".
        assert (await cli(env, "add", "auth", "192.0.2.1", "--count", "3", "--node", "mta-1"))[0] == 0
        assert (await cli(env, "subtract", "auth", "192.0.2.1", "--node", "mta-2"))[0] == 0
        assert (await cli(env, "add", "auth", "192.0.2.9"))[0] == 0
        assert (await cli(env, "add", "names", "alice", "--count", "2"))[0] == 0
        await count_settles(env, "3", "auth", "192.0.2.0/24")
        await count_settles(env, "3", "auth", "/24", "--ip", "192.0.2.77")
        await count_settles(env, "2", "auth", "192.0.2.1")
        await count_settles(env, "3", "auth", "192.0.2.1", "--node", "mta-1")
        await count_settles(env, "-1", "auth", "0.0.0.0/0", "--node", "mta-2")
        await count_settles(env, "2", "names", "alice")
        assert (await cli(env, "delete", "auth", "192.0.2.1"))[0] == 0
        await count_settles(env, "1", "auth", "192.0.2.0/24")
        assert await cli(env, "list") == (0, "auth:cidr:60,5\nnames:string:60,3", "")
        status, _, err = await cli(env, "count", "nope", "10.0.0.1")
        assert status == 1 and err == "error unknown_series: series 'nope' is not defined"
        status, _, err = await cli(env, "count", "names")
        assert status == 1 and err.startswith("error invalid_key:")
