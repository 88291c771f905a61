"""Run a Momentum policy script (Lua, via lupa) against the fleet's counters.

The script sees what a Momentum policy sees: ``require("msys.core")``, ``require("msys.audit")``
(and, harmlessly, ``msys.extended.*``), ``msys.registerModule(name, table)``, the validation
constants, and ``msys.audit.connections/receptions/rejections(monitor, options)`` and
``msys.audit.inbound_session_count(cidr, service)`` with Momentum's options rules, and
``msys.audit_series.define(name, type, interval, num_windows, options)``, ``add(name, options)``,
``count(name, options)`` and ``remove_item(name, key)`` with Momentum's defaults (a non-table
options is the key; the connecting IP is the default key, so a string series without a key is
a Lua error; ``add``/``remove_item`` events go out when the client closes). Those calls go
over the bus through a ``SyncAuditClient`` with the session's connecting IP and node as context;
an error reply becomes a Lua error whose message is the SPEC message.

Constants (Momentum's names; the values are ours, small ints, as scripts only compare them):

    VALIDATE_CONT = 0   go on with the next module / phase
    VALIDATE_DONE = 1   decided: the code set with vctx:set_code() is the answer
    VALIDATE_AGAIN = 2  ask again later (asynchronous work pending)
    VCTX_CONN = 0, VCTX_MESS = 1   the connection and message dictionaries of vctx:get/set

A hook is called as a method of each registered module that defines it, in registration order,
until one returns something other than VALIDATE_CONT, with Momentum's documented arguments:
``validate_connect(accept, vctx)``, ``validate_ehlo(str, accept, vctx)``,
``validate_mailfrom(str, accept, vctx)``, ``validate_rcptto(msg, str, accept, vctx)``, and
``(msg, accept, vctx)`` for the data hooks and any other name.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lupa

from pipeline.clients.client import SyncAuditClient
from pipeline.errors import AuditError, InboundAuditError

__all__ = ["CONSTANTS", "HOOK_ARGS", "LuaPolicyError", "PolicyTimeout", "PolicyOutcome", "run_policy"]

CONSTANTS: dict[str, int] = {
    "VALIDATE_CONT": 0,
    "VALIDATE_DONE": 1,
    "VALIDATE_AGAIN": 2,
    "VCTX_CONN": 0,
    "VCTX_MESS": 1,
}
VALIDATE_NAMES: dict[int, str] = {v: k for k, v in CONSTANTS.items() if k.startswith("VALIDATE_")}

#: Momentum's documented hook arguments (after ``self``); other hooks get (msg, accept, vctx).
HOOK_ARGS: dict[str, tuple[str, ...]] = {
    "validate_connect": ("accept", "vctx"),
    "validate_ehlo": ("str", "accept", "vctx"),
    "validate_mailfrom": ("str", "accept", "vctx"),
    "validate_rcptto": ("msg", "str", "accept", "vctx"),
}
DEFAULT_HOOK_ARGS = ("msg", "accept", "vctx")

MSYS_MODULES = (
    "msys.core",
    "msys.audit",
    "msys.audit_series",
    "msys.extended.message",
    "msys.extended.vctx",
    "msys.extended.ac",
)

#: Builds ``msys`` from the Python callables, and the per-session stand-ins.
PRELUDE = """
local call, series_call, constants, register, modules, left, spent = ...
-- The overall timeout: a script busy in Lua (a loop) is stopped too, not only one waiting for a
-- reply, and pcall/xpcall cannot swallow the timeout error once the time is spent.
if left then
  debug.sethook(function() left() end, "", 10000)
  local function rethrow(ok, ...)
    if not ok and spent() then left() end
    return ok, ...
  end
  local raw_pcall, raw_xpcall = pcall, xpcall
  pcall = function(f, ...) return rethrow(raw_pcall(f, ...)) end
  xpcall = function(f, handler, ...) return rethrow(raw_xpcall(f, handler, ...)) end
end
msys = msys or {}
msys.core = {}
for name, value in pairs(constants) do msys.core[name] = value end
-- error(..., 2) blames the script line that called msys.audit.*, as a Momentum error would.
local function audit(op)
  return function(monitor, options)
    local ok, value = call(op, monitor, options)
    if not ok then error(value, 2) end
    return value
  end
end
msys.audit = {
  connections = audit("connections"),
  receptions = audit("receptions"),
  rejections = audit("rejections"),
  inbound_session_count = function(cidr, service)
    local ok, value = call("inbound_session_count", nil, cidr, service)
    if not ok then error(value, 2) end
    return value
  end,
}
local function series(op)
  return function(...)
    local ok, value = series_call(op, ...)
    if not ok then error(value, 2) end
    return value
  end
end
msys.audit_series = {
  define = series("series_define"),
  add = series("series_add"),
  count = series("series_count"),
  remove_item = series("series_remove"),
}
msys.extended = {message = {}, vctx = {}, ac = {}}
msys.registerModule = function(name, module) register(name, module) end
for _, name in ipairs(modules) do
  local path = {}
  for part in string.gmatch(name, "[^.]+") do path[#path + 1] = part end
  package.preload[name] = function()
    local value = _G
    for _, part in ipairs(path) do value = value[part] end
    return value
  end
end

function __inbound_audit_session(ip, node)
  local store = {[msys.core.VCTX_CONN] = {ipaddr = ip, node = node}, [msys.core.VCTX_MESS] = {}}
  local vctx = {}
  function vctx:set_code(code, message) self.code, self.message = code, message end
  function vctx:get(kind, key) return store[kind][key] end
  function vctx:set(kind, key, value) store[kind][key] = value end
  local accept = {remote_addr = ip, node = node}
  function accept:inbound_session_count(cidr, service)
    return msys.audit.inbound_session_count(cidr, service)
  end
  local msg = {}
  function msg:context_get(kind, key) return store[kind][key] end
  function msg:context_set(kind, key, value) store[kind][key] = value end
  return msg, accept, vctx
end
"""


class LuaPolicyError(InboundAuditError):
    """The script failed to load or raised a Lua error (including an audit error reply)."""


class PolicyTimeout(LuaPolicyError):
    """The policy did not decide within its overall timeout."""


class _Deadline:
    """The time left of a policy run; raises ``PolicyTimeout`` once it is spent."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.end = time.monotonic() + timeout_s

    def spent(self) -> bool:
        return time.monotonic() >= self.end

    def left(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise PolicyTimeout(f"the policy did not finish within {self.timeout_s:g} s")
        return left


@dataclass(frozen=True)
class PolicyOutcome:
    """What the hook decided: its return value and any code it set with ``vctx:set_code``."""

    module: str
    value: Any
    code: int | None = None
    message: str | None = None

    @property
    def name(self) -> str | None:
        """``VALIDATE_DONE`` etc. when the value is one of the constants."""
        return VALIDATE_NAMES.get(self.value) if isinstance(self.value, int) else None

    def __str__(self) -> str:
        shown = self.name or repr(self.value)
        return " ".join(str(part) for part in (shown, self.code, self.message) if part is not None)


def _plain(value: Any) -> Any:
    """Lua numbers arrive as floats when computed (``x / 2``); integral ones are sent as integers."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _options(value: Any) -> Any:
    """A Lua table becomes the dict form; anything else is the cidr, as Momentum reads it."""
    if lupa.lua_type(value) == "table":
        return {str(key): _plain(item) for key, item in value.items()}
    return value


def _lua_message(exc: lupa.LuaError) -> str:
    return str(exc).split("\nstack traceback:", 1)[0]


def run_policy(
    script_path: str | Path,
    hook: str,
    ip: str,
    node: str,
    client: SyncAuditClient,
    *,
    argument: str = "",
    timeout_s: float | None = None,
) -> PolicyOutcome:
    """Load the script, then call ``hook`` for one session from ``ip`` on ``node``.

    ``timeout_s`` bounds the whole run: each query waits at most for the time left, and a script
    still running Lua code when it is spent is stopped (``PolicyTimeout``).
    """
    lua = lupa.LuaRuntime(unpack_returned_tuples=True, register_eval=False)
    modules: list[tuple[str, Any]] = []
    deadline = None if timeout_s is None else _Deadline(timeout_s)

    def call(op: str, monitor: Any, options: Any, service: Any = None) -> tuple[bool, Any]:
        context: dict[str, Any] = {"ip": ip, "node": node}
        if deadline is not None:
            context["timeout_s"] = deadline.left()
        try:
            if op == "inbound_session_count":
                value = client.inbound_session_count(options, service or "SMTP", **context)
            else:
                value = client.query(op, monitor, _options(options), **context)
        except AuditError as exc:
            return False, exc.message
        return True, value

    def series_call(op: str, name: Any, *args: Any) -> tuple[bool, Any]:
        timeout = {} if deadline is None else {"timeout_s": deadline.left()}
        first = _options(args[0]) if args else None
        try:
            if op == "series_define":
                kind, interval, num_windows, options = (*args, None, None, None, None)[:4]
                value: Any = client.series_define(
                    name, kind, _plain(interval), _plain(num_windows), _options(options), **timeout
                )
            elif op == "series_add":
                client.series_add(name, first, ip=ip, node=node, **timeout)
                value = None
            elif op == "series_count":
                value = client.series_count(name, first, ip=ip, node=node, **timeout)
            elif first is None:
                return False, f"msys.audit_series.remove_item({name!r}) needs a key"
            else:
                client.series_remove(name, str(first), node=node)
                value = None
        except AuditError as exc:
            return False, exc.message
        return True, value

    path = Path(script_path)
    try:
        lua.execute(
            PRELUDE,
            call,
            series_call,
            lua.table_from(CONSTANTS),
            lambda name, module: modules.append((name, module)),
            lua.table_from(MSYS_MODULES),
            *(() if deadline is None else (deadline.left, deadline.spent)),
        )
        chunk = lua.globals().load(path.read_text(), f"@{path.name}")
        if isinstance(chunk, tuple):
            raise LuaPolicyError(str(chunk[1]))
        returned = chunk()
        if not modules and lupa.lua_type(returned) == "table":
            modules.append((path.stem, returned))
        msg, accept, vctx = lua.globals()["__inbound_audit_session"](ip, node)
        objects = {"msg": msg, "accept": accept, "vctx": vctx, "str": argument}
        outcome: PolicyOutcome | None = None
        for name, module in modules:
            function = module[hook]
            if function is None:
                continue
            result = function(module, *(objects[arg] for arg in HOOK_ARGS.get(hook, DEFAULT_HOOK_ARGS)))
            value = result[0] if isinstance(result, tuple) else result
            outcome = PolicyOutcome(name, _plain(value), _plain(vctx.code), vctx.message)
            if outcome.value != CONSTANTS["VALIDATE_CONT"]:
                break
    except lupa.LuaError as exc:
        raise LuaPolicyError(_lua_message(exc)) from None
    except OSError as exc:
        raise LuaPolicyError(f"cannot read {path}: {exc.strerror}") from None
    if outcome is None:
        raise LuaPolicyError(f"{path}: no registered module defines {hook}")
    return outcome
