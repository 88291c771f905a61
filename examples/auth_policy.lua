-- A Momentum-style AUTH policy over a fleet-wide named series: refuse AUTH from a /24 whose
-- failed AUTH attempts, across every MTA, exceed 20 in the last 30 minutes.
-- Run it with:
--   inbound-audit lua examples/auth_policy.lua --hook validate_auth --ip 192.0.2.66 --node mta-1
--   inbound-audit lua examples/auth_policy.lua --hook auth_failed --ip 192.0.2.66 --node mta-1
require("msys.core")
require("msys.audit_series")

-- Idempotent: every MTA defines it when it loads the policy; the fleet keeps one definition.
-- Six 5-minute windows: window 0 is the current one, 0..5 the last half hour.
msys.audit_series.define("auth_failures", "cidr", 300, 6)

local mod = {}

-- Before AUTH is offered: how many failures came from this client's /24, fleet-wide?
function mod:validate_auth(msg, accept, vctx)
  local failures = msys.audit_series.count("auth_failures", {key = "/24", cluster = true, endv = 5})
  if failures > 20 then
    vctx:set_code(454, "too many failed AUTH attempts from your network")
    return msys.core.VALIDATE_DONE
  end
  return msys.core.VALIDATE_CONT
end

-- After a failed AUTH: count it for the connecting IP (the default key of a cidr series).
function mod:auth_failed(msg, accept, vctx)
  msys.audit_series.add("auth_failures")
  return msys.core.VALIDATE_CONT
end

msys.registerModule("auth_limits", mod)
