"""``faust -A pipeline.app.faust_app worker``: the same app for Faust's own command line.

The app is built on first access from the environment (``load_settings``), not at import time.
Prefer ``inbound-audit worker``: it also creates the topics and loads the local snapshot.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name != "app":
        raise AttributeError(name)
    from pipeline.app.app import build_app
    from pipeline.settings import load_settings

    settings = load_settings()
    return build_app(settings, settings.bootstrap).app
