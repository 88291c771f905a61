"""IP addresses as ``(family, int)`` and the CIDR forms of SPEC section 5 as inclusive int ranges.

Addresses are parsed with ``socket.inet_pton`` rather than ``ipaddress``: it is about ten times
faster and glibc's parser is strict (no leading zeros, no short forms like ``"1.2"``, no
whitespace, no zone ids). IPv4-mapped IPv6 addresses (``::ffff:a.b.c.d``, in any spelling) are
IPv4 everywhere, because the contract counts them as IPv4. IPv4 and IPv6 are separate spaces.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

from pipeline.errors import AuditError

__all__ = ["Block", "IpParser", "parse_ip", "resolve_cidr"]

_AF_INET = socket.AF_INET
_AF_INET6 = socket.AF_INET6
_inet_pton = socket.inet_pton
_from_bytes = int.from_bytes

#: ``::ffff:0:0/96``: the IPv4-mapped range of IPv6.
_MAPPED_PREFIX = 0xFFFF << 32
_MAPPED_HOSTMASK = (1 << 32) - 1
_BITS = {4: 32, 6: 128}


def parse_ip(text: str) -> tuple[int, int]:
    """Strictly parse an IP address into ``(4 | 6, value)``, IPv4-mapped IPv6 giving IPv4.

    Raises ``ValueError("invalid IP address '...'")`` for anything that is not exactly one
    address in its canonical-family text form.
    """
    if type(text) is not str:
        raise ValueError(f"invalid IP address {text!r}")
    try:
        if ":" in text:
            value = _from_bytes(_inet_pton(_AF_INET6, text), "big")
            if value >> 32 == 0xFFFF:
                return 4, value & _MAPPED_HOSTMASK
            return 6, value
        return 4, _from_bytes(_inet_pton(_AF_INET, text), "big")
    except (OSError, ValueError):
        # OSError: rejected by inet_pton; ValueError: NUL byte or unencodable surrogate.
        raise ValueError(f"invalid IP address {text!r}") from None


class IpParser:
    """``parse_ip`` behind a bounded dict cache, for the per-event hot path.

    Hot loops should bind ``parser.get`` (a plain ``dict.get``: ``None`` on a miss) and fall back
    to ``parser.parse`` (parses, caches, raises ``ValueError``); calling the parser does both.
    The cache is cleared when it would exceed ``max_entries``: simple, and a full refill costs
    one ``inet_pton`` per distinct address. Invalid input is never cached.
    """

    __slots__ = ("_cache", "get", "max_entries")

    def __init__(self, max_entries: int = 1_000_000) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries!r}")
        self.max_entries = max_entries
        self._cache: dict[str, tuple[int, int]] = {}
        self.get = self._cache.get

    def parse(self, text: str) -> tuple[int, int]:
        """Cache-miss path: parse and remember ``text``; clearing keeps the dict, so ``get`` stays bound."""
        result = parse_ip(text)
        cache = self._cache
        if len(cache) >= self.max_entries:
            cache.clear()
        cache[text] = result
        return result

    def __call__(self, text: str) -> tuple[int, int]:
        result = self._cache.get(text)
        return result if result is not None else self.parse(text)

    def __len__(self) -> int:
        return len(self._cache)


@dataclass(frozen=True, slots=True)
class Block:
    """A CIDR block as the inclusive integer range ``lo..hi`` of one address family."""

    family: int
    prefix: int
    lo: int
    hi: int

    @classmethod
    def of(cls, family: int, value: int, prefix: int) -> Block:
        """The block of ``prefix`` bits around ``value`` (host bits ignored)."""
        hostmask = (1 << (_BITS[family] - prefix)) - 1
        lo = value & ~hostmask
        return cls(family, prefix, lo, lo | hostmask)

    def contains(self, family: int, value: int) -> bool:
        return family == self.family and self.lo <= value <= self.hi

    def __str__(self) -> str:
        if self.family == 4:
            return str(ipaddress.IPv4Network((self.lo, self.prefix)))
        return str(ipaddress.IPv6Network((self.lo, self.prefix)))


def _invalid(message: str) -> AuditError:
    return AuditError("invalid_cidr", message)


def _parse_prefix(cidr: str, text: str) -> int:
    """Plain ASCII decimal, no sign, no spaces, no leading zeros (``/08`` is rejected like ``01.2.3.4``)."""
    if not (text.isascii() and text.isdigit()) or (len(text) > 1 and text[0] == "0"):
        raise _invalid(
            f"cidr {cidr!r}: prefix length {text!r} is not a plain decimal number (no sign, spaces or leading zeros)"
        )
    return int(text)


def _check_prefix(cidr: str, family: int, prefix: int) -> None:
    bits = _BITS[family]
    if prefix > bits:
        raise _invalid(f"cidr {cidr!r}: prefix length {prefix} is out of range 0-{bits} for IPv{family}")


def _parse_addr(cidr: str, text: str) -> tuple[int, int, bool]:
    """``(family, value, mapped)`` of a bare or bracketed address inside a cidr string.

    ``mapped`` is true for an IPv4-mapped IPv6 address (returned as IPv4) so that ``ADDR/N`` can
    tell ``::ffff:10.0.0.0/104`` (IPv4 /8) from ``10.0.0.0/8``.
    """
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
        if ":" not in text:
            raise _invalid(f"cidr {cidr!r}: brackets are only for IPv6 addresses")
    try:
        family, value = parse_ip(text)
    except ValueError:
        raise _invalid(f"cidr {cidr!r}: {text!r} is not an IP address") from None
    return family, value, family == 4 and ":" in text


def _missing_ip(cidr: str | None) -> AuditError:
    if cidr is None:
        return AuditError(
            "missing_ip", "no 'cidr' given, which means the 'ip' field as a single host, but 'ip' is missing"
        )
    return AuditError("missing_ip", f"cidr {cidr!r} is relative to the 'ip' field, but 'ip' is missing")


def _parse_request_ip(cidr: str | None, ip: str | None) -> tuple[int, int]:
    if ip is None or ip == "":
        raise _missing_ip(cidr)
    try:
        return parse_ip(ip)
    except ValueError:
        raise _invalid(f"ip {ip!r} is not an IP address") from None


def resolve_cidr(cidr: str | None, ip: str | None) -> Block:
    """Turn a request's ``cidr`` (SPEC section 5) and ``ip`` into a ``Block``.

    Raises ``AuditError`` ``missing_ip`` when the form needs ``ip`` and it is absent or empty
    (before any other check, per the SPEC precedence), else ``invalid_cidr`` quoting the bad input.
    """
    if cidr is None:
        family, value = _parse_request_ip(cidr, ip)
        return Block.of(family, value, _BITS[family])
    if type(cidr) is not str:
        raise _invalid(f"cidr must be a string, got {cidr!r}")
    if cidr.startswith("/"):
        if ip is None or ip == "":
            raise _missing_ip(cidr)
        prefix = _parse_prefix(cidr, cidr[1:])
        family, value = _parse_request_ip(cidr, ip)
        _check_prefix(cidr, family, prefix)
        return Block.of(family, value, prefix)
    addr_text, slash, prefix_text = cidr.partition("/")
    if not addr_text:
        raise _invalid(f"cidr {cidr!r} is empty; expected ADDR, ADDR/N or /N")
    family, value, mapped = _parse_addr(cidr, addr_text)
    if not slash:
        return Block.of(family, value, _BITS[family])
    prefix = _parse_prefix(cidr, prefix_text)
    if mapped:
        _check_prefix(cidr, 6, prefix)
        if prefix < 96:
            return Block.of(6, _MAPPED_PREFIX | value, prefix)
        return Block.of(4, value, prefix - 96)
    _check_prefix(cidr, family, prefix)
    return Block.of(family, value, prefix)
