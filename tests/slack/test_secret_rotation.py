"""Signing-secret rotation works within seconds (a verification failure re-reads the secret once),
and the re-read is rate-limited per container: floods of forged, stale or malformed requests never
become Secrets Manager calls beyond one a minute."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest
from slack_fixtures import APPROVER, escalate, local_fixture, message, state  # noqa: F401

from vpce_approver.slack.client import SlackConfigError
from vpce_approver.slack.secret_refresh import REREAD_INTERVAL, RateLimitedReread
from vpce_tools.emulator.world import Consumer, EndpointService, Provider
from vpce_tools.fake_slack import sign
from vpce_tools.slack_local import LocalSlack


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


class Reads:
    """GetSecretValue calls of the interactivity services' Secrets Manager client."""

    def __init__(self, local: LocalSlack) -> None:
        self.count = 0
        client = local.services.secrets.provider.client
        client.meta.events.register("before-call.secrets-manager.GetSecretValue", self._seen)

    def _seen(self, **kwargs: object) -> None:
        self.count += 1


@pytest.fixture
def clock(local: LocalSlack) -> Clock:
    fake = Clock()
    local.services.signing_reread.clock = fake
    return fake


def rotate(local: LocalSlack, new: str) -> None:
    """Regenerate the secret in Slack and put the new value in Secrets Manager."""
    local.fake.signing_secret = new
    name = local.deployment.settings.slack_signing_secret_secret
    local.deployment.provider.client("secretsmanager").put_secret_value(
        SecretId=name, SecretString=new
    )


def forged(body: bytes = b"payload=%7B%7D", *, skew: int = 0) -> dict[str, str]:
    ts = int(time.time()) + skew
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": str(ts),
        "X-Slack-Signature": sign("an-attackers-guess", body, ts),
    }


def test_a_click_signed_with_a_just_rotated_secret_is_accepted_after_one_reread(
    local: LocalSlack,
    clock: Clock,
    service: EndpointService,
    consumer: Consumer,
    provider: Provider,
) -> None:
    vpce = escalate(local, service, consumer)
    assert local.interact(forged(), b"payload=%7B%7D")[0] == 401  # the old secret is cached now
    assert local.services.signing_reread.rereads == 1  # (that forged request spent the minute)
    clock.now += REREAD_INTERVAL + 1
    reads = Reads(local)
    rotate(local, "the-new-signing-secret")
    msg = message(local, vpce)
    status, _ = local.fake.click(msg.channel, msg.ts, "approve", user=APPROVER)
    assert status == 200
    assert state(provider, vpce) == "available"
    assert reads.count == 1  # exactly one re-read, within the request
    # The new value is the cached one now: the next click costs no read at all.
    other = escalate(local, service, provider.consumer("222222222222"))
    msg = message(local, other)
    assert local.fake.click(msg.channel, msg.ts, "reject", user=APPROVER)[0] == 200
    assert reads.count == 1


def test_a_flood_of_forged_requests_rereads_at_most_once_a_minute(
    local: LocalSlack, clock: Clock
) -> None:
    reads = Reads(local)
    statuses = {local.interact(forged(), b"payload=%7B%7D")[0] for _ in range(100)}
    assert statuses == {401}
    first = reads.count  # the first read of the secret (cold cache) + one forced re-read
    assert local.services.signing_reread.rereads == 1
    assert first <= 2
    clock.now += REREAD_INTERVAL - 1
    for _ in range(50):
        local.interact(forged(), b"payload=%7B%7D")
    assert reads.count == first  # still inside the minute: no call at all
    clock.now += 2
    for _ in range(50):
        local.interact(forged(), b"payload=%7B%7D")
    assert reads.count == first + 1  # a new minute: one re-read for the next 50
    assert local.services.signing_reread.rereads == 2


def test_stale_or_malformed_requests_never_trigger_a_reread(
    local: LocalSlack, clock: Clock
) -> None:
    for _ in range(20):
        assert local.interact(forged(skew=-600), b"payload=%7B%7D")[0] == 401  # stale
        assert local.interact(forged(skew=+600), b"payload=%7B%7D")[0] == 401  # future
        malformed = {**forged(), "X-Slack-Signature": "v0=" + "é" * 64}
        assert local.interact(malformed, b"payload=%7B%7D")[0] == 401
        assert local.interact({}, b"")[0] == 401  # unsigned
    assert local.services.signing_reread.rereads == 0


def test_a_reread_that_fails_is_a_401_not_an_error(local: LocalSlack, clock: Clock) -> None:
    assert local.interact(forged(), b"payload=%7B%7D")[0] == 401  # secret cached
    clock.now += REREAD_INTERVAL + 1
    name = local.deployment.settings.slack_signing_secret_secret
    local.deployment.provider.client("secretsmanager").delete_secret(
        SecretId=name, ForceDeleteWithoutRecovery=True
    )
    assert local.interact(forged(), b"payload=%7B%7D")[0] == 401
    assert local.services.signing_reread.rereads == 2


def test_the_limiter_counts_failed_reads_and_waits_a_full_interval() -> None:
    clock = Clock()
    calls: list[bool] = []

    def read(force: bool) -> str:
        calls.append(force)
        raise SlackConfigError("secrets", "cannot read the signing secret")

    limiter = RateLimitedReread(read, clock=clock)
    assert limiter.reread() is None
    assert limiter.reread() is None
    assert calls == [True]  # the failure counted: no retry storm during an outage
    clock.now += REREAD_INTERVAL
    assert limiter.reread() is None
    assert calls == [True, True]
