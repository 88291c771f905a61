"""One log line per Kafka condition instead of aiokafka's stream of errors.

While a broker is down aiokafka logs every failed connection, metadata refresh and produce or
fetch attempt: about thirty lines a second per client. ``install_log_gate`` drops aiokafka's
records about an unreachable broker and shows any other aiokafka record at most once a minute per
message; ``OutageLog`` is what a publisher or client says instead: one WARNING when Kafka stops
answering and one when it answers again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError, RequestTimedOutError

__all__ = ["KafkaLogGate", "OutageLog", "install_log_gate"]

#: Exceptions whose presence in a record's arguments marks it as "the broker is unreachable".
_UNREACHABLE = (OSError, KafkaConnectionError, NodeNotReadyError, RequestTimedOutError, KafkaTimeoutError)


class KafkaLogGate(logging.Filter):
    """Drops aiokafka's unreachable-broker records; lets each other message through once per ``quiet_s``."""

    def __init__(self, quiet_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.quiet_s = quiet_s
        self.clock = clock
        self._shown: dict[tuple[str, object], float] = {}
        self._lock = threading.Lock()  # aiokafka may log from several event-loop threads

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        if str(record.msg).startswith("Unable") or any(isinstance(arg, _UNREACHABLE) for arg in args):
            return False
        key = (record.name, record.msg)
        now = self.clock()
        with self._lock:
            shown = self._shown.get(key)
            if shown is not None and now - shown < self.quiet_s:
                return False
            self._shown[key] = now
        return True


_GATE = KafkaLogGate()


def install_log_gate() -> None:
    """Put the gate on every aiokafka logger (a filter is not inherited by child loggers); idempotent."""
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if (name == "aiokafka" or name.startswith("aiokafka.")) and isinstance(logger, logging.Logger):
            if _GATE not in logger.filters:
                logger.addFilter(_GATE)


class OutageLog:
    """Says once that Kafka went away and once that it is back, however many failures lie between."""

    def __init__(self, log: logging.Logger, who: str, bootstrap: str) -> None:
        self.log = log
        self.who = who
        self.bootstrap = bootstrap
        self.since: float | None = None

    @property
    def down(self) -> bool:
        return self.since is not None

    def went_down(self, reason: object) -> None:
        if self.since is None:
            self.since = time.monotonic()
            self.log.warning("%s: Kafka is not reachable at %s (%s); retrying", self.who, self.bootstrap, reason)

    def came_back(self) -> None:
        if self.since is not None:
            self.log.warning(
                "%s: Kafka at %s is reachable again after %.0f s",
                self.who,
                self.bootstrap,
                time.monotonic() - self.since,
            )
            self.since = None
