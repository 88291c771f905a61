"""``inbound-audit lua`` bounds the whole run with ``--timeout`` and refuses a bad ``--ip`` up front."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest
from harness import REPO
from usage import run_cli

pytestmark = pytest.mark.integration

BUSY = """
local mod = {}
function mod:validate_mailfrom(str, accept, vctx)
  while true do end
end
msys.registerModule("busy", mod)
"""

# Every query waits for a reply nobody sends; pcall swallows each failure and asks again.
STUBBORN = """
require("msys.audit")
local mod = {}
function mod:validate_mailfrom(str, accept, vctx)
  while true do
    pcall(function() return msys.audit.connections("60,1") end)
  end
end
msys.registerModule("stubborn", mod)
"""


@pytest.mark.parametrize("script", [BUSY, STUBBORN], ids=["busy-loop", "queries-in-pcall"])
async def test_timeout_bounds_the_whole_run(kafka_bootstrap: str, tmp_path: Path, script: str) -> None:
    path = tmp_path / "policy.lua"
    path.write_text(script)
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "INBOUND_AUDIT_REQUESTS_TOPIC": f"t{uuid.uuid4().hex}.nobody"}
    args = ["lua", str(path), "--ip", "192.0.2.1", "--node", "mta-1", "--cluster-default", "--timeout", "3"]
    started = time.monotonic()
    done = await asyncio.to_thread(run_cli, env, *args, timeout_s=60)
    took = time.monotonic() - started
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == "lua error: the policy did not finish within 3 s (--timeout)\n"
    assert 3 <= took < 8  # the interpreter's start-up on top of the 3 s


def test_a_bad_ip_is_refused_before_connecting() -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}  # nothing there: the --ip check must come first
    done = run_cli(env, "lua", str(REPO / "examples" / "policy.lua"), "--ip", "192.0.2.300", "--node", "mta-1")
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        "inbound-audit lua: error: argument --ip: not an IPv4 or IPv6 address: '192.0.2.300'"
    )
