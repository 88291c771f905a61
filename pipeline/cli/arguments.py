"""Argument types shared by the sub-commands, so a bad value is refused up front with one line
(argparse prints ``argument --x: <reason>`` and exits 2) instead of failing halfway through."""

from __future__ import annotations

import argparse
import ipaddress
from collections.abc import Callable
from typing import TypeVar

__all__ = ["positive", "ip_address"]

N = TypeVar("N", int, float)


def positive(kind: Callable[[str], N], maximum: float | None = None) -> Callable[[str], N]:
    """A number greater than 0 (and at most ``maximum``), parsed with ``kind``."""

    def parse(text: str) -> N:
        value = kind(text)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum:,}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in "invalid int value" messages
    return parse


def ip_address(text: str) -> str:
    """An IPv4 or IPv6 address, as the session's connecting IP."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an IPv4 or IPv6 address: {text!r}") from None
    return text
