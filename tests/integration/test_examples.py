"""The README's examples (examples/*) run as written against a real worker and print what it says.

They run in one minute window (the policy and the client ask about ``60,1``), so the counts they
print are exactly what ``publish_example.py`` published.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Mapping

import pytest
from harness import REPO
from usage import clear_of_boundary, running_worker

from pipeline.clients.client import AuditClient

pytestmark = pytest.mark.integration

EXAMPLES = REPO / "examples"
MONITORS = "60,1 300,6 1800,4"
UNKNOWN = "error unknown_monitor: monitor '120,5' is not configured; configured: 60,1 300,6 1800,4"


def run(env: Mapping[str, str], *command: str) -> subprocess.CompletedProcess[str]:
    path = f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ.get('PATH', '')}"
    return subprocess.run(
        command,
        cwd=REPO,
        env={**os.environ, **env, "PATH": path},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_readme_includes_every_example_verbatim() -> None:
    readme = (REPO / "README.md").read_text()
    for name in ("publish_example.py", "client_example.py", "policy.lua", "auth_policy.lua", "cli.sh"):
        assert (EXAMPLES / name).read_text() in readme, f"README.md no longer shows {name} as it is"


async def test_examples_run_and_print_what_the_readme_says(kafka_bootstrap: str) -> None:
    await clear_of_boundary(60, 30)
    async with running_worker(kafka_bootstrap, MONITORS) as running:
        published = await asyncio.to_thread(run, running.env, sys.executable, str(EXAMPLES / "publish_example.py"))
        assert (published.returncode, published.stdout) == (0, "published 125 events for mta-1\n"), published.stderr
        async with AuditClient(running.settings, ip="192.0.2.66", node="mta-1") as client:
            for _ in range(100):
                if await client.connections("60,1") == 120:
                    break
                await asyncio.sleep(0.2)

        answered = await asyncio.to_thread(run, running.env, sys.executable, str(EXAMPLES / "client_example.py"))
        assert answered.returncode == 0, answered.stderr
        assert answered.stdout.splitlines() == [
            "this IP, this node, current minute: 120",
            "its /24, whole fleet, last 30 min: 120",
            "rejections from 192.0.2.0/24 on mta-1: 3",
            "SMTP sessions open now from this IP: 1",
            UNKNOWN,
            "IPv6 /64, whole fleet, current minute: 1",
        ]

        shell = await asyncio.to_thread(run, running.env, "sh", str(EXAMPLES / "cli.sh"))
        assert shell.returncode == 0, shell.stderr
        lines = shell.stdout.splitlines()
        assert "published 1000/1000 events, " in shell.stdout and any(line.startswith("abusive ") for line in lines)
        after_simulate = lines[next(i for i, line in enumerate(lines) if line.startswith("try: ")) + 1 :]
        show_ip = [
            f"{label} {size}/{k}: {value if k == 0 else 0}"
            for label, value in (("Connections", 120), ("Receptions", 1), ("Rejections", 3))
            for size, count in ((60, 1), (300, 6), (1800, 4))
            for k in range(count)
        ]
        assert after_simulate == [
            *show_ip,
            "120",
            "3",
            "1",
            "exit status 1",
            "VALIDATE_DONE 421 connection rate limit exceeded",
        ]
        assert shell.stderr == UNKNOWN + "\n"
