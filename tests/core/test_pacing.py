"""The notification path's pacer: a token bucket per container (pure: a fake clock, no sleeping)."""

from __future__ import annotations

import pytest

from vpce_approver.pacing import BURST, RATE, Pacer
from vpce_tools.emulator.throttle import FakeClock


def pacer(rate: float = 0.5, burst: float = 1.0) -> tuple[Pacer, FakeClock, list[float]]:
    clock = FakeClock()
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(seconds)

    return Pacer(rate, burst, clock=clock, sleep=sleep), clock, slept


def test_a_quiet_container_converges_at_once() -> None:
    p, _, slept = pacer()
    assert p.delay() == 0
    assert p.wait() == 0
    assert slept == []


def test_after_a_call_the_next_waits_one_interval_less_the_time_passed() -> None:
    p, clock, slept = pacer(rate=0.5)
    p.spend(1)
    assert p.delay() == pytest.approx(2.0)
    clock.advance(0.5)
    assert p.delay() == pytest.approx(1.5)
    assert p.wait() == pytest.approx(1.5)
    assert slept == [pytest.approx(1.5)]
    assert p.delay() == 0  # the wait bought the token


def test_tokens_never_exceed_the_burst_however_long_the_pause() -> None:
    p, clock, _ = pacer(rate=0.5, burst=2.0)
    clock.advance(3600)
    p.spend(2)
    assert p.delay() == pytest.approx(2.0)


def test_converges_without_a_mutating_call_spend_nothing() -> None:
    p, _, _ = pacer()
    p.spend(0)
    assert p.delay() == 0


def test_an_accept_and_a_reject_cost_two_tokens() -> None:
    p, _, _ = pacer(rate=0.5)
    p.spend(2)  # below zero: the next converge waits for two refills
    assert p.delay() == pytest.approx(4.0)


def test_waited_adds_up() -> None:
    p, _, _ = pacer(rate=1.0)
    for _ in range(3):
        p.wait()
        p.spend(1)
    assert p.waited == pytest.approx(2.0)


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0.5)])
def test_invalid_settings_are_refused(rate: float, burst: float) -> None:
    with pytest.raises(ValueError, match="rate must be"):
        Pacer(rate, burst)


def test_defaults_stay_within_the_throttles_sustained_rate_per_container() -> None:
    assert 0 < RATE <= 1.0
    assert BURST >= 1
