"""Exactly one message per escalation when Slack posted but we never learnt the ts: a process that
died between chat.postMessage and storing the ts, a post whose response was lost. The message's
metadata names the endpoint; the channel history is searched before posting again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from slack_fixtures import (  # noqa: F401 - local_fixture provides `local`
    APPROVER,
    FAST,
    escalation,
    local_fixture,
    message,
    state,
)

from vpce_approver.escalations import RecordOnly
from vpce_approver.slack.client import SecretSource, SlackApi
from vpce_approver.slack.messages import escalation_metadata
from vpce_approver.slack.port import LOOKUP_GIVE_UP, LOOKUP_PAGE_SIZE, POST_LEASE, SlackPort
from vpce_tools.emulator.world import Consumer, EndpointService, Provider
from vpce_tools.slack_local import LocalSlack


class Crash(BaseException):
    """The process dies (a Lambda timeout or OOM): nothing after this point runs."""


class CrashAfterPost(SlackPort):
    def _store(self, vpc_endpoint_id: str, channel: str, ts: str) -> None:  # type: ignore[override]
        raise Crash


def port(local: LocalSlack, *, later: timedelta = timedelta(0)) -> SlackPort:
    """A fresh container's port, its clock `later` from now."""
    settings = local.deployment.settings
    assert settings.slack_channel
    api = SlackApi.from_settings(settings, SecretSource(settings), FAST)
    return SlackPort(api, settings.slack_channel, clock=lambda: datetime.now(UTC) + later)


def unposted_escalation(local: LocalSlack, service: EndpointService, consumer: Consumer) -> str:
    """An open escalation nobody has tried to post yet."""
    vpce = consumer.create_endpoint(service.service_name)
    local.deployment.poller(local.deployment.deps(port=RecordOnly())).drain()
    record = escalation(vpce)
    assert (record.state, record.post_attempts, record.slack_channel) == ("open", 0, None)
    return vpce


def messages_for(local: LocalSlack, vpce: str) -> int:
    return sum(1 for m in local.fake.channel_messages() if vpce in m.text)


def test_a_crash_between_post_and_store_is_adopted_not_posted_again(
    local: LocalSlack, service: EndpointService, consumer: Consumer, provider: Provider
) -> None:
    vpce = unposted_escalation(local, service, consumer)
    crashing = CrashAfterPost.from_settings(local.deployment.settings, config=FAST)
    with pytest.raises(Crash):
        crashing.opened(escalation(vpce))
    [orphan] = local.fake.channel_messages()
    assert orphan.metadata == escalation_metadata(vpce)
    record = escalation(vpce)
    assert (record.slack_ts, record.posted, record.post_attempts) == (None, False, 1)

    port(local).opened(record)  # a redelivery inside the lease: the claim holds
    port(local, later=POST_LEASE + timedelta(minutes=1)).opened(record)  # the sweep, later
    assert messages_for(local, vpce) == 1
    assert len(local.fake.calls_to("conversations.history")) == 1
    record = escalation(vpce)
    assert (record.posted, record.slack_channel, record.slack_ts) == (
        True,
        orphan.channel,
        orphan.ts,
    )

    # The adopted message is the escalation's message: its buttons work.
    status, _ = local.fake.click(orphan.channel, orphan.ts, "approve", user=APPROVER)
    assert status == 200
    assert state(provider, vpce) == "available"
    assert escalation(vpce).state == "settled"


def test_a_post_whose_response_was_lost_is_adopted_at_once(
    local: LocalSlack, service: EndpointService, consumer: Consumer
) -> None:
    vpce = unposted_escalation(local, service, consumer)
    local.fake.fail("response_lost", method="chat.postMessage", delay=FAST.timeout + 0.3)
    port(local).opened(escalation(vpce))
    assert [c.error for c in local.fake.calls_to("chat.postMessage")] == ["response_lost"]
    assert messages_for(local, vpce) == 1
    record = escalation(vpce)
    assert (record.posted, record.slack_ts) == (True, message(local, vpce).ts)
    port(local, later=timedelta(minutes=10)).opened(record)
    assert messages_for(local, vpce) == 1


def test_a_lost_response_while_history_is_down_is_adopted_by_the_next_call(
    local: LocalSlack, service: EndpointService, consumer: Consumer
) -> None:
    vpce = unposted_escalation(local, service, consumer)
    local.fake.fail("response_lost", method="chat.postMessage", delay=FAST.timeout + 0.3)
    local.fake.fail("server_error", method="conversations.history", times=100)
    port(local).opened(escalation(vpce))  # never raises
    record = escalation(vpce)
    assert (record.posted, record.slack_ts, record.slack_channel) == (False, None, None)
    assert "timeout" in (record.last_post_error or "")

    port(local).opened(record)  # history still down: deferred, not posted blindly
    record = escalation(vpce)
    assert record.posted is False
    assert "conversations.history" in (record.last_post_error or "")

    local.fake.clear_failures()
    port(local).opened(record)
    assert messages_for(local, vpce) == 1
    assert escalation(vpce).slack_ts == message(local, vpce).ts


def test_a_post_that_failed_for_real_is_posted_once_later(
    local: LocalSlack, service: EndpointService, consumer: Consumer
) -> None:
    vpce = unposted_escalation(local, service, consumer)
    local.fake.fail("server_error", method="chat.postMessage")
    port(local).opened(escalation(vpce))
    assert messages_for(local, vpce) == 0
    port(local).opened(escalation(vpce))
    port(local).opened(escalation(vpce))
    assert messages_for(local, vpce) == 1
    record = escalation(vpce)
    assert (record.posted, record.post_attempts) == (True, 2)


def test_a_missing_history_scope_posts_anyway(
    local: LocalSlack, service: EndpointService, consumer: Consumer
) -> None:
    vpce = unposted_escalation(local, service, consumer)
    local.fake.fail("server_error", method="chat.postMessage")
    port(local).opened(escalation(vpce))
    local.fake.fail("missing_scope", method="conversations.history", times=100)
    port(local).opened(escalation(vpce))  # waiting would not grant the scope: post
    assert messages_for(local, vpce) == 1
    assert escalation(vpce).posted is True


def test_a_history_that_keeps_failing_stops_deferring_the_post(
    local: LocalSlack, service: EndpointService, consumer: Consumer
) -> None:
    vpce = unposted_escalation(local, service, consumer)
    local.fake.fail("server_error", method="chat.postMessage")
    local.fake.fail("ratelimited", method="conversations.history", times=1000, retry_after=60)
    port(local).opened(escalation(vpce))
    for attempt in range(2, LOOKUP_GIVE_UP):
        port(local).opened(escalation(vpce))
        record = escalation(vpce)
        assert (record.posted, record.post_attempts) == (False, attempt)
        assert "ratelimited" in (record.last_post_error or "")
    port(local).opened(escalation(vpce))
    record = escalation(vpce)
    assert (record.posted, record.post_attempts) == (True, LOOKUP_GIVE_UP)
    assert messages_for(local, vpce) == 1


def test_only_our_own_message_for_this_endpoint_is_adopted(
    local: LocalSlack, service: EndpointService, consumer: Consumer
) -> None:
    vpce = unposted_escalation(local, service, consumer)
    channel = local.deployment.settings.slack_channel
    assert channel
    other = consumer.create_endpoint(service.service_name)
    # Another app's message with our metadata, and ours for another endpoint: neither counts.
    local.fake.add_message(
        channel, f"forged {vpce}", metadata=escalation_metadata(vpce), bot_id="B0OTHERAPP"
    )
    local.fake.add_message(
        channel, f"other {other}", metadata=escalation_metadata(other), user="U0BOT", bot_id="B0BOT"
    )
    local.fake.fail("server_error", method="chat.postMessage")
    port(local).opened(escalation(vpce))
    port(local).opened(escalation(vpce))
    ours = [m for m in local.fake.channel_messages() if m.bot_id == "B0BOT" and vpce in m.text]
    assert len(ours) == 1
    assert escalation(vpce).slack_ts == ours[0].ts


def test_the_history_is_paged_to_find_an_older_message(
    local: LocalSlack, service: EndpointService, consumer: Consumer
) -> None:
    vpce = unposted_escalation(local, service, consumer)
    with pytest.raises(Crash):
        CrashAfterPost.from_settings(local.deployment.settings, config=FAST).opened(
            escalation(vpce)
        )
    [orphan] = local.fake.channel_messages()
    for i in range(LOOKUP_PAGE_SIZE * 2):  # a busy channel since
        local.fake.add_message(orphan.channel, f"chatter {i}")
    port(local, later=POST_LEASE * 2).opened(escalation(vpce))
    assert len(local.fake.calls_to("conversations.history")) == 3
    assert messages_for(local, vpce) == 1
    assert escalation(vpce).slack_ts == orphan.ts
