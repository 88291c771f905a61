"""Generated inputs for the worker fuzz runner, each with the outcome SPEC §3/§4 gives it.

Event inputs are mutated from valid events at the level of JSON values (type swaps, extreme
numbers, huge strings, deep nesting, dropped fields), so each one stays one element of a batch
and its fate is known by construction: counted (with its ``n``, node, metric and address) or
dead-lettered with a stated reason. Byte-level mutations (flips, truncation, splices) break the
JSON of a whole message, so those go one per message (``decoder_fuzz.mutated_message``) and are
judged by the reference decoder. Requests are mutated the same two ways.
"""

from __future__ import annotations

import json
import random
import sys
from dataclasses import dataclass
from typing import Any

import orjson
from decoder_fuzz import mutate_bytes

__all__ = ["encode", "EventInput", "event_input", "request_input", "RequestInput", "FUZZ_NODES", "FUZZ_IPS", "DEEP"]

FUZZ_NODES = ("fz-1", "fz-2", "fz-ü", "f" * 255)
FUZZ_IPS = (
    "192.0.2.1",
    "192.0.2.200",
    "198.51.100.7",
    "10.1.2.3",
    "0.0.0.0",
    "255.255.255.255",
    "::ffff:192.0.2.1",
    "2001:db8::1",
    "2001:db8::ffff",
    "2001:DB8:0:0:0:0:0:1",
    "::",
    "::1",
)
#: A huge string (rare: it makes its message huge) and a long one, beyond the 4 KiB a dead letter keeps.
HUGE = "x" * 200_000
LONG = "y" * 5_000
#: Values orjson cannot write, as stand-in strings that ``encode`` replaces with their JSON:
#: nesting far beyond both the decoder's level-64 cut and orjson's 1,024-level limit, and
#: an integer beyond 64 bits (orjson reads it as a double; one beyond a double's range makes the
#: whole message invalid JSON, which the byte-level mutations already cover).
DEEP = "\x00deep"
BIG_INT = "\x00big"
_RAW = {orjson.dumps(DEEP): b"[" * 1500 + b"0" + b"]" * 1500, orjson.dumps(BIG_INT): str(2**64).encode()}


def encode(value: Any) -> bytes:
    """JSON bytes of ``value``, with the stand-ins written out."""
    data = orjson.dumps(value)
    for stand_in, raw in _RAW.items():
        data = data.replace(stand_in, raw)
    return data


_WINDOWED = ("connection", "reception", "rejection")
_SESSION = ("session_open", "session_close", "node_reset")


@dataclass(frozen=True)
class EventInput:
    """One batch element; ``reason`` None means it must be counted."""

    value: Any
    reason: str | None


def _valid(rng: random.Random, now: float) -> dict[str, Any]:
    kind = rng.choice(_WINDOWED * 6 + _SESSION)
    event: dict[str, Any] = {
        "node": rng.choice(FUZZ_NODES),
        "ts": rng.choice([now - rng.uniform(0, 1800), int(now) - rng.randrange(1800)]),
        "ip": rng.choice(FUZZ_IPS),
        "event": kind,
    }
    if kind in _WINDOWED and rng.random() < 0.3:
        event["n"] = rng.choice([1, 2, 7, 2**31 - 1])
    if kind in _SESSION and rng.random() < 0.5:
        event["service"] = rng.choice(["SMTP", "IMAP", "é" * 10])
    r = rng.random()
    if r < 0.002:
        event["extra"] = DEEP
    elif r < 0.0021:
        event["extra"] = rng.choice([HUGE, LONG])
    elif r < 0.05:
        event["extra"] = rng.choice([1e308, -1e308, 2**63 - 1, -(2**63), BIG_INT, [1, {"a": None}], "é", True, None])
    return event


#: (field, bad value, reason): every value here makes a valid event fail with that reason.
_SWAPS: tuple[tuple[str, Any, str], ...] = (
    ("ts", "yesterday", "invalid_field"),
    ("ts", True, "invalid_field"),
    ("ts", [1], "invalid_field"),
    ("ts", {"s": 1}, "invalid_field"),
    ("ts", 1e308, "future_timestamp"),
    ("ts", -1e308, "too_late"),
    ("ts", 0, "too_late"),
    ("node", 5, "invalid_field"),
    ("node", "", "invalid_field"),
    ("node", "n" * 256, "invalid_field"),
    ("node", [], "invalid_field"),
    ("ip", "300.1.2.3", "invalid_ip"),
    ("ip", "1.2.3", "invalid_ip"),
    ("ip", "", "invalid_ip"),
    ("ip", "fe80::1%eth0", "invalid_ip"),
    ("ip", LONG, "invalid_ip"),
    ("event", "teleport", "unknown_event"),
    ("event", LONG, "unknown_event"),
    ("n", 0, "invalid_field"),
    ("n", -1, "invalid_field"),
    ("n", 2**31, "invalid_field"),
    ("n", BIG_INT, "invalid_field"),
    ("n", 1.5, "invalid_field"),
    ("n", "5", "invalid_field"),
    ("n", True, "invalid_field"),
)


_HUGE_SWAPS = (("ip", HUGE, "invalid_ip"), ("event", HUGE, "unknown_event"), ("node", HUGE, "invalid_field"))


def event_input(rng: random.Random, now: float, bad_share: float) -> EventInput:
    """A valid event, or (with ``bad_share``) one mutated so that SPEC rejects it."""
    event = _valid(rng, now)
    if rng.random() >= bad_share:
        return EventInput(event, None)
    how = rng.randrange(10)
    if how == 0:
        return EventInput(rng.choice([5, "str", [1, 2], None, 1e308]), "not_an_object")
    if how == 1:
        del event[rng.choice(["node", "ts", "ip", "event"])]
        return EventInput(event, "missing_field")
    field, value, reason = rng.choice(_SWAPS) if rng.random() > 0.001 else rng.choice(_HUGE_SWAPS)
    if field in ("n", "ip", "ts") and event["event"] not in _WINDOWED:
        event["event"] = "connection"  # only windowed events have n, and are judged by their time
    event[field] = value
    return EventInput(event, reason)


@dataclass(frozen=True)
class RequestInput:
    """One request message: its bytes, and the id of the reply it must get (None: no reply on
    our topic is owed, because it has no usable ``reply_to`` naming our topic)."""

    raw: bytes
    reply_id: str | None


def _request(rng: random.Random, reply_to: str, request_id: str, now: float) -> dict[str, Any]:
    request: dict[str, Any] = {
        "id": request_id,
        "reply_to": reply_to,
        "op": rng.choice(["connections", "receptions", "rejections", "inbound_session_count", "teleport"]),
        "monitor": rng.choice(["3600,3", "3600, 3", "120,5"]),
        "ip": rng.choice(FUZZ_IPS),
        "cidr": rng.choice(["/24", "/0", "/128", "192.0.2.0/24", "[2001:db8::]/32", "/33", "x"]),
        "at": now,
    }
    if rng.random() < 0.5:
        request["cluster"] = True
    else:
        request["node"] = rng.choice(FUZZ_NODES)
    swaps: list[tuple[str, Any]] = [
        ("startv", rng.choice([0, 1, 2, 3, -1, 2**63, 1e308, "0", None])),
        ("endv", rng.choice([0, 2, 5, BIG_INT, -(2**63), 1.0, [0]])),
        ("at", rng.choice([1e308, -1e308, 0, "now", None])),
        ("cidr", rng.choice([LONG, 7, None, "::/0", "0.0.0.0/0"])),
        ("op", rng.choice([None, 7, LONG, []])),
        ("cluster", rng.choice([1, "true", None, False])),
        ("node", rng.choice([LONG, 5, ""])),
        ("extra", DEEP),
        ("service", rng.choice(["SMTP", 5, LONG])),
    ]
    for name, value in rng.sample(swaps, rng.randrange(0, 3)):
        request[name] = value
    return request


def request_input(rng: random.Random, reply_to: str, serial: int, now: float, internal: str) -> RequestInput:
    """A request mutated at the value level (a reply is owed) or the byte level (judged by parsing
    it as the SPEC says: a JSON object with a string ``reply_to``)."""
    request_id = f"fz{serial}"
    request = _request(rng, reply_to, request_id, now)
    r = rng.random()
    if r < 0.03:
        request["reply_to"] = rng.choice([None, 5, "", internal])
        return RequestInput(encode(request), None)
    if r < 0.05:
        del request["reply_to"]
        return RequestInput(encode(request), None)
    if r < 0.65:
        return RequestInput(encode(request), request_id)
    raw = mutate_bytes(bytearray(encode(request)), rng)
    return RequestInput(raw, _owed_reply(raw, reply_to))


def _json(raw: bytes) -> Any:
    """JSON as SPEC reads it: orjson's syntax at any depth and with numbers of any size. What
    orjson refuses only for its 1,024-level limit or a number beyond a double goes to the stdlib
    parser, with room for the nesting (and refusing NaN and Infinity, as orjson does)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "depth limit exceeded" not in str(exc) and "when parsed as double" not in str(exc):
            raise
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 100_000))
    try:
        return json.loads(raw, parse_constant=_refuse)
    finally:
        sys.setrecursionlimit(limit)


def _refuse(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _owed_reply(raw: bytes, reply_to: str) -> str | None:
    """The id whose reply our topic must get, after a byte-level mutation ('' for a reply whose
    id is not a string): routable means a JSON object whose ``reply_to`` is still our topic."""
    try:
        obj = _json(raw)
    except ValueError:
        return None
    if not isinstance(obj, dict) or obj.get("reply_to") != reply_to:
        return None
    request_id = obj.get("id")
    return request_id if isinstance(request_id, str) else ""
