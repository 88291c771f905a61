"""The dashboard page on the worker's web server, and the JSON it polls.

``/dashboard/`` is one HTML page; its script and style are package files (``static/``) served at
``/dashboard/static/``, so it works with no network beyond the worker. The page polls
``/dashboard/data`` every ``REFRESH_S`` and asks ``/query`` for its query form. Everything in the
data is bounded whatever the size of the fleet: the chart's busiest nodes plus "others", a few top
talkers per level, the worst partitions' lag, the dead letters by reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from faust.web import Request, Response, View

from pipeline.app.lag import consumer_lag, state_lag
from pipeline.app.rates import RateHistory
from pipeline.app.top_talkers import TopTalkers
from pipeline.core.query import OPS
from pipeline.core.summaries import TOP_LEVELS

if TYPE_CHECKING:
    from pipeline.app.app import AuditApp

__all__ = ["register_dashboard", "dashboard_data", "STATIC_DIR"]

#: The page, its script and its style (package data, see pyproject.toml).
STATIC_DIR = Path(__file__).with_name("static")
#: Seconds between the page's polls, and between readings of the events per node.
REFRESH_S = 2.0
#: Readings the chart spans (three minutes).
RATE_READINGS = 90
#: Nodes drawn on their own in the chart; the rest are one "others" line.
CHART_NODES = 8
#: Top talkers shown per monitor, window and prefix level; ranked at most once per TALKERS_MAX_AGE_S.
TALKER_ROWS = 5
TALKERS_MAX_AGE_S = 5.0
#: Partitions listed per lag (the most behind first).
LAG_ROWS = 8


def register_dashboard(audit: AuditApp) -> None:
    """Add the page, its assets, its data and the timer that reads the events per node."""
    app = audit.app
    history = RateHistory(RATE_READINGS)
    talkers = TopTalkers(audit.settings.monitors, TALKER_ROWS, TALKERS_MAX_AGE_S)
    page = (STATIC_DIR / "dashboard.html").read_bytes()

    @app.timer(REFRESH_S, name="dashboard_rates")
    async def read_rates() -> None:
        # From the catch-up on: the replay of the state log is not traffic.
        if audit.manager.recovered.is_set():
            history.record(audit.clock(), audit.replica.tally)

    async def show_page(self: View, request: Request) -> Response:
        return self.bytes(page, content_type="text/html")

    app.page("/dashboard", name="dashboard_bare")(show_page)
    app.page("/dashboard/", name="dashboard")(show_page)
    app.web.add_static("/dashboard/static/", STATIC_DIR)

    @app.page("/dashboard/data")
    async def data(self: View, request: Request) -> Response:
        body = orjson.dumps(dashboard_data(audit, history, talkers))
        return self.bytes(body, content_type="application/json", headers={"Cache-Control": "no-store"})


def dashboard_data(audit: AuditApp, history: RateHistory, talkers: TopTalkers) -> dict[str, Any]:
    """Everything the page shows, as of now."""
    ready, reason = audit.readiness()
    now = audit.clock()
    return {
        "now": now,
        "refresh_s": REFRESH_S,
        "worker": {"ready": ready, "reason": reason, "group": audit.settings.group_id},
        "monitors": [m.name for m in audit.settings.monitors],
        "ops": list(OPS),
        "levels": [label for label, _, _ in sorted(TOP_LEVELS, key=lambda level: (level[1], level[2]))],
        "rates": history.series(CHART_NODES),
        "top": talkers.ranking(audit.replica.counts, now) if ready else [],
        "dead_letters": [
            {"source": source, "reason": reason, "count": count}
            for (source, reason), count in sorted(audit.dead_letters().items(), key=lambda item: -item[1])
        ],
        "lag": {"consumer": _worst(consumer_lag(audit)), "replica": _worst(state_lag(audit))},
    }


def _worst(lag: dict[int, int]) -> dict[str, Any]:
    """Totals over the partitions and the ``LAG_ROWS`` most behind."""
    worst = sorted(lag.items(), key=lambda item: (-item[1], item[0]))[:LAG_ROWS]
    return {
        "partitions": len(lag),
        "total": sum(lag.values()),
        "max": max(lag.values(), default=0),
        "worst": [{"partition": partition, "lag": behind} for partition, behind in worst],
    }
