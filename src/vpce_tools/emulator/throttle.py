"""Optional token-bucket throttle for AcceptVpcEndpointConnections / RejectVpcEndpointConnections.

Off by default. When on, each (account, region, action) has its own bucket of ``burst`` tokens
refilled at ``rate`` tokens per second (AWS: 10 burst, 1 per second for both actions).

Which calls spend a token: every ``AcceptVpcEndpointConnections`` and
``RejectVpcEndpointConnections`` request that reaches the emulator, *before* anything else is
looked at -- so ``DryRun`` requests, requests that fail as a whole (unknown service) and requests
whose items all land in ``Unsuccessful`` spend one too (AWS: "each request that you make removes
one token from the API's bucket"). A request that finds the bucket empty spends nothing and fails
with ``RequestLimitExceeded`` (HTTP 503, "Request limit exceeded."). No other call, emulated or
moto's, ever spends a token or is throttled.

The clock is injectable so tests never sleep::

    clock = FakeClock()
    with throttled(clock=clock):
        ...            # 10 accepts pass, the 11th fails
        clock.advance(1.0)
        ...            # one more passes
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from .models import LOCK, ec2_backend, state_of

THROTTLED_ACTIONS = ("AcceptVpcEndpointConnections", "RejectVpcEndpointConnections")
ENV_VAR = "VPCE_EMULATOR_THROTTLE"

Clock = Callable[[], float]


@dataclass
class _Config:
    enabled: bool = False
    burst: int = 10
    rate: float = 1.0
    clock: Clock = time.monotonic
    generation: int = 0
    """Bumped by configure(): buckets from an older configuration are discarded."""


_config = _Config()


@dataclass
class Bucket:
    tokens: float
    updated: float
    generation: int


class FakeClock:
    """A manual clock for tests: ``clock()`` returns the time, ``advance(s)`` moves it on."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def configure(
    enabled: bool,
    burst: int = 10,
    rate: float = 1.0,
    clock: Clock = time.monotonic,
) -> None:
    """Turn the throttle on or off; every bucket starts full again."""
    if burst < 1 or rate <= 0:
        raise ValueError("burst must be >= 1 and rate > 0")
    with LOCK:
        _config.enabled = enabled
        _config.burst = burst
        _config.rate = rate
        _config.clock = clock
        _config.generation += 1


def is_enabled() -> bool:
    return _config.enabled


@contextmanager
def throttled(burst: int = 10, rate: float = 1.0, clock: Clock = time.monotonic) -> Iterator[None]:
    """Enable the throttle inside the block, restore the previous settings afterwards."""
    previous = (_config.enabled, _config.burst, _config.rate, _config.clock)
    configure(True, burst=burst, rate=rate, clock=clock)
    try:
        yield
    finally:
        configure(previous[0], burst=previous[1], rate=previous[2], clock=previous[3])


def configure_from_env() -> None:
    """``VPCE_EMULATOR_THROTTLE=1`` (or true/yes/on) turns the throttle on."""
    value = os.environ.get(ENV_VAR, "").strip().lower()
    if value in ("1", "true", "yes", "on"):
        configure(True)


def take(account_id: str, region: str, action: str) -> bool:
    """Take one token for ``action`` in (account, region). False when throttled."""
    if not _config.enabled or action not in THROTTLED_ACTIONS:
        return True
    with LOCK:
        buckets = state_of(ec2_backend(account_id, region)).buckets
        now = _config.clock()
        bucket = buckets.get(action)
        if not isinstance(bucket, Bucket) or bucket.generation != _config.generation:
            bucket = Bucket(float(_config.burst), now, _config.generation)
            buckets[action] = bucket
        elapsed = max(0.0, now - bucket.updated)
        bucket.tokens = min(float(_config.burst), bucket.tokens + elapsed * _config.rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return True
        return False
