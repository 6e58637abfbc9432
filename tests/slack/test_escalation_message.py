"""The escalation message: content, buttons, exactly one per connection, and Slack outages."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from slack_fixtures import (  # noqa: F401 - local_fixture provides `local`
    FAST,
    escalate,
    escalation,
    local_fixture,
    message,
    state,
)

from vpce_approver.converge import converge
from vpce_approver.model import Grant, GrantStatus
from vpce_approver.registry import item_from_grant
from vpce_approver.slack.client import ClientConfig, SecretSource, SlackApi
from vpce_approver.slack.port import SlackPort
from vpce_approver.tables import EscalationItem
from vpce_tools.emulator.world import Consumer, EndpointService, Provider
from vpce_tools.fake_slack import render_text
from vpce_tools.slack_local import LocalSlack

CONSUMER = "111111111111"


def posts(local: LocalSlack) -> int:
    """Successful chat.postMessage calls."""
    return sum(
        1 for c in local.fake.calls_to("chat.postMessage") if c.status == 200 and not c.error
    )


def test_message_shows_the_connection_and_three_buttons(
    local: LocalSlack, service: EndpointService, consumer: Consumer, provider: Provider
) -> None:
    # A suspended grant with an owner and a note: the message must show both and the reason.
    item = item_from_grant(
        _grant(service.service_id, GrantStatus.SUSPENDED, owner="team-data", note="<!channel> hi"),
        by="test",
        now=datetime.now(UTC),
    )
    item.save()
    vpce = escalate(local, service, consumer)
    msg = message(local, vpce)
    text = render_text(msg.blocks)
    for expected in (
        "payments-api",
        service.service_id,
        CONSUMER,
        vpce,
        "us-east-1",
        "Pending for",
        "suspended",
        "owner team-data",
    ):
        assert expected in text, expected
    # Registry text is escaped: no channel-wide ping can be smuggled in through a note.
    assert "<!channel>" not in str(msg.blocks)
    assert "&lt;!channel&gt;" in str(msg.blocks)
    buttons = {b["action_id"]: b for b in msg.buttons}
    assert set(buttons) == {"approve", "approve_register", "reject"}
    assert {b["value"] for b in buttons.values()} == {vpce}
    assert buttons["reject"]["style"] == "danger"
    assert "confirm" in buttons["reject"]
    assert "confirm" in buttons["approve_register"]
    record = escalation(vpce)
    assert (record.posted, record.slack_channel, record.slack_ts) == (True, msg.channel, msg.ts)
    assert state(provider, vpce) == "pendingAcceptance"


def _grant(service_id: str, status: GrantStatus, **kwargs: str) -> Grant:
    return Grant(service_id=service_id, consumer=CONSUMER, status=status, **kwargs)  # type: ignore[arg-type]


def test_one_message_per_connection_whatever_the_redeliveries(
    local: LocalSlack, service: EndpointService, consumer: Consumer
) -> None:
    vpce = escalate(local, service, consumer)
    deps = local.deps()
    item = escalation(vpce)
    for _ in range(3):  # redelivered notifications, the sweep, a second container
        deps.port.opened(item)
        converge(service.service_id, deps, trigger="sweep")
    other_port = SlackPort.from_settings(local.deployment.settings, config=FAST)
    other_port.opened(item)
    assert posts(local) == 1
    assert len(local.fake.channel_messages()) == 1


def test_a_post_in_flight_is_not_repeated(
    local: LocalSlack, service: EndpointService, consumer: Consumer
) -> None:
    local.fake.fail("server_error", method="chat.postMessage", times=10)
    vpce = escalate(local, service, consumer)
    local.fake.clear_failures()
    # Another container claimed the post a moment ago and is still posting.
    item = escalation(vpce)
    item.update(actions=[EscalationItem.slack_channel.set("C0VPCEAPPROVALS")])
    local.deps().port.opened(item)
    assert posts(local) == 0
    assert escalation(vpce).posted is False


def test_slack_500_leaves_it_unposted_and_a_later_call_posts_it_once(
    local: LocalSlack, service: EndpointService, consumer: Consumer, provider: Provider
) -> None:
    local.fake.fail("server_error", method="chat.postMessage", times=100)
    vpce = escalate(local, service, consumer)
    attempts = local.fake.calls_to("chat.postMessage")
    # Not re-posted at once: a 5xx may hide a message Slack did post. The history is searched.
    assert [c.status for c in attempts] == [500]
    assert len(local.fake.calls_to("conversations.history")) == 1
    record = escalation(vpce)
    assert (record.posted, record.slack_ts, record.slack_channel) == (False, None, None)
    assert record.post_attempts == 1
    assert "http_500" in (record.last_post_error or "")
    assert state(provider, vpce) == "pendingAcceptance"  # a Slack failure never accepts

    local.fake.clear_failures()
    local.deps().port.opened(record)  # what the sweep does: search the history, then post
    assert len(local.fake.calls_to("conversations.history")) == 2
    record = escalation(vpce)
    assert (record.posted, record.post_attempts, record.last_post_error) == (True, 2, None)
    local.deps().port.opened(record)
    assert posts(local) == 1
    assert len(local.fake.channel_messages()) == 1
    assert record.slack_ts == message(local, vpce).ts


def test_slack_429_waits_retry_after_then_posts(
    local: LocalSlack, service: EndpointService, consumer: Consumer
) -> None:
    local.fake.fail("ratelimited", method="chat.postMessage", retry_after=1)
    vpce = escalate(local, service, consumer)
    first, second = local.fake.calls_to("chat.postMessage")
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at >= 1.0  # Retry-After honoured
    assert escalation(vpce).posted is True
    assert posts(local) == 1


def test_a_retry_after_beyond_the_budget_is_not_waited_for(
    local: LocalSlack, service: EndpointService, consumer: Consumer
) -> None:
    local.fake.fail("ratelimited", method="chat.postMessage", retry_after=120)
    vpce = escalate(local, service, consumer)
    assert len(local.fake.calls_to("chat.postMessage")) == 1
    record = escalation(vpce)
    assert record.posted is False
    assert "ratelimited" in (record.last_post_error or "")


def test_a_timed_out_post_that_did_not_land_is_posted_by_the_next_call(
    local: LocalSlack, service: EndpointService, consumer: Consumer
) -> None:
    local.fake.fail("timeout", method="chat.postMessage", delay=FAST.timeout + 0.3)
    vpce = escalate(local, service, consumer)
    # A timed-out post is not blindly re-posted: the history is searched, nothing is there.
    assert [c.error for c in local.fake.calls_to("chat.postMessage")] == ["timeout"]
    assert len(local.fake.calls_to("conversations.history")) == 1
    record = escalation(vpce)
    assert (record.posted, record.slack_channel) == (False, None)
    assert "timeout" in (record.last_post_error or "")
    local.deps().port.opened(record)  # the sweep: searched again, then posted
    assert [c.error for c in local.fake.calls_to("chat.postMessage")] == ["timeout", None]
    assert escalation(vpce).posted is True
    assert posts(local) == 1


def test_invalid_auth_rereads_a_rotated_token(
    local: LocalSlack, service: EndpointService, consumer: Consumer
) -> None:
    local.deps().port.api.client()  # the old token is cached
    new_token = "xoxb-rotated-" + "a" * 12
    secrets = local.deployment.provider.client("secretsmanager")
    secrets.put_secret_value(
        SecretId=local.deployment.settings.slack_bot_token_secret, SecretString=new_token
    )
    local.fake.token = new_token
    vpce = escalate(local, service, consumer)
    assert [c.error for c in local.fake.calls_to("chat.postMessage")] == ["invalid_auth", None]
    assert escalation(vpce).posted is True


def test_a_wrong_token_leaves_it_unposted(
    local: LocalSlack, service: EndpointService, consumer: Consumer
) -> None:
    local.fake.token = "xoxb-someone-else"
    vpce = escalate(local, service, consumer)
    record = escalation(vpce)
    assert record.posted is False
    assert "invalid_auth" in (record.last_post_error or "")
    assert "xoxb" not in (record.last_post_error or "")  # no token in what is stored


def test_missing_secret_never_raises_from_the_port(
    local: LocalSlack, service: EndpointService, consumer: Consumer
) -> None:
    settings = local.deployment.settings
    broken = replace(settings, slack_bot_token_secret="does-not-exist")
    port = SlackPort(
        SlackApi.from_settings(broken, SecretSource(broken), ClientConfig(backoff=0.01)),
        "C0VPCEAPPROVALS",
    )
    vpce = consumer.create_endpoint(service.service_name)
    local.deployment.poller(local.deployment.deps(port=port)).drain()
    record = escalation(vpce)
    assert (record.state, record.posted) == ("open", False)
    assert "bot token" in (record.last_post_error or "")
