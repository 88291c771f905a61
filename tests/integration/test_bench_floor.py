"""``benchmarks/bench_floor.py`` runs as the README says it does, on a small batch.

The script stops with an error when any stage does not account for every event it read (decoded,
written, read back, applied), so a clean exit with every stage's rate printed is the outcome.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from harness import REPO

pytestmark = pytest.mark.integration

STAGES = {"raw", "decode", "write", "read", "apply", "apply+answer"}


def test_bench_floor_accounts_for_every_event(kafka_bootstrap: str) -> None:
    """The replica role: it runs every stage's code, and the answering loop's too (CI has 20 minutes)."""
    proc = subprocess.run(
        [sys.executable, "benchmarks/bench_floor.py", "--bootstrap", kafka_bootstrap, "--events", "20000"]
        + ["--repeat", "1", "--answer-copies", "2", "--queries", "20", "--answer-role", "replica"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rates = {
        m["stage"]: float(m["rate"].replace(",", ""))
        for m in re.finditer(r"^(?P<stage>\S+)\s+(?P<rate>[\d,]+)\s+[\d.]+x$", proc.stdout, re.M)
    }
    assert set(rates) == STAGES, proc.stdout
    assert all(rate > 0 for rate in rates.values())
    assert re.search(r"^  idle\s+20 round trips: p50\s+[\d.]+ ms", proc.stdout, re.M), proc.stdout
    assert proc.stdout.count("cleanup: deleted") >= 2, proc.stdout
