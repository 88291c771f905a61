"""``make screenshot``: regenerates docs/dashboard.png, the README's picture of the dashboard.

A worker (its own topics) on the configured Kafka or the test broker, ``inbound-audit simulate``
publishing a fleet's traffic, and the dashboard in headless Chromium once the chart has some
history; the query form asks for the busiest /24 of the shortest monitor's current window.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from audit_oracle import Monitor, generate
from browser import ask_form, first_row, full_page_screenshot, headless_chromium, missing_browser
from harness import REPO, WorkerProcess, isolated_env, kafka_for_tests, prepare_topics, publish
from PIL import Image
from selenium.webdriver.support.wait import WebDriverWait
from web_client import free_port

from pipeline.settings import load_settings

MONITORS = [Monitor(60, 5), Monitor(300, 6)]
NODES, RATE, DURATION_S = 30, 1200, 60
#: Seconds of traffic before the picture: the chart then has a good part of its span.
CHART_S = 45


def capture(out: Path, profile: Path) -> None:
    with kafka_for_tests(load_settings()) as bootstrap:
        port = free_port()
        env = isolated_env(bootstrap, 4, " ".join(m.name for m in MONITORS), INBOUND_AUDIT_WEB_PORT=str(port))
        settings = asyncio.run(prepare_topics(env))
        worker = WorkerProcess(env).start()
        simulation = None
        try:
            asyncio.run(worker.wait_ready())
            # Some malformed messages among older traffic, so the dead letters have reasons to show.
            asyncio.run(publish(bootstrap, settings.events_topic, generate(MONITORS, time.time(), 1500, 5).messages))
            simulation = subprocess.Popen(
                [sys.executable, "-m", "pipeline.cli", "simulate", "--nodes", str(NODES), "--rate", str(RATE)]
                + ["--duration", str(DURATION_S), "--seed", "11"],
                cwd=REPO,
                env=worker.env,
                stdout=subprocess.DEVNULL,
            )
            with headless_chromium(profile, width=1280) as driver:
                driver.get(f"http://127.0.0.1:{port}/dashboard/")
                time.sleep(CHART_S)
                WebDriverWait(driver, 30).until(lambda d: first_row(d, "ipv4/24"))
                busiest = first_row(driver, "ipv4/24")[0][0]
                fields = {"op": "connections", "monitor": MONITORS[0].name, "cidr": busiest}
                ask_form(driver, {**fields, "startv": "0", "endv": "0"}, cluster=True)
                time.sleep(2)  # one more refresh, so the chart runs up to the picture
                full_page_screenshot(driver, out)
                shrink(out)
        finally:
            if simulation is not None:
                simulation.terminate()
                simulation.wait(timeout=30)
            worker.stop()
    print(f"wrote {out} ({out.stat().st_size // 1024} KiB)")


def shrink(png: Path) -> None:
    """Re-encode with a 256-colour palette: a flat UI loses nothing visible, the file a good half."""
    with Image.open(png) as shot:
        palette = shot.convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    palette.save(png, optimize=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path, nargs="?", default=REPO / "docs" / "dashboard.png")
    args = parser.parse_args()
    if (why := missing_browser()) is not None:
        print(why, file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="inbound-audit-screenshot-") as profile:
        capture(args.out, Path(profile))
    return 0


if __name__ == "__main__":
    sys.exit(main())
