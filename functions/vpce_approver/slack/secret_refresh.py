"""Signing-secret rotation within seconds, without turning floods into Secrets Manager calls.

The signing secret is cached for SECRET_MAX_AGE (5 minutes). When Slack's secret is regenerated
and the new value put in Secrets Manager, the first click signed with it fails verification
against the cached value: that failure triggers one forced re-read, and the request is verified
again with the fresh value. Re-reads are rate-limited per container (REREAD_INTERVAL): a flood of
forged but well-formed requests costs at most one GetSecretValue a minute per container, and
malformed or stale requests never get that far (inbound.screen, the timestamp window)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from .client import SlackConfigError

log = logging.getLogger("vpce_approver.slack")

REREAD_INTERVAL = 60.0  # seconds


class RateLimitedReread:
    """`reread()` -> the secret read again (forced), or None when a re-read happened less than
    `interval` seconds ago in this container or the read failed."""

    def __init__(
        self,
        read: Callable[[bool], str],
        *,
        interval: float = REREAD_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self.interval = interval
        self.clock = clock
        self._last: float | None = None
        self._lock = threading.Lock()
        self.rereads = 0  # forced reads done (for tests and logs)

    def reread(self) -> str | None:
        with self._lock:
            now = self.clock()
            if self._last is not None and now - self._last < self.interval:
                return None
            self._last = now  # a failed read counts too: no retry storm on an outage
            self.rereads += 1
        try:
            return self._read(True)
        except SlackConfigError as exc:
            log.error("re-reading the signing secret failed: %s", exc)
            return None
