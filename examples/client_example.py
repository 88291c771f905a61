"""Ask the fleet what a Momentum policy asks msys.audit. Run it with the worker's environment."""

import asyncio

from pipeline.clients.client import AuditClient, SyncAuditClient
from pipeline.errors import AuditError
from pipeline.settings import load_settings

settings = load_settings()


async def main() -> None:
    # The session's context: the connecting IP and this MTA's node name.
    async with AuditClient(settings, ip="192.0.2.66", node="mta-1") as audit:
        print("this IP, this node, current minute:", await audit.connections("60,1"))
        print(
            "its /24, whole fleet, last 30 min:",
            await audit.connections("300,6", {"cidr": "/24", "cluster": True, "endv": 5}),
        )
        print("rejections from 192.0.2.0/24 on mta-1:", await audit.rejections("300,6", "192.0.2.0/24"))
        print("SMTP sessions open now from this IP:", await audit.inbound_session_count("/32", "SMTP"))
        try:
            await audit.connections("120,5")
        except AuditError as exc:
            print(f"error {exc.code}: {exc.message}")


asyncio.run(main())

# Synchronous code (a script, a Lua binding) uses the blocking twin; cluster=True by default here.
with SyncAuditClient(settings, ip="2001:db8::25", cluster=True) as audit:
    print("IPv6 /64, whole fleet, current minute:", audit.connections("60,1", "/64"))
