"""Clicks: signature, approvers, the decision, replays, tampering, double clicks, following."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import pytest
from slack_fixtures import (  # noqa: F401 - local_fixture provides `local`
    APPROVER,
    GROUP_MEMBER,
    SECOND_APPROVER,
    VISITOR,
    CallCounter,
    escalate,
    escalation,
    local_fixture,
    message,
    state,
)

from vpce_approver import runtime
from vpce_approver.audit import Audit
from vpce_approver.handlers import slack_interactivity, slack_worker
from vpce_approver.tables import AuditItem
from vpce_tools import slack_local
from vpce_tools.emulator.world import Consumer, EndpointService, Provider
from vpce_tools.fake_slack import render_text, sign
from vpce_tools.slack_local import LocalSlack, api_gateway_event

CONSUMER = "111111111111"
OTHER = "222222222222"


def queued(local: LocalSlack) -> list[dict[str, Any]]:
    sqs = local.deployment.provider.client("sqs")
    url = local.deployment.settings.slack_work_queue_url
    return sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])


def send(local: LocalSlack, body: bytes, headers: dict[str, str], **kw: Any) -> int:
    """The real handler, with no worker drain: what API Gateway would return to Slack."""
    response = slack_interactivity.resolve(api_gateway_event(headers, body, **kw), local.services)
    return int(response["statusCode"])


def click_request(
    local: LocalSlack, vpce: str, action: str = "approve", user: str = APPROVER, **kw: Any
) -> tuple[bytes, dict[str, str]]:
    payload = local.fake.click_payload(message(local, vpce), action, user=user, **kw)
    return local.fake.signed_request(payload)


def audit(vpce: str) -> list[tuple[str, str, str | None]]:
    return [(i.action, i.actor, i.outcome) for i in AuditItem.query(vpce)]


def no_buttons(local: LocalSlack, vpce: str) -> bool:
    return not message(local, vpce).buttons


# ---------------------------------------------------------------- signature


def test_forged_signature_is_401_and_nothing_happens(
    local: LocalSlack, service: EndpointService, consumer: Consumer, provider: Provider
) -> None:
    vpce = escalate(local, service, consumer)
    body, headers = click_request(local, vpce)
    forged = {**headers, "X-Slack-Signature": sign("not-the-secret", body, int(time.time()))}
    assert send(local, body, forged) == 401
    tampered_body = body.replace(b"approve", b"reject")
    assert send(local, tampered_body, headers) == 401  # signature over another body
    for missing in ("X-Slack-Signature", "X-Slack-Request-Timestamp"):
        assert send(local, body, {k: v for k, v in headers.items() if k != missing}) == 401
    assert send(local, body, {**headers, "X-Slack-Request-Timestamp": "soon"}) == 401
    assert queued(local) == []
    assert state(provider, vpce) == "pendingAcceptance"


def test_stale_timestamp_is_401(
    local: LocalSlack, service: EndpointService, consumer: Consumer, provider: Provider
) -> None:
    vpce = escalate(local, service, consumer)
    payload = local.fake.click_payload(message(local, vpce), "approve", user=APPROVER)
    for skew in (-301, 301):  # correctly signed, but outside the 5-minute window
        body, headers = local.fake.signed_request(payload, timestamp=int(time.time()) + skew)
        assert send(local, body, headers) == 401
    body, headers = local.fake.signed_request(payload, timestamp=int(time.time()) - 240)
    assert send(local, body, headers) == 200  # inside the window
    assert len(queued(local)) == 1


def test_plain_and_base64_bodies_are_both_verified_over_the_raw_bytes(
    local: LocalSlack, service: EndpointService, consumer: Consumer
) -> None:
    vpce = escalate(local, service, consumer)
    body, headers = click_request(local, vpce)
    assert send(local, body, headers, base64_encode=False) == 200
    assert send(local, body, headers, base64_encode=True) == 200
    event = api_gateway_event(headers, body)
    event["body"] = "%%%not-base64%%%"
    response = slack_interactivity.resolve(event, local.services)
    assert response["statusCode"] == 400


def test_signed_nonsense_is_400_and_not_queued(
    local: LocalSlack, service: EndpointService, consumer: Consumer
) -> None:
    vpce = escalate(local, service, consumer)
    payload = local.fake.click_payload(message(local, vpce), "approve", user=APPROVER)
    payload["actions"][0]["action_id"] = "delete_everything"
    assert send(local, *local.fake.signed_request(payload)) == 400
    assert send(local, *local.fake.signed_request({"type": "view_submission"})) == 400
    assert queued(local) == []


# ---------------------------------------------------------------- decisions


def test_approve_accepts_updates_the_message_and_audits_the_user(
    local: LocalSlack, service: EndpointService, consumer: Consumer, provider: Provider
) -> None:
    vpce = escalate(local, service, consumer)
    msg = message(local, vpce)
    status, _ = local.fake.click(msg.channel, msg.ts, "approve", user=APPROVER)
    assert status == 200
    assert state(provider, vpce) == "available"
    assert no_buttons(local, vpce)
    assert f"Approved by @{APPROVER} at" in render_text(message(local, vpce).blocks)
    record = escalation(vpce)
    assert (record.state, record.outcome, record.decided_by) == (
        "settled",
        "approved",
        f"slack:{APPROVER}",
    )
    assert ("accept", f"slack:{APPROVER}", "done") in audit(vpce)


def test_reject_rejects(
    local: LocalSlack, service: EndpointService, consumer: Consumer, provider: Provider
) -> None:
    vpce = escalate(local, service, consumer)
    msg = message(local, vpce)
    local.fake.click(msg.channel, msg.ts, "reject", user=SECOND_APPROVER)
    assert state(provider, vpce) == "rejected"
    assert f"Rejected by @{SECOND_APPROVER}" in render_text(message(local, vpce).blocks)
    assert ("reject", f"slack:{SECOND_APPROVER}", "done") in audit(vpce)


def test_approve_and_register_writes_an_allow_grant(
    local: LocalSlack, service: EndpointService, consumer: Consumer, provider: Provider
) -> None:
    vpce = escalate(local, service, consumer)
    msg = message(local, vpce)
    local.fake.click(msg.channel, msg.ts, "approve_register", user=APPROVER)
    assert state(provider, vpce) == "available"
    grant = local.deps().registry.get(service.service_id, CONSUMER)
    assert grant is not None
    assert grant.status.value == "allow"
    assert grant.updated_by == f"slack:{APPROVER}"
    assert escalation(vpce).outcome == "approved-registered"
    assert "registered" in render_text(message(local, vpce).blocks)
    # The account's next endpoint is accepted without asking.
    second = consumer.create_endpoint(service.service_name)
    local.deployment.poller(local.deps()).drain()
    assert state(provider, second) == "available"
    assert local.fake.message_for(second) is None


def test_a_group_member_may_approve(
    local: LocalSlack, service: EndpointService, consumer: Consumer, provider: Provider
) -> None:
    vpce = escalate(local, service, consumer)
    msg = message(local, vpce)
    local.fake.click(msg.channel, msg.ts, "approve", user=GROUP_MEMBER)
    assert state(provider, vpce) == "available"


# ---------------------------------------------------------------- refusals


def test_non_approver_gets_an_ephemeral_refusal_and_is_audited(
    local: LocalSlack, service: EndpointService, consumer: Consumer, provider: Provider
) -> None:
    vpce = escalate(local, service, consumer)
    msg = message(local, vpce)
    status, _ = local.fake.click(msg.channel, msg.ts, "approve", user=VISITOR)
    assert status == 200  # acknowledged; the refusal is the ephemeral reply
    assert state(provider, vpce) == "pendingAcceptance"
    assert message(local, vpce).buttons  # message untouched
    [reply] = local.fake.ephemerals_for(VISITOR)
    assert "not an approver" in reply
    assert ("slack-refused", f"slack:{VISITOR}", "refused:not-an-approver") in audit(vpce)


def test_wrong_team_is_refused_and_audited(
    local: LocalSlack, service: EndpointService, consumer: Consumer, provider: Provider
) -> None:
    vpce = escalate(local, service, consumer)
    msg = message(local, vpce)
    local.fake.click(msg.channel, msg.ts, "approve", user=APPROVER, team="T0ELSEWHERE")
    assert state(provider, vpce) == "pendingAcceptance"
    assert ("slack-refused", f"slack:{APPROVER}", "refused:wrong-team") in audit(vpce)


def test_unreadable_approver_group_fails_closed(
    local: LocalSlack, service: EndpointService, consumer: Consumer, provider: Provider
) -> None:
    vpce = escalate(local, service, consumer)
    msg = message(local, vpce)
    local.fake.fail("server_error", method="usergroups.users.list", times=100)
    local.fake.click(msg.channel, msg.ts, "approve", user=GROUP_MEMBER)
    assert state(provider, vpce) == "pendingAcceptance"
    assert (
        "slack-refused",
        f"slack:{GROUP_MEMBER}",
        "refused:approvers-unavailable",
    ) in audit(vpce)


def test_tampered_button_value_naming_another_services_endpoint_is_refused(
    local: LocalSlack,
    service: EndpointService,
    consumer: Consumer,
    provider: Provider,
) -> None:
    other_service = provider.create_service(acceptance_required=True)
    local.deployment.enroll(other_service, name="ledger-api")
    mine = escalate(local, service, consumer)
    theirs = escalate(local, other_service, provider.consumer(OTHER))
    # The approver clicks on *mine*, with a value edited to name the other service's endpoint.
    body, headers = click_request(local, mine, value=theirs)
    assert local.fake.deliver(body, headers)[0] == 200
    assert state(provider, mine) == "pendingAcceptance"
    assert state(provider, theirs) == "pendingAcceptance"
    assert escalation(theirs).state == "open"
    assert ("slack-refused", f"slack:{APPROVER}", "refused:button-mismatch") in audit(theirs)
    # A value naming an endpoint with no escalation at all, or no endpoint, is refused too.
    body, headers = click_request(local, mine, value="vpce-0123456789abcdef0")
    local.fake.deliver(body, headers)
    body, headers = click_request(local, mine, value="'; drop table --")
    local.fake.deliver(body, headers)
    assert state(provider, mine) == "pendingAcceptance"
    refusals = {i.outcome for i in Audit().since() if i.action == "slack-refused"}
    assert refusals == {"refused:button-mismatch", "refused:unknown-escalation"}


# ---------------------------------------------------------------- exactly once


def test_replayed_request_does_not_act_twice(
    local: LocalSlack, service: EndpointService, consumer: Consumer, provider: Provider
) -> None:
    vpce = escalate(local, service, consumer)
    accepts = CallCounter(local.deps().ec2.client, "AcceptVpcEndpointConnections")
    msg = message(local, vpce)
    local.fake.click(msg.channel, msg.ts, "approve", user=APPROVER)
    assert local.fake.last_interaction is not None
    body, headers = local.fake.last_interaction
    status, _ = local.fake.deliver(body, headers)  # the very same signed request again
    assert status == 200
    assert accepts.count == 1
    assert any("Already settled" in r for r in local.fake.ephemerals_for(APPROVER))
    assert [a for a in audit(vpce) if a[0] == "accept"] == [("accept", f"slack:{APPROVER}", "done")]
    assert no_buttons(local, vpce)


def test_two_approvers_clicking_at_once_accept_exactly_once(
    local: LocalSlack, service: EndpointService, consumer: Consumer, provider: Provider
) -> None:
    vpce = escalate(local, service, consumer)
    assert send(local, *click_request(local, vpce, user=APPROVER)) == 200
    assert send(local, *click_request(local, vpce, user=SECOND_APPROVER)) == 200
    first, second = (m["Body"] for m in queued(local))
    accepts = CallCounter(local.deps().ec2.client, "AcceptVpcEndpointConnections")
    results: list[list[str]] = []
    # Worker B runs while worker A is inside its Accept call: the worst interleaving.
    accepts.hooks.append(
        lambda: (
            results.append(
                slack_worker.process([{"messageId": "b", "body": second}], local.services)
            )
            if not results
            else None
        )
    )
    assert slack_worker.process([{"messageId": "a", "body": first}], local.services) == []
    assert results == [[]]
    assert accepts.count == 1
    assert state(provider, vpce) == "available"
    users = {json.loads(first)["user"], json.loads(second)["user"]}
    loser = (users - {escalation(vpce).decided_by.removeprefix("slack:")}).pop()
    assert any("is deciding" in r for r in local.fake.ephemerals_for(loser))
    # And a click from a client still showing the old buttons: told so, no action.
    msg = message(local, vpce)
    local.fake.click(msg.channel, msg.ts, "reject", user=loser, value=vpce)
    assert state(provider, vpce) == "available"
    assert accepts.count == 1
    assert any("Already settled" in r for r in local.fake.ephemerals_for(loser))


def test_click_on_a_connection_settled_elsewhere_rereads_ec2_and_does_nothing(
    local: LocalSlack, service: EndpointService, consumer: Consumer, provider: Provider
) -> None:
    vpce = escalate(local, service, consumer)
    provider.client("ec2").reject_vpc_endpoint_connections(
        ServiceId=service.service_id, VpcEndpointIds=[vpce]
    )  # the console; its notification is not processed yet
    accepts = CallCounter(local.deps().ec2.client, "AcceptVpcEndpointConnections")
    msg = message(local, vpce)
    local.fake.click(msg.channel, msg.ts, "approve", user=APPROVER)
    assert accepts.count == 0
    assert state(provider, vpce) == "rejected"
    assert escalation(vpce).outcome == "rejected-elsewhere"
    assert no_buttons(local, vpce)
    assert "Rejected elsewhere" in render_text(message(local, vpce).blocks)


def test_slack_down_when_showing_the_outcome_retries_the_job_without_acting_again(
    local: LocalSlack, service: EndpointService, consumer: Consumer, provider: Provider
) -> None:
    vpce = escalate(local, service, consumer)
    assert send(local, *click_request(local, vpce)) == 200
    [job] = queued(local)
    accepts = CallCounter(local.deps().ec2.client, "AcceptVpcEndpointConnections")
    local.fake.fail("server_error", method="chat.update", times=100)
    record = {"messageId": "m1", "body": job["Body"]}
    assert slack_worker.process([record], local.services) == ["m1"]  # retried by SQS
    assert state(provider, vpce) == "available"
    local.fake.clear_failures()
    assert slack_worker.process([record], local.services) == []  # the redelivery
    assert accepts.count == 1
    assert no_buttons(local, vpce)
    assert local.fake.ephemerals_for(APPROVER) == []


def test_malformed_jobs_are_dropped(local: LocalSlack) -> None:
    records = [
        {"messageId": "1", "body": "not json"},
        {"messageId": "2", "body": json.dumps({"v": 99})},
        {"messageId": "3", "body": json.dumps({"v": 1, "action": "approve"})},
    ]
    assert slack_worker.process(records, local.services) == []


# ---------------------------------------------------------------- following the connection


@pytest.mark.parametrize(
    ("settle", "expected", "outcome"),
    [
        ("accept", "Accepted elsewhere", "accepted-elsewhere"),
        ("reject", "Rejected elsewhere", "rejected-elsewhere"),
        ("delete", "Withdrawn", "withdrawn"),
    ],
)
def test_message_follows_a_connection_settled_elsewhere(
    local: LocalSlack,
    service: EndpointService,
    consumer: Consumer,
    provider: Provider,
    settle: str,
    expected: str,
    outcome: str,
) -> None:
    vpce = escalate(local, service, consumer)
    ec2 = provider.client("ec2")
    if settle == "accept":
        ec2.accept_vpc_endpoint_connections(ServiceId=service.service_id, VpcEndpointIds=[vpce])
    elif settle == "reject":
        ec2.reject_vpc_endpoint_connections(ServiceId=service.service_id, VpcEndpointIds=[vpce])
    else:
        consumer.delete_endpoints(vpce)
    local.deployment.poller(local.deps()).drain()  # the notification -> follow()
    assert escalation(vpce).outcome == outcome
    assert no_buttons(local, vpce)
    assert expected in render_text(message(local, vpce).blocks)


# ---------------------------------------------------------------- the Lambda entry points


@dataclass
class Context:
    function_name: str = "slack"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:slack"
    aws_request_id: str = "req-1"


def test_lambda_handlers_built_from_the_environment(
    local: LocalSlack,
    service: EndpointService,
    consumer: Consumer,
    provider: Provider,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    vpce = escalate(local, service, consumer)
    settings = local.deployment.settings
    env = {
        "REGISTRY_TABLE": settings.registry_table,
        "AUDIT_TABLE": settings.audit_table,
        "ESCALATIONS_TABLE": settings.escalations_table,
        "SLACK_CHANNEL": settings.slack_channel,
        "SLACK_BOT_TOKEN_SECRET": settings.slack_bot_token_secret,
        "SLACK_SIGNING_SECRET_SECRET": settings.slack_signing_secret_secret,
        "SLACK_API_URL": settings.slack_api_url,
        "SLACK_TEAM_ID": settings.slack_team_id,
        "SLACK_APPROVERS": ",".join(settings.slack_approvers),
        "SLACK_WORK_QUEUE_URL": settings.slack_work_queue_url,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, str(value))
    runtime.default_deps.cache_clear()
    slack_interactivity.default_services.cache_clear()
    slack_worker.default_services.cache_clear()
    try:
        body, headers = click_request(local, vpce)
        response = slack_interactivity.handler(api_gateway_event(headers, body), Context())
        assert response["statusCode"] == 200
        forged = {**headers, "X-Slack-Signature": "v0=" + "0" * 64}
        response = slack_interactivity.handler(api_gateway_event(forged, body), Context())
        assert response["statusCode"] == 401
        records = [
            {"messageId": m["MessageId"], "body": m["Body"], "eventSource": "aws:sqs"}
            for m in queued(local)
        ]
        assert len(records) == 1
        assert slack_worker.handler({"Records": records}, Context()) == {"batchItemFailures": []}
        assert state(provider, vpce) == "available"
    finally:
        runtime.default_deps.cache_clear()
        slack_interactivity.default_services.cache_clear()
        slack_worker.default_services.cache_clear()


def test_a_click_in_shadow_mode_acts_on_nothing_and_is_audited(
    local: LocalSlack, service: EndpointService, consumer: Consumer, provider: Provider
) -> None:
    """An escalation opened before shadow mode was switched on can still be clicked: shadow mode
    acts on nothing, so the click is refused (audited, ephemeral reply) and the connection waits."""
    from dataclasses import replace

    vpce = escalate(local, service, consumer)
    local.services.deps.settings = replace(local.services.deps.settings, shadow_mode=True)
    msg = message(local, vpce)
    status, _ = local.fake.click(msg.channel, msg.ts, "approve", user=APPROVER)
    assert status == 200
    assert state(provider, vpce) == "pendingAcceptance"
    assert escalation(vpce).state == "open"
    [reply] = local.fake.ephemerals_for(APPROVER)
    assert "shadow mode" in reply
    assert ("slack-refused", f"slack:{APPROVER}", "refused:shadow-mode") in audit(vpce)


def test_worker_killed_between_accept_and_settle_keeps_the_human_decision(
    local: LocalSlack,
    service: EndpointService,
    consumer: Consumer,
    provider: Provider,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The worker accepts, then dies before settling; the Accept notification's follow() closes
    the escalation as "accepted-elsewhere"; SQS redelivers the job, which records the decision as
    the human's ("approved"), the outcome the sweep's drift check honours."""
    from vpce_approver.converge import follow
    from vpce_approver.slack.interactivity import Job
    from vpce_approver.slack.worker import Worker
    from vpce_tools.faults import LambdaKilled

    vpce = escalate(local, service, consumer)
    msg = message(local, vpce)
    job = Job(
        job_id="job-killed",
        action="approve",
        value=vpce,
        user=APPROVER,
        team=slack_local.LOCAL_TEAM,
        channel=msg.channel,
        message_ts=msg.ts,
        received_at="2026-11-30T10:00:00Z",
    )
    real_settle = Worker._settle
    killed: list[bool] = []

    def dies_once(self: Worker, *args: Any, **kwargs: Any) -> Any:
        if not killed:
            killed.append(True)
            raise LambdaKilled("killed between Accept and settle")
        return real_settle(self, *args, **kwargs)

    monkeypatch.setattr(Worker, "_settle", dies_once)
    worker = local.services.worker()
    with pytest.raises(LambdaKilled):
        worker.handle(job)
    assert state(provider, vpce) == "available"
    follow(service.service_id, [vpce], local.deps())  # the Accept notification
    assert escalation(vpce).outcome == "accepted-elsewhere"
    assert worker.handle(job) == "approved"  # the redelivered job
    settled = escalation(vpce)
    assert (settled.outcome, settled.decided_by) == ("approved", f"slack:{APPROVER}")
    assert no_buttons(local, vpce)
