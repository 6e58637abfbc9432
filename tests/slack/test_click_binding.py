"""The worker trusts neither the button nor the queue: a click acts only from the escalation's own
posted message (no stored message: refused, even when the click carries no channel/ts either),
and the workspace and approver are checked again from the job it receives."""

from __future__ import annotations

import json
from typing import Any

from slack_fixtures import (  # noqa: F401 - local_fixture provides `local`
    APPROVER,
    VISITOR,
    CallCounter,
    escalation,
    local_fixture,
    message,
    state,
)

from vpce_approver.handlers import slack_worker
from vpce_approver.slack.interactivity import Job
from vpce_approver.tables import AuditItem
from vpce_tools.emulator.world import Consumer, EndpointService, Provider
from vpce_tools.fake_slack import Message
from vpce_tools.slack_local import LOCAL_CHANNEL, LOCAL_TEAM, LocalSlack


def refusals(vpce: str) -> list[str]:
    return [str(i.outcome) for i in AuditItem.query(vpce) if i.action == "slack-refused"]


def unposted_escalation(local: LocalSlack, service: EndpointService, consumer: Consumer) -> str:
    """Slack is down when the escalation is posted: the record has no channel/ts."""
    local.fake.fail("server_error", method="chat.postMessage", times=100)
    vpce = consumer.create_endpoint(service.service_name)
    local.deployment.poller(local.deps()).drain()
    local.fake.clear_failures()
    record = escalation(vpce)
    assert record.state == "open"
    assert record.slack_ts is None
    assert local.fake.message_for(vpce) is None
    return vpce


def surfaceless_click(local: LocalSlack, vpce: str, user: str = APPROVER) -> dict[str, Any]:
    """A validly signed block_actions click on `vpce` carrying no channel, container or message
    (a modal, App Home, or any other surface)."""
    template = Message(LOCAL_CHANNEL, "1.000001", vpce, [])
    payload = local.fake.click_payload(template, "approve", user=user, value=vpce)
    for key in ("container", "channel", "message"):
        payload.pop(key)
    return payload


def test_a_click_without_channel_or_ts_cannot_act_on_an_unposted_escalation(
    local: LocalSlack, service: EndpointService, consumer: Consumer, provider: Provider
) -> None:
    vpce = unposted_escalation(local, service, consumer)
    accepts = CallCounter(local.deps().ec2.client, "AcceptVpcEndpointConnections")
    body, headers = local.fake.signed_request(surfaceless_click(local, vpce))
    status, _ = local.interact(headers, body)  # the real handler, then the worker
    assert status == 200  # signed and by an approver: acknowledged, then refused by the worker
    assert accepts.count == 0
    assert state(provider, vpce) == "pendingAcceptance"
    assert escalation(vpce).state == "open"
    assert refusals(vpce) == ["refused:not-posted"]


def test_a_click_naming_the_stored_channel_but_no_ts_is_refused_too(
    local: LocalSlack, service: EndpointService, consumer: Consumer, provider: Provider
) -> None:
    """A post in flight: its claim has set slack_channel, not yet slack_ts."""
    vpce = unposted_escalation(local, service, consumer)
    record = escalation(vpce)
    record.update(actions=[type(record).slack_channel.set(LOCAL_CHANNEL)])
    job = Job(
        job_id="j-in-flight",
        action="approve",
        value=vpce,
        user=APPROVER,
        team=LOCAL_TEAM,
        channel=LOCAL_CHANNEL,
        message_ts=None,
        received_at="2026-12-01T00:00:00Z",
    )
    assert local.services.worker().handle(job) == "refused:not-posted"
    assert state(provider, vpce) == "pendingAcceptance"


def test_once_the_message_exists_its_buttons_work(
    local: LocalSlack, service: EndpointService, consumer: Consumer, provider: Provider
) -> None:
    vpce = unposted_escalation(local, service, consumer)
    body, headers = local.fake.signed_request(surfaceless_click(local, vpce))
    local.interact(headers, body)
    local.services.port.opened(escalation(vpce))  # the sweep posts it
    # A surfaceless click is still no click on the message: refused as not belonging to it.
    body, headers = local.fake.signed_request(surfaceless_click(local, vpce))
    local.interact(headers, body)
    assert state(provider, vpce) == "pendingAcceptance"
    msg = message(local, vpce)
    status, _ = local.fake.click(msg.channel, msg.ts, "approve", user=APPROVER)
    assert status == 200
    assert state(provider, vpce) == "available"
    assert sorted(refusals(vpce)) == ["refused:button-mismatch", "refused:not-posted"]


def queue_job(local: LocalSlack, **fields: Any) -> list[str]:
    """Put a job on the work queue directly (not through the interactivity function), then let
    the worker take it."""
    sqs = local.deployment.provider.client("sqs")
    url = local.deployment.settings.slack_work_queue_url
    job = {
        "v": 1,
        "job_id": "forged",
        "action": "approve",
        "user": APPROVER,
        "team": LOCAL_TEAM,
        "received_at": "2026-12-01T00:00:00Z",
        "refusal": None,
        **fields,
    }
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(job))
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    records = [{"messageId": m["MessageId"], "body": m["Body"]} for m in messages]
    for m in messages:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return slack_worker.process(records, local.services)


def test_a_job_put_on_the_queue_by_anything_else_cannot_approve(
    local: LocalSlack, service: EndpointService, consumer: Consumer, provider: Provider
) -> None:
    vpce = consumer.create_endpoint(service.service_name)
    local.deployment.poller(local.deps()).drain()
    msg = message(local, vpce)
    bound = {"value": vpce, "channel": msg.channel, "message_ts": msg.ts}
    accepts = CallCounter(local.deps().ec2.client, "AcceptVpcEndpointConnections")
    assert queue_job(local, **bound, user=VISITOR) == []  # not an approver
    assert queue_job(local, **bound, team="T0ELSEWHERE") == []  # another workspace
    assert queue_job(local, **bound, team=None) == []  # no workspace at all
    assert accepts.count == 0
    assert state(provider, vpce) == "pendingAcceptance"
    assert sorted(refusals(vpce)) == [
        "refused:not-an-approver",
        "refused:wrong-team",
        "refused:wrong-team",
    ]
    # The very same job from an approver of the workspace acts: the check is not a blanket "no".
    assert queue_job(local, **bound) == []
    assert accepts.count == 1
    assert state(provider, vpce) == "available"
