"""Debian's headless Chromium driven by Selenium through Debian's chromedriver (the dashboard's
test and ``make screenshot``). Nothing is downloaded: both come from ``deploy/system-deps``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
#: No sandbox (root in a container), and nothing that would reach the network on its own.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def missing_browser() -> str | None:
    """Why the browser cannot run here, or None."""
    absent = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if absent:
        return f"{' and '.join(absent)} not installed: run deploy/system-deps (Debian's chromium, chromium-driver)"
    return None


@contextmanager
def headless_chromium(profile_dir: Path, width: int = 1280, height: int = 900) -> Iterator[webdriver.Chrome]:
    """A fresh browser with its own profile, keeping the page's console messages for ``console``."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile_dir}")
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


def console(driver: webdriver.Chrome) -> list[dict[str, Any]]:
    """The page's console messages (and failed loads) since the last call."""
    return list(driver.get_log("browser"))


def full_page_screenshot(driver: webdriver.Chrome, path: Path) -> None:
    """The whole page as PNG: the window is made as tall as the document first."""
    width = driver.get_window_size()["width"]
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, int(height) + 100)  # the window's frame is not part of the viewport
    driver.execute_script("window.scrollTo(0, 0)")
    driver.save_screenshot(str(path))
