-- A Momentum-style inbound policy: refuse MAIL FROM when a client or its network is too busy.
-- Run it against the fleet with:
--   inbound-audit lua examples/policy.lua --hook validate_mailfrom --ip 192.0.2.66 --node mta-1
require("msys.core")
require("msys.audit")
require("msys.extended.message")

local mod = {}

function mod:validate_mailfrom(str, accept, vctx)
  -- Concurrency: sessions open right now from this IP (the default policy's /32 limit).
  if accept:inbound_session_count("/32", "SMTP") > 10 then
    vctx:set_code(421, "connection limit exceeded")
    return msys.core.VALIDATE_DONE
  end

  -- Rates over the last minute: this IP on this node, and its /24 across the whole fleet.
  local from_ip = msys.audit.connections("60,1")
  local from_net = msys.audit.connections("60,1", {cidr = "/24", cluster = true})
  if from_ip > 100 or from_net > 1000 then
    vctx:set_code(421, "connection rate limit exceeded")
    return msys.core.VALIDATE_DONE
  end

  -- A network whose mail we mostly refuse (a non-table option is the cidr).
  local refused = msys.audit.rejections("60,1", "/24")
  local accepted = msys.audit.receptions("60,1", {cidr = "/24", startv = 0, endv = 0})
  if refused > 50 and refused > accepted then
    vctx:set_code(421, "too many rejected messages from your network")
    return msys.core.VALIDATE_DONE
  end

  return msys.core.VALIDATE_CONT
end

msys.registerModule("inbound_limits", mod)
