"""The short soak in the normal test run (``tests/support/soak.py --short``; ``make soak`` runs the
default schedule): its own broker on ports 19496-19497, restarted once, three workers under
SIGKILL, SIGSTOP past the session, a graceful restart, a join and a leave, and a publisher
restart, while a recorded mixed stream and requests flow. Every surviving worker's answers must
equal the oracle's over the record; no event's dead letter and no reply may be missing; no worker
may crash or hang. (An unroutable request's letter can be missing under faults: a known issue in
the README, printed in the summary, and what keeps ``make soak`` from passing.)"""

from __future__ import annotations

import pytest
from soak import options_from, run_soak

pytestmark = pytest.mark.integration

SOAK_PORT = 19496  # controller 19497: not the session broker's, nor `make soak`'s 19492


async def test_short_soak_loses_doubles_and_misanswers_nothing(kafka_bootstrap: str) -> None:
    # kafka_bootstrap: the session broker's start fetched the Kafka jars the soak's broker links.
    result = await run_soak(options_from(["--short", "--port", str(SOAK_PORT)]))
    print(result.summary())
    details = "\n".join(
        [result.summary(), *result.log, *result.refused, *result.crashes, *result.hung, *result.wrong[:20]]
    )
    assert not (result.lost or result.doubled or result.wrong or result.crashes or result.hung), details
    assert not (result.replies_missing or result.dead_letters_unexpected), details
    # Every malformed event's letter is there. An unroutable request's letter may be missing: the
    # README's known issue "requests lost under faults" (not fixed); the summary above names them.
    assert result.dead_letters_missing == result.request_letters_missing, details
    assert sum(result.faults.values()) >= 7, result.faults  # the faults really happened
    assert result.events > 50_000 and result.workers_checked >= 2
