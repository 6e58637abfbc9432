"""Pacing of the notification path's converges, so that a stream of Connects coalesces into few
Accept calls without a batching window.

AcceptVpcEndpointConnections / RejectVpcEndpointConnections are throttled per account and region
(10 burst, then 1 per second). A converge takes everything pending on the service, so what keeps
calls few is how often one runs: a Pacer is a token bucket per container that lets a converge run
at once while it has a token, and otherwise waits until it has one; the converge that then runs
takes all that arrived meanwhile. A lone Connect never waits; a burst or a steady stream costs
about one call per 1/RATE seconds per container, which is what the throttle refills anyway.

Only converges that made an Accept or Reject call spend tokens: one that found nothing pending
(the connection was already decided by a concurrent invocation) or only escalations is free.

RATE x the event source's MaximumConcurrency (template.yaml) stays within the throttle's
1 per second (tests/template/test_notification_event_source.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

RATE = 0.5
"""Tokens per second per container: the throttle's 1 per second shared by 2 concurrent ones."""
BURST = 1.0
"""Tokens a quiet container starts with: the first Connect after a pause is decided at once."""


class Pacer:
    """Token bucket: `wait()` before a converge, `spend(calls)` after it."""

    def __init__(
        self,
        rate: float = RATE,
        burst: float = BURST,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate, self.burst = rate, burst
        self._clock, self._sleep = clock, sleep
        self._tokens = burst
        self._updated = clock()
        self._lock = threading.Lock()
        self.waited = 0.0  # seconds spent waiting, in all

    def _refill(self) -> float:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        return self._tokens

    def delay(self) -> float:
        """Seconds until a converge may run (0: now)."""
        with self._lock:
            return max(0.0, (1.0 - self._refill()) / self.rate)

    def wait(self) -> float:
        """Block until a token is there; return the seconds waited."""
        pause = self.delay()
        if pause > 0:
            self._sleep(pause)
            self.waited += pause
        return pause

    def spend(self, calls: int) -> None:
        """Account for the Accept/Reject calls a converge made (the bucket may go below zero:
        the next converge then waits longer)."""
        if calls <= 0:
            return
        with self._lock:
            self._refill()
            self._tokens -= calls
