"""Slack faults and Slack security, end to end on the emulator + the fake Slack.

Faults (429 with Retry-After, 5xx, timeouts, a revoked token) while an escalation is posted: the
connection stays pending, the escalation stays open and unposted, the sweep posts it later, and
exactly one message exists whatever is redelivered. Security: forged signature, stale and future
timestamps, missing headers, replayed body, wrong team, non-approver, tampered button value are
refused and nothing is done (401s are counted and logged; clicks that pass the signature are
audited as slack-refused)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from reliability.conftest import Figures, tally
from reliability.scenario import UNKNOWN, processor
from vpce_approver.audit import Audit
from vpce_approver.slack.client import ClientConfig
from vpce_approver.sweep import sweep
from vpce_approver.tables import AuditItem, EscalationItem
from vpce_tools import slack_local
from vpce_tools.emulator.world import EndpointService, Provider
from vpce_tools.fake_slack import sign
from vpce_tools.faults import MemoryQueue, check_deployment
from vpce_tools.slack_local import LocalSlack
from vpce_tools.stack import LocalDeployment

FAST = ClientConfig(timeout=0.3, max_retries=1, backoff=0.01, max_retry_after=2)
APPROVER = slack_local.LOCAL_APPROVER
VISITOR = slack_local.LOCAL_VISITOR


@pytest.fixture
def local(deployment: LocalDeployment) -> Iterator[LocalSlack]:
    slack = slack_local.start(deployment, approvers=(APPROVER,), config=FAST)
    try:
        yield slack
    finally:
        slack.stop()


def escalate_some(
    local: LocalSlack, provider: Provider, service: EndpointService, n: int
) -> tuple[list[str], MemoryQueue]:
    queue = MemoryQueue(local.deployment.topic_arn)
    with queue.listening():
        ids = provider.consumer(UNKNOWN).create_endpoints(service.service_name, n)
        queue.drain(processor(local.deps()), 10)
    return ids, queue


def posts(local: LocalSlack) -> int:
    return sum(
        1 for c in local.fake.calls_to("chat.postMessage") if c.status == 200 and not c.error
    )


@pytest.mark.parametrize(
    ("mode", "options"),
    [
        ("ratelimited", {"retry_after": 30}),  # longer than we may wait: give up, retry later
        ("server_error", {}),
        ("timeout", {"delay": 0.6}),
        ("invalid_auth", {}),  # a revoked token (re-read once from Secrets Manager, still bad)
    ],
)
def test_slack_down_while_posting_is_posted_later_exactly_once(
    local: LocalSlack,
    provider: Provider,
    service: EndpointService,
    figures: Figures,
    mode: str,
    options: dict[str, Any],
) -> None:
    local.fake.fail(mode, method="chat.postMessage", times=1000, **options)
    ids, queue = escalate_some(local, provider, service, 3)
    for vpce in ids:
        item = EscalationItem.get(vpce, consistent_read=True)
        assert (item.state, item.posted, item.slack_ts) == ("open", False, None)
        assert item.last_post_error
    assert local.fake.channel_messages() == []
    assert queue.dlq == []  # a Slack outage is not the notification's failure
    during = check_deployment(provider, [service.service_id])
    during.assert_sound()  # pending with an open escalation: nothing lost, nothing accepted
    attempts = len(local.fake.calls_to("chat.postMessage"))

    local.fake.clear_failures()
    sweep(local.deps())
    sweep(local.deps())  # a second sweep (and any redelivery) posts nothing more
    with queue.listening():
        queue.drain(processor(local.deps()), 10)
    assert posts(local) == len(local.fake.channel_messages()) == len(ids)
    for vpce in ids:
        item = EscalationItem.get(vpce, consistent_read=True)
        assert item.posted
        assert item.slack_ts
    verdict = check_deployment(provider, [service.service_id])
    verdict.assert_sound()
    figures.record(
        load=f"{len(ids)} escalations",
        fault=f"chat.postMessage {mode} {options or ''}".strip() + f" ({attempts} failed attempts)",
        result=f"pending + open, posted by the next sweep: {posts(local)} messages;"
        f" {tally(verdict)}",
        verdict=verdict,
        messages=posts(local),
    )


def test_posts_whose_responses_are_lost_are_adopted_not_repeated(
    local: LocalSlack, provider: Provider, service: EndpointService, figures: Figures
) -> None:
    """Slack posts, the answer never arrives (timeout): no idempotency key, so the message is
    found again by its metadata in the channel history and adopted."""
    local.fake.fail("response_lost", method="chat.postMessage", times=1000, delay=0.6)
    ids, queue = escalate_some(local, provider, service, 3)
    local.fake.clear_failures()
    sweep(local.deps())
    with queue.listening():
        queue.drain(processor(local.deps()), 10)
    messages = local.fake.channel_messages()
    assert len(messages) == len(ids)
    assert len(local.fake.calls_to("chat.postMessage")) == len(ids)  # none re-posted
    for vpce in ids:
        item = EscalationItem.get(vpce, consistent_read=True)
        assert item.posted
        assert item.slack_ts == next(m.ts for m in messages if vpce in m.text)
    verdict = check_deployment(provider, [service.service_id])
    verdict.assert_sound()
    figures.record(
        load=f"{len(ids)} escalations",
        fault="chat.postMessage posts but its response is lost (client timeout)",
        result=f"found by metadata in conversations.history and adopted: {len(messages)}"
        f" messages; {tally(verdict)}",
        verdict=verdict,
        messages=len(messages),
    )


def test_429_with_short_retry_after_is_honoured(
    local: LocalSlack, provider: Provider, service: EndpointService, figures: Figures
) -> None:
    local.fake.fail("ratelimited", method="chat.postMessage", times=1, retry_after=1)
    [vpce], _ = escalate_some(local, provider, service, 1)
    calls = local.fake.calls_to("chat.postMessage")
    assert [c.status for c in calls] == [429, 200]
    assert calls[1].at - calls[0].at >= 1.0  # waited what Retry-After said
    assert EscalationItem.get(vpce, consistent_read=True).posted
    verdict = check_deployment(provider, [service.service_id])
    verdict.assert_sound()
    figures.record(
        load="1 escalation",
        fault="chat.postMessage 429 Retry-After: 1",
        result=f"retried after {calls[1].at - calls[0].at:.1f} s, 1 message",
        verdict=verdict,
    )


# ---------------------------------------------------------------------------- security

Tamper = Callable[[LocalSlack, str, str], tuple[bytes, dict[str, str]]]


def _click(
    local: LocalSlack,
    vpce: str,
    *,
    user: str = APPROVER,
    team: str | None = None,
    value: str | None = None,
    timestamp: int | None = None,
) -> tuple[bytes, dict[str, str]]:
    message = local.fake.message_for(vpce)
    assert message is not None
    payload = local.fake.click_payload(message, "approve", user=user, team=team, value=value)
    return local.fake.signed_request(payload, timestamp=timestamp)


def forged(local: LocalSlack, vpce: str, _: str) -> tuple[bytes, dict[str, str]]:
    body, headers = _click(local, vpce)
    ts = int(headers["X-Slack-Request-Timestamp"])
    headers["X-Slack-Signature"] = sign("not-the-signing-secret", body, ts)
    return body, headers


def stale(local: LocalSlack, vpce: str, _: str) -> tuple[bytes, dict[str, str]]:
    return _click(local, vpce, timestamp=int(time.time()) - 6 * 60)


def future(local: LocalSlack, vpce: str, _: str) -> tuple[bytes, dict[str, str]]:
    return _click(local, vpce, timestamp=int(time.time()) + 6 * 60)


def no_signature(local: LocalSlack, vpce: str, _: str) -> tuple[bytes, dict[str, str]]:
    body, headers = _click(local, vpce)
    del headers["X-Slack-Signature"]
    return body, headers


def no_timestamp(local: LocalSlack, vpce: str, _: str) -> tuple[bytes, dict[str, str]]:
    body, headers = _click(local, vpce)
    del headers["X-Slack-Request-Timestamp"]
    return body, headers


def body_swapped(local: LocalSlack, vpce: str, other: str) -> tuple[bytes, dict[str, str]]:
    """A valid signature from one click on the body of another."""
    _, headers = _click(local, other)
    body, _ = _click(local, vpce)
    return body, headers


def wrong_team(local: LocalSlack, vpce: str, _: str) -> tuple[bytes, dict[str, str]]:
    return _click(local, vpce, team="T0ELSEWHERE")


def non_approver(local: LocalSlack, vpce: str, _: str) -> tuple[bytes, dict[str, str]]:
    return _click(local, vpce, user=VISITOR)


def tampered_value(local: LocalSlack, vpce: str, other: str) -> tuple[bytes, dict[str, str]]:
    """The click on one message carries the other escalation's endpoint ID."""
    return _click(local, vpce, value=other)


CASES: dict[str, tuple[Tamper, int, str | None]] = {
    "forged signature": (forged, 401, None),
    "stale timestamp (-6 min)": (stale, 401, None),
    "future timestamp (+6 min)": (future, 401, None),
    "missing signature header": (no_signature, 401, None),
    "missing timestamp header": (no_timestamp, 401, None),
    "signature of another body": (body_swapped, 401, None),
    "wrong team": (wrong_team, 200, "refused:"),
    "non-approver": (non_approver, 200, "refused:"),
    "tampered button value": (tampered_value, 200, "refused:"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_click_is_refused_audited_and_does_nothing(
    local: LocalSlack, provider: Provider, service: EndpointService, figures: Figures, case: str
) -> None:
    tamper, status, refusal = CASES[case]
    [target, other], _ = escalate_some(local, provider, service, 2)
    accepts_before = len(local.fake.calls_to("chat.update"))
    body, headers = tamper(local, target, other)
    answer, _ = local.interact(headers, body)
    assert answer == status
    for vpce in (target, other):
        assert EscalationItem.get(vpce, consistent_read=True).state == "open"
    refused = [i for i in Audit().since() if i.action == "slack-refused"]
    if refusal is None:  # never reached the worker: nothing queued, nothing audited in the table
        assert refused == []
    else:
        assert len(refused) == 1
        assert str(refused[0].outcome).startswith(refusal)
    assert not [i for i in AuditItem.scan() if i.action in {"accept", "reject"}]
    assert len(local.fake.calls_to("chat.update")) == accepts_before  # buttons unchanged
    verdict = check_deployment(provider, [service.service_id])
    verdict.assert_sound()
    assert verdict.escalated == 2
    figures.record(
        load="2 open escalations, 1 crafted interactivity request",
        fault=f"Slack: {case}",
        result=f"HTTP {answer}, "
        + (f"audited {refused[0].outcome}" if refused else "401 (metric + log), not queued")
        + f"; {tally(verdict)}",
        verdict=verdict,
    )


def test_replayed_click_acts_once(
    local: LocalSlack, provider: Provider, service: EndpointService, figures: Figures
) -> None:
    [vpce], _ = escalate_some(local, provider, service, 1)
    body, headers = _click(local, vpce)
    answers = [local.interact(headers, body)[0] for _ in range(3)]
    assert answers == [200, 200, 200]
    accepts = [i for i in AuditItem.query(vpce) if i.action == "accept"]
    assert [(i.actor, i.outcome) for i in accepts] == [(f"slack:{APPROVER}", "done")]
    verdict = check_deployment(provider, [service.service_id], approved_by_human=[vpce])
    verdict.assert_sound()
    assert verdict.accepted == 1
    figures.record(
        load="1 escalation",
        fault="Slack: the same signed approve request delivered 3 times (replay in the window)",
        result=f"accepted once by {APPROVER}; {tally(verdict)}",
        verdict=verdict,
    )
