"""CIDR forms of SPEC section 5, strict IP parsing, and the IP cache."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.core.cidr import Block, IpParser, parse_ip, resolve_cidr
from pipeline.errors import AuditError

V4_MAX = (1 << 32) - 1
V6_MAX = (1 << 128) - 1


def _error(cidr: object, ip: object) -> AuditError:
    with pytest.raises(AuditError) as info:
        resolve_cidr(cidr, ip)  # type: ignore[arg-type]
    return info.value


# --- parse_ip -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.0.0.0", (4, 0)),
        ("10.1.2.3", (4, 0x0A010203)),
        ("255.255.255.255", (4, V4_MAX)),
        ("::", (6, 0)),
        ("::1", (6, 1)),
        ("2001:db8::1", (6, 0x20010DB8 << 96 | 1)),
        ("2001:DB8:0:0:0:0:0:1", (6, 0x20010DB8 << 96 | 1)),
        ("::ffff:10.1.2.3", (4, 0x0A010203)),
        ("::FFFF:10.1.2.3", (4, 0x0A010203)),
        ("::ffff:0a01:0203", (4, 0x0A010203)),
        ("0:0:0:0:0:ffff:10.1.2.3", (4, 0x0A010203)),
        ("::1.2.3.4", (6, 0x01020304)),  # IPv4-compatible (deprecated), not mapped: stays IPv6
        ("::fffe:1.2.3.4", (6, 0xFFFE01020304)),
    ],
)
def test_parse_ip_valid(text: str, expected: tuple[int, int]) -> None:
    assert parse_ip(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1.2",
        "1.2.3",
        "1.2.3.4.5",
        "01.2.3.4",
        "1.2.3.04",
        "256.1.1.1",
        " 1.2.3.4",
        "1.2.3.4 ",
        "1.2.3.4\n",
        "\t::1",
        "1.2.3.4\x00",
        "\ud800",
        "１.2.3.4",
        "0x1.2.3.4",
        "fe80::1%eth0",
        "fe80::1%1",
        "[::1]",
        "1::2::3",
        "::00001",
        "1:2:3:4:5:6:7:8:9",
        "::ffff:01.2.3.4",
        "::ffff:1.2.3",
        "10.0.0.0/8",
        "localhost",
    ],
)
def test_parse_ip_invalid(text: str) -> None:
    with pytest.raises(ValueError, match="invalid IP address"):
        parse_ip(text)


@pytest.mark.parametrize("value", [None, 5, b"1.2.3.4", ["1.2.3.4"]])
def test_parse_ip_non_string(value: object) -> None:
    with pytest.raises(ValueError, match="invalid IP address"):
        parse_ip(value)  # type: ignore[arg-type]


def test_ip_parser_caches_and_bounds() -> None:
    parser = IpParser(max_entries=2)
    assert parser.get("10.0.0.1") is None
    assert parser("10.0.0.1") == (4, 0x0A000001)
    assert parser.get("10.0.0.1") == (4, 0x0A000001)
    assert parser("::ffff:10.0.0.2") == (4, 0x0A000002)
    assert len(parser) == 2
    assert parser("::2") == (6, 2)
    assert len(parser) == 1
    assert parser.get("10.0.0.1") is None
    assert parser("10.0.0.1") == (4, 0x0A000001)


def test_ip_parser_does_not_cache_invalid() -> None:
    parser = IpParser()
    for _ in range(2):
        with pytest.raises(ValueError, match="'1.2.3'"):
            parser("1.2.3")
    assert len(parser) == 0
    with pytest.raises(ValueError):
        IpParser(max_entries=0)


# --- Block ----------------------------------------------------------------------------------


def test_block_text_and_contains() -> None:
    block = resolve_cidr("10.0.0.7/24", None)
    assert block == Block(4, 24, 0x0A000000, 0x0A0000FF)
    assert str(block) == "10.0.0.0/24"
    assert block.contains(4, 0x0A000000) and block.contains(4, 0x0A0000FF)
    assert not block.contains(4, 0x0A000100) and not block.contains(4, 0x09FFFFFF)
    assert not block.contains(6, 0x0A000001)
    assert str(resolve_cidr("[2001:DB8:0::1]/32", None)) == "2001:db8::/32"
    assert str(resolve_cidr("::", None)) == "::/128"


def test_ipv4_and_ipv6_are_separate_spaces() -> None:
    everything_v4 = resolve_cidr("0.0.0.0/0", None)
    assert everything_v4 == Block(4, 0, 0, V4_MAX)
    assert not everything_v4.contains(6, 1)
    everything_v6 = resolve_cidr("::/0", None)
    assert everything_v6 == Block(6, 0, 0, V6_MAX)
    assert not everything_v6.contains(4, 1)


# --- every form -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cidr", "ip", "text", "family"),
    [
        # absent: ip as a single host
        (None, "10.1.2.3", "10.1.2.3/32", 4),
        (None, "2001:db8::7", "2001:db8::7/128", 6),
        (None, "::ffff:10.1.2.3", "10.1.2.3/32", 4),
        # /N relative to ip, in ip's family after mapping
        ("/24", "10.1.2.3", "10.1.2.0/24", 4),
        ("/0", "10.1.2.3", "0.0.0.0/0", 4),
        ("/32", "10.1.2.3", "10.1.2.3/32", 4),
        ("/24", "::ffff:10.1.2.3", "10.1.2.0/24", 4),
        ("/64", "2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64", 6),
        ("/0", "2001:db8::1", "::/0", 6),
        ("/128", "2001:db8::1", "2001:db8::1/128", 6),
        # ADDR/N, host bits ignored
        ("10.0.0.7/24", None, "10.0.0.0/24", 4),
        ("10.0.0.7/32", None, "10.0.0.7/32", 4),
        ("10.0.0.7/0", None, "0.0.0.0/0", 4),
        ("2001:db8::1/32", None, "2001:db8::/32", 6),
        ("2001:db8::1/128", None, "2001:db8::1/128", 6),
        ("[2001:db8::]/32", None, "2001:db8::/32", 6),
        ("[2001:db8::ff]/120", "garbage", "2001:db8::/120", 6),
        # ADDR: single host, bare or bracketed
        ("10.0.0.7", None, "10.0.0.7/32", 4),
        ("2001:db8::1", None, "2001:db8::1/128", 6),
        ("[2001:db8::1]", None, "2001:db8::1/128", 6),
        # IPv4-mapped ADDR is IPv4: /N >= 96 maps to /N-96, below 96 stays IPv6
        ("::ffff:10.0.0.1", None, "10.0.0.1/32", 4),
        ("[::ffff:10.0.0.1]", None, "10.0.0.1/32", 4),
        ("::ffff:10.0.0.7/128", None, "10.0.0.7/32", 4),
        ("::ffff:10.0.0.7/120", None, "10.0.0.0/24", 4),
        ("[::ffff:10.0.0.7]/104", None, "10.0.0.0/8", 4),
        ("::ffff:10.0.0.7/96", None, "0.0.0.0/0", 4),
        ("::ffff:10.0.0.7/95", None, "::fffe:0:0/95", 6),
        ("::ffff:10.0.0.7/80", None, "::/80", 6),
    ],
)
def test_forms(cidr: str | None, ip: str | None, text: str, family: int) -> None:
    block = resolve_cidr(cidr, ip)
    expected = ipaddress.ip_network(text)
    assert block.family == family
    assert (block.prefix, block.lo, block.hi) == (
        expected.prefixlen,
        int(expected.network_address),
        int(expected.broadcast_address),
    )
    assert str(block) == str(expected)


@pytest.mark.parametrize(
    ("cidr", "ip"),
    [
        (None, None),
        (None, ""),
        ("/24", None),
        ("/24", ""),
        ("/33", None),  # missing_ip wins over a bad N (SPEC precedence)
        ("/abc", None),
        ("/", None),
    ],
)
def test_missing_ip(cidr: str | None, ip: str | None) -> None:
    error = _error(cidr, ip)
    assert error.code == "missing_ip"
    assert "'ip'" in error.message
    if cidr is not None:
        assert repr(cidr) in error.message


@pytest.mark.parametrize(
    ("cidr", "ip", "quoted"),
    [
        # N out of range or malformed (plain ASCII decimal only: no sign, space, leading zero)
        ("/33", "10.0.0.1", "'/33'"),
        ("/64", "10.0.0.1", "'/64'"),
        ("/64", "::ffff:10.0.0.1", "'/64'"),
        ("/129", "2001:db8::1", "'/129'"),
        ("/-1", "10.0.0.1", "'/-1'"),
        ("/+8", "10.0.0.1", "'/+8'"),
        ("/ 8", "10.0.0.1", "'/ 8'"),
        ("/8 ", "10.0.0.1", "'/8 '"),
        ("/08", "10.0.0.1", "'/08'"),
        ("/1.5", "10.0.0.1", "'/1.5'"),
        ("/٣", "10.0.0.1", "'/٣'"),
        ("/", "10.0.0.1", "'/'"),
        ("10.0.0.0/33", None, "'10.0.0.0/33'"),
        ("2001:db8::/129", None, "'2001:db8::/129'"),
        ("::ffff:10.0.0.0/129", None, "'::ffff:10.0.0.0/129'"),
        ("10.0.0.0/", None, "'10.0.0.0/'"),
        ("10.0.0.0/8/8", None, "'10.0.0.0/8/8'"),
        ("10.0.0.0/x", None, "'10.0.0.0/x'"),
        # bad addresses
        ("", None, "''"),
        ("10.0.0", None, "'10.0.0'"),
        ("01.2.3.4/8", None, "'01.2.3.4/8'"),
        (" 10.0.0.0/8", None, "' 10.0.0.0/8'"),
        ("10.0.0.0/8\n", None, "'10.0.0.0/8\\n'"),
        ("fe80::1%eth0", None, "'fe80::1%eth0'"),
        ("fe80::1%eth0/64", None, "'fe80::1%eth0/64'"),
        ("[10.0.0.1]", None, "'[10.0.0.1]'"),
        ("[10.0.0.0]/8", None, "'[10.0.0.0]/8'"),
        ("[2001:db8::1/32]", None, "'[2001:db8::1/32]'"),
        ("[2001:db8::1", None, "'[2001:db8::1'"),
        ("[]", None, "'[]'"),
        ("garbage", "10.0.0.1", "'garbage'"),
        # the ip, when needed, must be an address
        (None, "10.0.0", "'10.0.0'"),
        (None, "not-an-ip", "'not-an-ip'"),
        ("/24", "10.0.0", "'10.0.0'"),
        ("/24", 167772161, "167772161"),
        # non-string cidr
        (24, "10.0.0.1", "24"),
        (b"10.0.0.0/8", None, "b'10.0.0.0/8'"),
    ],
)
def test_invalid_cidr(cidr: object, ip: object, quoted: str) -> None:
    error = _error(cidr, ip)
    assert error.code == "invalid_cidr"
    assert quoted in error.message


def test_bad_prefix_reported_before_bad_ip() -> None:
    assert "'/x'" in _error("/x", "nope").message


# --- properties against the stdlib ------------------------------------------------------------


@st.composite
def _networks(draw: st.DrawFn) -> tuple[str, ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """``ADDR/N`` text (with host bits) and the stdlib's non-strict network for it."""
    if draw(st.booleans()):
        addr: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv4Address(draw(st.integers(0, V4_MAX)))
        prefix = draw(st.integers(0, 32))
        text = str(addr)
    else:
        addr = ipaddress.IPv6Address(draw(st.integers(0, V6_MAX)))
        if addr.ipv4_mapped is not None:
            addr = ipaddress.IPv6Address(int(addr) ^ (1 << 127))
        prefix = draw(st.integers(0, 128))
        text = draw(st.sampled_from([str(addr), addr.exploded, f"[{addr}]"]))
    return f"{text}/{prefix}", ipaddress.ip_network(f"{addr}/{prefix}", strict=False)


@given(_networks(), st.data())
def test_matches_stdlib(case: tuple[str, ipaddress.IPv4Network | ipaddress.IPv6Network], data: st.DataObject) -> None:
    cidr, network = case
    block = resolve_cidr(cidr, None)
    assert (block.family, block.prefix) == (network.version, network.prefixlen)
    assert (block.lo, block.hi) == (int(network.network_address), int(network.broadcast_address))
    assert str(block) == str(network)
    bits = 32 if network.version == 4 else 128
    near = data.draw(
        st.one_of(
            st.integers(0, (1 << bits) - 1),
            st.integers(max(block.lo - 2, 0), min(block.hi + 2, (1 << bits) - 1)),
        )
    )
    member = ipaddress.ip_address(near) if bits == 32 else ipaddress.IPv6Address(near)
    assert block.contains(network.version, near) == (member in network)
    assert not block.contains(10 - network.version, near)


@given(st.integers(0, V4_MAX), st.integers(96, 128))
def test_mapped_prefix_matches_stdlib(value: int, prefix: int) -> None:
    mapped = ipaddress.IPv6Address((0xFFFF << 32) | value)
    block = resolve_cidr(f"{mapped}/{prefix}", None)
    expected = ipaddress.ip_network(f"{ipaddress.IPv4Address(value)}/{prefix - 96}", strict=False)
    assert (block.family, block.lo, block.hi) == (4, int(expected.network_address), int(expected.broadcast_address))


@given(st.integers(0, V4_MAX), st.integers(0, 32))
def test_relative_matches_stdlib(value: int, prefix: int) -> None:
    ip = str(ipaddress.IPv4Address(value))
    block = resolve_cidr(f"/{prefix}", ip)
    assert block == resolve_cidr(f"{ip}/{prefix}", None)
    assert block.contains(4, value)
