"""An MTA reporting its traffic. Run it with the same environment as the worker."""

import asyncio

from pipeline.clients.publisher import EventPublisher
from pipeline.settings import load_settings


async def main() -> None:
    settings = load_settings()
    # Starting the publisher sends node_reset for mta-1: sessions left open by a crash are gone.
    async with EventPublisher(settings, "mta-1") as events:
        await events.session_open("192.0.2.66")  # a client connects ...
        for _ in range(120):
            await events.connection("192.0.2.66")  # ... and keeps reconnecting
        await events.reception("192.0.2.66")  # one message accepted
        await events.rejection("192.0.2.67", n=3)  # three refused from a neighbour
        await events.connection("2001:db8::25")
    # Leaving the block flushed everything: it is on the bus now.
    print(f"published {events.sent_events} events for {events.node}")


asyncio.run(main())
