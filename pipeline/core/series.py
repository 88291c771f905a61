"""Named audit series (SPEC section 8): definitions, their text form, and the fleet's catalog.

A definition is a name, a key type (``cidr`` = IPv4, ``cidr_ipv6``, ``string``), the windows
(``interval`` seconds, ``num_windows`` kept, epoch-aligned as monitors are) and, for
``cidr_ipv6``, the ``prefix_len`` keys are truncated to. Definitions come from
``INBOUND_AUDIT_SERIES`` and from ``series_define`` requests; every worker reads them from one
compacted, one-partition topic, in log order, and the first definition of a name wins
(``SeriesCatalog``). Records are keyed by the whole definition text, so compaction never drops a
first definition in favour of a later, conflicting one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from pipeline.core.cidr import Block
from pipeline.core.windows import Monitor

__all__ = [
    "SERIES_TYPES",
    "MAX_SERIES_KEY_CHARS",
    "SeriesDef",
    "SeriesCatalog",
    "parse_series",
    "parse_series_list",
    "definition_record",
    "read_definition_record",
]

SERIES_TYPES: tuple[str, ...] = ("cidr", "cidr_ipv6", "string")
MAX_SERIES_KEY_CHARS = 255
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}")


@dataclass(frozen=True, slots=True)
class SeriesDef:
    """One series; ``prefix_len`` is None except for a ``cidr_ipv6`` series that truncates keys."""

    name: str
    type: str
    interval: int
    num_windows: int
    prefix_len: int | None = None
    #: The address family of its keys (None: string keys); derived, kept for the per-event path.
    family: int | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ValueError(f"series name {self.name!r} must be 1-128 characters of A-Z a-z 0-9 _ . -")
        if self.type not in SERIES_TYPES:
            raise ValueError(f"series type {self.type!r} is not one of {', '.join(SERIES_TYPES)}")
        for label, value in (("interval", self.interval), ("num_windows", self.num_windows)):
            if type(value) is not int or value < 1:
                raise ValueError(f"series {self.name!r}: {label} must be an integer >= 1, got {value!r}")
        if self.prefix_len is not None:
            if self.type != "cidr_ipv6":
                raise ValueError(f"series {self.name!r}: prefix_len is only for cidr_ipv6 series")
            if type(self.prefix_len) is not int or not 0 <= self.prefix_len <= 128:
                raise ValueError(f"series {self.name!r}: prefix_len must be an integer 0-128, got {self.prefix_len!r}")
        object.__setattr__(self, "family", {"cidr": 4, "cidr_ipv6": 6}.get(self.type))

    @property
    def windows(self) -> Monitor:
        """The series' ring of windows, with the monitors' arithmetic."""
        return Monitor(self.interval, self.num_windows)

    @property
    def text(self) -> str:
        """The ``INBOUND_AUDIT_SERIES`` form, ``name:type:interval,num_windows[:prefix_len]``."""
        base = f"{self.name}:{self.type}:{self.interval},{self.num_windows}"
        return base if self.prefix_len is None else f"{base}:{self.prefix_len}"

    def truncate(self, addr: int) -> int:
        """A cidr_ipv6 key as it is counted: its first ``prefix_len`` bits."""
        if self.prefix_len is None:
            return addr
        return addr & ~((1 << (128 - self.prefix_len)) - 1)

    def query_block(self, block: Block) -> Block:
        """The block a count looks up: narrower than ``prefix_len`` means its truncated key."""
        if self.prefix_len is not None and block.prefix > self.prefix_len:
            return Block.of(block.family, block.lo, self.prefix_len)
        return block

    def as_dict(self) -> dict[str, object]:
        return {
            "series": self.name,
            "type": self.type,
            "interval": self.interval,
            "num_windows": self.num_windows,
            "prefix_len": self.prefix_len,
        }

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> SeriesDef:
        """Inverse of ``as_dict`` (raises ``KeyError``, ``TypeError`` or ``ValueError``)."""
        return cls(obj["series"], obj["type"], obj["interval"], obj["num_windows"], obj.get("prefix_len"))

    def __str__(self) -> str:
        return self.text


def parse_series(text: str) -> SeriesDef:
    """``name:type:interval,num_windows[:prefix_len]``; raises ``ValueError`` naming the bad text."""
    parts = text.split(":")
    if len(parts) not in (3, 4) or "," not in parts[2]:
        raise ValueError(f"series {text!r} is not 'name:type:interval,num_windows[:prefix_len]'")
    interval_text, _, count_text = parts[2].partition(",")
    numbers = [interval_text, count_text, *parts[3:]]
    if not all(n.isascii() and n.isdigit() for n in numbers):
        raise ValueError(f"series {text!r}: interval, num_windows and prefix_len must be plain integers")
    prefix_len = int(parts[3]) if len(parts) == 4 else None
    return SeriesDef(parts[0], parts[1], int(interval_text), int(count_text), prefix_len)


def parse_series_list(text: str) -> tuple[SeriesDef, ...]:
    """The space-separated ``INBOUND_AUDIT_SERIES``; one name defined twice differently is refused."""
    defs: dict[str, SeriesDef] = {}
    for token in text.split():
        definition = parse_series(token)
        known = defs.setdefault(definition.name, definition)
        if known != definition:
            raise ValueError(f"series {definition.name!r} is defined twice differently: {known} and {definition}")
    return tuple(defs.values())


def definition_record(definition: SeriesDef) -> tuple[bytes, bytes]:
    """Key and value of the definition's record on the series topic."""
    return definition.text.encode(), orjson.dumps(definition.as_dict())


def read_definition_record(value: bytes | None) -> SeriesDef:
    """Inverse of ``definition_record``'s value; raises ``ValueError`` for anything else."""
    try:
        return SeriesDef.from_dict(orjson.loads(value or b""))
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"not a series definition: {exc!r}") from None


class SeriesCatalog:
    """The definitions read so far, first per name in log order, plus the configured ones.

    Configured series (``INBOUND_AUDIT_SERIES``) are known before the log is read; a logged
    definition that differs from a configured one is reported by ``conflicts`` (the log wins).
    """

    def __init__(self, configured: Iterable[SeriesDef] = ()) -> None:
        self.configured: dict[str, SeriesDef] = {d.name: d for d in configured}
        self.logged: dict[str, SeriesDef] = {}
        self.position = -1  # last series-topic offset read

    def apply(self, offset: int, definition: SeriesDef) -> None:
        """One record of the series topic, in offset order; a later one for a known name loses."""
        self.logged.setdefault(definition.name, definition)
        self.position = max(self.position, offset)

    def get(self, name: str) -> SeriesDef | None:
        """The definition that counts for ``name`` (the log's, else the configured one)."""
        found = self.logged.get(name)
        return found if found is not None else self.configured.get(name)

    def unlogged(self) -> list[SeriesDef]:
        """Configured definitions the log does not have yet (to be written at start)."""
        return [d for name, d in self.configured.items() if name not in self.logged]

    def conflicts(self) -> list[tuple[SeriesDef, SeriesDef]]:
        """(configured, logged) pairs that differ."""
        return [(d, self.logged[n]) for n, d in self.configured.items() if n in self.logged and self.logged[n] != d]

    def definitions(self) -> list[SeriesDef]:
        """Every definition that counts, by name."""
        merged = {**self.configured, **self.logged}
        return [merged[name] for name in sorted(merged)]
