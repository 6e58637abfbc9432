"""Converge on the emulator: notification -> SQS -> handler -> EC2 state, audit and escalations."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from conftest import CONSUMER, OTHER, THIRD, MetricsRecorder, grant, later
from vpce_approver.converge import converge
from vpce_approver.model import GrantStatus
from vpce_approver.registry import Registry, item_from_grant
from vpce_approver.tables import AuditItem, EscalationItem, RegistryItem
from vpce_tools.emulator.world import Consumer, EndpointService, Provider
from vpce_tools.stack import LocalDeployment


def state(provider: Provider, vpce_id: str) -> str:
    conns = [c for c in provider.connections() if c["VpcEndpointId"] == vpce_id]
    return str(conns[0]["VpcEndpointState"])


def audit_actions(vpce_id: str) -> list[tuple[str, str | None]]:
    return [(i.action, i.outcome) for i in AuditItem.query(vpce_id)]


def put(deployment: LocalDeployment, g: Any) -> None:
    deployment.deps().registry.put(g, by="test", now=datetime.now(UTC))


def test_registry_hit_is_accepted_within_one_poll(
    deployment: LocalDeployment,
    service: EndpointService,
    consumer: Consumer,
    provider: Provider,
    recorder: MetricsRecorder,
) -> None:
    put(deployment, grant(service.service_id))
    vpce = consumer.create_endpoint(service.service_name)
    poller = deployment.poller(deployment.deps(metrics=recorder))
    assert poller.poll_once() == 1  # one invocation for the Connect notification
    assert state(provider, vpce) == "available"
    assert poller.drain() == 1  # the Accept notification that followed: nothing more to do
    assert consumer.endpoint_state(vpce).lower() == "available"
    [record] = AuditItem.query(vpce)
    assert (record.action, record.actor, record.code, record.consumer) == (
        "accept",
        "policy",
        "allowed",
        CONSUMER,
    )
    assert record.outcome == "done"  # written "requested" before the call, then settled
    assert record.trigger == "notification"
    assert recorder.values["Accepted"] == 1
    assert recorder.values["DecisionLatency"] >= 0


def test_deny_is_rejected(
    deployment: LocalDeployment, service: EndpointService, consumer: Consumer, provider: Provider
) -> None:
    put(deployment, grant(service.service_id, status=GrantStatus.DENY, principals=()))
    vpce = consumer.create_endpoint(service.service_name)
    deployment.poller().drain()
    assert state(provider, vpce) == "rejected"
    assert audit_actions(vpce) == [("reject", "done")]


@pytest.mark.parametrize(
    ("setup", "code"),
    [
        ("none", "no-grant"),
        ("expired", "expired"),
        ("suspended", "suspended"),
        ("over-limit", "over-limit"),
        ("wrong-region", "wrong-region"),
    ],
)
def test_escalations_stay_pending_with_their_reason(
    deployment: LocalDeployment,
    service: EndpointService,
    consumer: Consumer,
    provider: Provider,
    setup: str,
    code: str,
) -> None:
    svc = service.service_id
    if setup == "expired":
        # Written while valid, then the clock passes its expiry (TTL deletion lags up to days).
        put(deployment, grant(svc, expires_at=datetime.now(UTC) + timedelta(seconds=30)))
        deps = deployment.deps()
        deps.clock = lambda: datetime.now(UTC) + timedelta(minutes=5)
    else:
        deps = deployment.deps()
        if setup == "suspended":
            put(deployment, grant(svc, status=GrantStatus.SUSPENDED))
        elif setup == "over-limit":
            put(deployment, grant(svc, max_endpoints=1))
        elif setup == "wrong-region":
            put(deployment, grant(svc, regions=frozenset({"eu-west-1"})))
    if setup == "over-limit":
        first = consumer.create_endpoint(service.service_name)
        deployment.poller(deps).drain()
        assert state(provider, first) == "available"
    vpce = consumer.create_endpoint(service.service_name)
    deployment.poller(deps).drain()
    assert state(provider, vpce) == "pendingAcceptance"
    item = EscalationItem.get(vpce)
    assert (item.code, item.state, item.consumer, item.posted) == (code, "open", CONSUMER, False)
    assert audit_actions(vpce) == [("escalate", "pending-human")]


def test_duplicate_and_reordered_notifications_decide_once(
    deployment: LocalDeployment,
    service: EndpointService,
    consumer: Consumer,
    other: Consumer,
    provider: Provider,
) -> None:
    put(deployment, grant(service.service_id))
    accepted = consumer.create_endpoint(service.service_name)
    escalated = other.create_endpoint(service.service_name)
    sqs = provider.client("sqs")
    msgs = sqs.receive_message(QueueUrl=deployment.queue_url, MaxNumberOfMessages=10)["Messages"]
    # Redeliver every notification twice more, in reverse order, as SNS/SQS may.
    for m in reversed(msgs * 2):
        sqs.send_message(QueueUrl=deployment.queue_url, MessageBody=m["Body"])
    for m in msgs:
        sqs.change_message_visibility(
            QueueUrl=deployment.queue_url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
        )
    deps = deployment.deps()
    poller = deployment.poller(deps, batch_size=2)  # several invocations, interleaved
    assert poller.drain() == 6 + 1  # the Accept notification our accept caused comes too
    assert state(provider, accepted) == "available"
    assert audit_actions(accepted) == [("accept", "done")]
    assert audit_actions(escalated) == [("escalate", "pending-human")]
    # and a whole-service converge afterwards changes nothing
    report = converge(service.service_id, deps)
    assert report.outcomes
    assert all(o.result == "already-escalated" for o in report.outcomes)
    assert audit_actions(escalated) == [("escalate", "pending-human")]


def test_malformed_and_foreign_notifications_take_no_action(
    deployment: LocalDeployment,
    service: EndpointService,
    consumer: Consumer,
    provider: Provider,
    caplog: pytest.LogCaptureFixture,
    recorder: MetricsRecorder,
) -> None:
    from vpce_approver.handlers.notifications import process

    put(deployment, grant(service.service_id))
    sqs = provider.client("sqs")
    vpce = consumer.create_endpoint(service.service_name)
    sqs.purge_queue(QueueUrl=deployment.queue_url)
    records = [
        {"messageId": "1", "body": "not json at all"},
        {"messageId": "2", "body": json.dumps({"Type": "Notification", "Message": '{"hello": 1}'})},
        {"messageId": "3", "body": json.dumps({"weird": ["shape"]})},
        {"messageId": "4", "nothing": True},
        # a foreign service (not managed here): ignored with a warning
        {
            "messageId": "5",
            "body": json.dumps(
                {
                    "serviceId": "vpce-svc-00000000000000000",
                    "vpcEndpointId": vpce,
                    "eventType": "Connect",
                }
            ),
        },
    ]
    with caplog.at_level(logging.WARNING):
        failed = process(records, deployment.deps(metrics=recorder))
    assert failed == []
    assert state(provider, vpce) == "pendingAcceptance"
    assert list(AuditItem.scan()) == []
    assert "malformed notification" in caplog.text or "dropping" in caplog.text


def test_registry_read_error_accepts_nothing_and_retries(
    deployment: LocalDeployment,
    service: EndpointService,
    consumer: Consumer,
    provider: Provider,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    put(deployment, grant(service.service_id))
    vpce = consumer.create_endpoint(service.service_name)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("DynamoDB is down")

    monkeypatch.setattr(Registry, "read", broken)
    poller = deployment.poller()
    poller.poll_once()
    assert state(provider, vpce) == "pendingAcceptance"
    assert list(AuditItem.scan()) == []
    monkeypatch.undo()
    # the failed record became visible again: the retry converges it
    deployment.poller().drain()
    assert state(provider, vpce) == "available"


def test_shadow_mode_records_and_does_nothing(
    deployment: LocalDeployment,
    service: EndpointService,
    consumer: Consumer,
    other: Consumer,
    provider: Provider,
) -> None:
    put(deployment, grant(service.service_id))
    put(
        deployment,
        grant(service.service_id, consumer=OTHER, status=GrantStatus.DENY, principals=()),
    )
    ok = consumer.create_endpoint(service.service_name)
    bad = other.create_endpoint(service.service_name)
    deployment.poller(deployment.deps(shadow_mode=True)).drain()
    assert state(provider, ok) == state(provider, bad) == "pendingAcceptance"
    assert audit_actions(ok) == [("would-accept", "shadow")]
    assert audit_actions(bad) == [("would-reject", "shadow")]
    assert list(EscalationItem.scan()) == []
    # converging again (the sweep will, every few minutes) records nothing new
    converge(service.service_id, deployment.deps(shadow_mode=True), trigger="sweep")
    assert audit_actions(ok) == [("would-accept", "shadow")]
    assert audit_actions(bad) == [("would-reject", "shadow")]


def test_unmanaged_service_is_ignored(
    deployment: LocalDeployment,
    provider: Provider,
    consumer: Consumer,
    recorder: MetricsRecorder,
) -> None:
    svc = provider.create_service()  # not enrolled
    put(deployment, grant(svc.service_id))
    vpce = consumer.create_endpoint(svc.service_name)
    report = converge(svc.service_id, deployment.deps(metrics=recorder))
    assert not report.managed
    assert report.outcomes == []
    assert state(provider, vpce) == "pendingAcceptance"
    assert recorder.values["IgnoredService"] == 1


def test_many_connections_one_accept_call_and_limits_per_consumer(
    deployment: LocalDeployment,
    service: EndpointService,
    provider: Provider,
) -> None:
    consumers = [provider.consumer(a) for a in (CONSUMER, OTHER, THIRD)]
    put(deployment, grant(service.service_id))
    put(deployment, grant(service.service_id, consumer=OTHER, max_endpoints=2))
    ids = {c.account_id: c.create_endpoints(service.service_name, 3) for c in consumers}
    deps = deployment.deps()
    calls: list[str] = []
    deps.ec2.client.meta.events.register(
        "before-call.ec2.*", lambda model, **_: calls.append(model.name)
    )
    report = converge(service.service_id, deps)
    assert calls.count("AcceptVpcEndpointConnections") == 1
    # The limit admits 2 of OTHER's 3 (oldest first; same-second creations tie-break on ID).
    accepted_other = [i for i in report.accepted if i in ids[OTHER]]
    [over] = [i for i in ids[OTHER] if i not in accepted_other]
    assert len(accepted_other) == 2
    assert sorted(report.accepted) == sorted(ids[CONSUMER] + accepted_other)
    assert sorted(report.escalated) == sorted([over, *ids[THIRD]])
    assert EscalationItem.get(over).code == "over-limit"


def test_converge_twice_changes_nothing(
    deployment: LocalDeployment,
    service: EndpointService,
    consumer: Consumer,
) -> None:
    put(deployment, grant(service.service_id))
    consumer.create_endpoints(service.service_name, 2)
    deps = deployment.deps()
    first = converge(service.service_id, deps)
    assert len(first.accepted) == 2
    second = converge(service.service_id, deps)
    assert second.outcomes == []
    assert len(list(AuditItem.scan())) == 2


def test_malformed_registry_item_is_never_an_allow(
    deployment: LocalDeployment,
    service: EndpointService,
    consumer: Consumer,
    provider: Provider,
) -> None:
    item = item_from_grant(grant(service.service_id), by="test", now=datetime.now(UTC))
    item.principals = ["arn:aws:iam::999999999999:root"]  # another account's principal
    item.save()
    vpce = consumer.create_endpoint(service.service_name)
    deployment.poller().drain()
    assert state(provider, vpce) == "pendingAcceptance"
    assert EscalationItem.get(vpce).code == "malformed-grant"


def test_accept_event_closes_open_escalation(
    deployment: LocalDeployment,
    service: EndpointService,
    consumer: Consumer,
    provider: Provider,
) -> None:
    vpce = consumer.create_endpoint(service.service_name)
    deployment.poller().drain()
    assert EscalationItem.get(vpce).state == "open"
    provider.client("ec2").accept_vpc_endpoint_connections(  # e.g. someone in the console
        ServiceId=service.service_id, VpcEndpointIds=[vpce]
    )
    deployment.poller().drain()
    item = EscalationItem.get(vpce)
    assert (item.state, item.outcome) == ("settled", "accepted-elsewhere")
    assert ("escalation-closed", "accepted-elsewhere") in audit_actions(vpce)


def test_withdrawn_endpoint_closes_escalation(
    deployment: LocalDeployment,
    service: EndpointService,
    consumer: Consumer,
) -> None:
    vpce = consumer.create_endpoint(service.service_name)
    deployment.poller().drain()
    consumer.delete_endpoints(vpce)
    deployment.poller().drain()
    assert EscalationItem.get(vpce).outcome == "withdrawn"


def test_later_now() -> None:
    assert later() > datetime.now(UTC)


class StaleThenRacing(Registry):
    """Answers the first lookup from the registry as it was, then lets a concurrent converge run
    (what a notification converge and a registry-stream converge of one service can do)."""

    def __init__(self, race: Any) -> None:
        super().__init__()
        self.race = race

    def read(self, *args: Any, **kwargs: Any) -> Any:
        found = super().read(*args, **kwargs)
        race, self.race = self.race, None
        if race is not None:
            race()
        return found


def test_escalation_raced_by_an_accept_is_closed_not_left_open(
    deployment: LocalDeployment,
    service: EndpointService,
    consumer: Consumer,
    provider: Provider,
) -> None:
    """Converge A reads no grant; before it escalates, converge B (the grant just written) accepts
    the connection and finds no escalation to close. A's escalation must not stay open (and
    posted to Slack) for a connection that is already available."""
    vpce = consumer.create_endpoint(service.service_name)
    posted: list[str] = []

    class Port:
        def opened(self, escalation: EscalationItem) -> None:
            posted.append(str(escalation.vpc_endpoint_id))

        def settled(self, escalation: EscalationItem) -> None:
            return None

        def refresh(self, escalation: EscalationItem) -> None:
            return None

    def concurrent_grant_and_converge() -> None:
        put(deployment, grant(service.service_id))
        report = converge(service.service_id, deployment.deps(), trigger="registry")
        assert report.accepted == [vpce]

    deps = deployment.deps()
    deps.registry = StaleThenRacing(concurrent_grant_and_converge)
    deps.port = Port()
    report = converge(service.service_id, deps, endpoint_ids=[vpce])

    assert state(provider, vpce) == "available"
    assert report.escalated == []
    item = EscalationItem.get(vpce, consistent_read=True)
    assert (item.state, item.outcome) == ("settled", "accepted-by-grant")  # the racing grant did it
    assert posted == []


def test_the_decision_reads_the_registry_strongly_consistent(
    deployment: LocalDeployment,
    service: EndpointService,
    consumer: Consumer,
) -> None:
    """A grant suspended or denied a moment ago must never be read as the allow it was: every
    registry read on the decision path asks for ConsistentRead."""
    from vpce_tools.faults import model_client

    put(deployment, grant(service.service_id))
    consumer.create_endpoints(service.service_name, 1)
    deps = deployment.deps()
    seen: list[dict[str, Any]] = []
    client = model_client(RegistryItem)
    client.meta.events.register(
        "before-parameter-build.dynamodb.BatchGetItem", lambda params, **_: seen.append(params)
    )
    report = converge(service.service_id, deps)
    assert len(report.accepted) == 1
    assert seen
    for params in seen:
        for table in params["RequestItems"].values():
            assert table.get("ConsistentRead") is True
