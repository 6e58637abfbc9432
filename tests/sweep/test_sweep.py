"""The scheduled sweep on the emulator: lost notifications, cut-off runs, drift, the ensure step
and escalations Slack never saw. Behaviour and call counts only; speed is the benchmark's."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from approvals import approve_in_slack
from conftest import CONSUMER, OTHER, MetricsRecorder, grant
from vpce_approver.audit import stamp
from vpce_approver.converge import Deps
from vpce_approver.escalations import EscalationPort
from vpce_approver.model import GrantStatus
from vpce_approver.sweep import Cursor, CursorStore, DriftSummary, sweep
from vpce_approver.tables import SERVICE_MARKER, AuditItem, EscalationItem, RegistryItem
from vpce_tools.cli import main as cli_main
from vpce_tools.emulator import seed_connections
from vpce_tools.emulator.world import Consumer, EndpointService, Provider
from vpce_tools.stack import LocalDeployment


@dataclass
class RecordingPort:
    """An EscalationPort that records what it was asked to do (and marks posts as posted)."""

    calls: list[tuple[str, str]] = field(default_factory=list)
    drift_summaries: list[DriftSummary] = field(default_factory=list)

    def opened(self, escalation: EscalationItem) -> None:
        self.calls.append(("opened", str(escalation.vpc_endpoint_id)))
        escalation.update(actions=[EscalationItem.posted.set(True)])

    def settled(self, escalation: EscalationItem) -> None:
        self.calls.append(("settled", str(escalation.vpc_endpoint_id)))

    def refresh(self, escalation: EscalationItem) -> None:
        self.calls.append(("refresh", str(escalation.vpc_endpoint_id)))

    def drift(self, summary: DriftSummary) -> None:
        self.drift_summaries.append(summary)


def _port(port: RecordingPort) -> EscalationPort:
    return port  # type-checks RecordingPort against the protocol


@pytest.fixture
def deps(deployment: LocalDeployment) -> Deps:
    return deployment.deps(notification_topic_arn=deployment.topic_arn)


def state(provider: Provider, vpce_id: str) -> str:
    [conn] = [c for c in provider.connections() if c["VpcEndpointId"] == vpce_id]
    return str(conn["VpcEndpointState"])


def put(deps: Deps, *grants: Any) -> None:
    for g in grants:
        deps.registry.put(g, by="test", now=datetime.now(UTC))


def count_calls(deps: Deps) -> Counter[str]:
    calls: Counter[str] = Counter()
    deps.ec2.client.meta.events.register(
        "before-call.ec2.*", lambda model, **_: calls.update([model.name])
    )
    return calls


def notifications_of(provider: Provider, service_id: str) -> list[dict[str, Any]]:
    return list(
        provider.client("ec2").describe_vpc_endpoint_connection_notifications(
            Filters=[{"Name": "service-id", "Values": [service_id]}]
        )["ConnectionNotificationSet"]
    )


def test_lost_notification_is_converged_by_one_sweep(
    deployment: LocalDeployment,
    deps: Deps,
    service: EndpointService,
    consumer: Consumer,
    provider: Provider,
) -> None:
    put(deps, grant(service.service_id))
    vpce = consumer.create_endpoint(service.service_name)
    provider.client("sqs").purge_queue(QueueUrl=deployment.queue_url)  # the notification is lost
    assert deployment.poller(deps).drain() == 0
    assert state(provider, vpce) == "pendingAcceptance"

    report = sweep(deps)

    assert state(provider, vpce) == "available"
    assert report.total("accept:done") == 1
    assert not report.cut_off
    assert report.errors == {}
    [record] = AuditItem.query(vpce)
    assert (record.action, record.trigger, record.outcome) == ("accept", "sweep", "done")
    # a second sweep finds nothing to do
    again = sweep(deps)
    assert again.total("accept:done") == 0
    assert len(list(AuditItem.query(vpce))) == 1


def unsubscribe_queue(provider: Provider, deployment: LocalDeployment) -> None:
    """Detach the notification queue: the emulator fans every Accept event out to SQS inside
    the Accept call (moto's SQS slows down with each queued message); these tests do not read
    the queue."""
    sns = provider.client("sns")
    for sub in sns.list_subscriptions_by_topic(TopicArn=deployment.topic_arn)["Subscriptions"]:
        sns.unsubscribe(SubscriptionArn=sub["SubscriptionArn"])


def test_cut_off_sweep_resumes_where_it_stopped(
    deployment: LocalDeployment, deps: Deps, service: EndpointService, provider: Provider
) -> None:
    unsubscribe_queue(provider, deployment)
    owners = [f"{100000000000 + i}" for i in range(30)]
    put(deps, *(grant(service.service_id, consumer=o) for o in owners))
    ids = seed_connections(service.service_id, owners, 2500)  # 3 pages of 1,000
    calls = count_calls(deps)
    # Time runs out once the first page has been read (the deadline is checked before each page).
    first = sweep(
        deps,
        remaining_ms=lambda: 0 if calls["DescribeVpcEndpointConnections"] else 120_000,
        chunk_pages=1,
    )

    assert first.cut_off
    assert first.stopped_at is not None
    assert first.stopped_at.service_id == service.service_id
    assert first.stopped_at.next_token
    assert first.total("accept:done") == 1000
    assert calls["DescribeVpcEndpointConnections"] == 1
    assert CursorStore().load() == first.stopped_at
    states = Counter(c["VpcEndpointState"] for c in provider.connections(service.service_id))
    assert states == {"available": 1000, "pendingAcceptance": 1500}

    calls.clear()
    second = sweep(deps, remaining_ms=lambda: 120_000, chunk_pages=1)

    assert second.resumed_from == first.stopped_at
    assert not second.cut_off
    assert second.total("accept:done") == 1500
    # resumed at page 2: pages 2 and 3 only, never page 1 again
    assert calls["DescribeVpcEndpointConnections"] == 2
    assert calls["AcceptVpcEndpointConnections"] == 2
    assert CursorStore().load() is None  # the rotation finished: the cursor is gone
    live = {c["VpcEndpointId"] for c in provider.connections(service.service_id)}
    assert live == set(ids)
    assert all(c["VpcEndpointState"] == "available" for c in provider.connections())


def test_cut_off_between_services_resumes_at_the_next_service(
    deployment: LocalDeployment, deps: Deps, service: EndpointService, provider: Provider
) -> None:
    second_service = provider.create_service()
    deployment.enroll(second_service)
    first_id, second_id = sorted([service.service_id, second_service.service_id])
    for svc in (first_id, second_id):
        put(deps, grant(svc))
        seed_connections(svc, [CONSUMER], 3)
    calls = count_calls(deps)
    # time runs out once the first service is done (its one Accept call made)
    report = sweep(
        deps, remaining_ms=lambda: 0 if calls["AcceptVpcEndpointConnections"] else 120_000
    )
    assert report.stopped_at is not None
    assert [s.service_id for s in report.services] == [first_id]
    assert report.stopped_at.service_id == second_id
    assert report.stopped_at.next_token is None
    resumed = sweep(deps)
    assert [s.service_id for s in resumed.services] == [second_id, first_id]
    assert resumed.total("accept:done") == 3


def test_stale_cursor_token_restarts_the_service_from_page_one(
    deps: Deps, service: EndpointService
) -> None:
    put(deps, grant(service.service_id))
    seed_connections(service.service_id, [CONSUMER], 5)
    CursorStore().save(Cursor(service.service_id, "not-a-token"), datetime.now(UTC))
    report = sweep(deps)
    assert report.errors == {}
    assert report.total("accept:done") == 5


def test_drift_is_reported_and_rejected_only_with_revocation(
    deployment: LocalDeployment,
    deps: Deps,
    service: EndpointService,
    consumer: Consumer,
    other: Consumer,
    provider: Provider,
    recorder: MetricsRecorder,
) -> None:
    put(deps, grant(service.service_id), grant(service.service_id, consumer=OTHER))
    kept = consumer.create_endpoint(service.service_name)
    drifted = other.create_endpoint(service.service_name)
    deployment.poller(deps).drain()
    assert state(provider, drifted) == "available"
    deps.registry.delete(service.service_id, OTHER)  # the grant is gone; the connection is not

    port = RecordingPort()
    report = sweep(replace(deps, metrics=recorder, port=_port(port)))
    [item] = report.drift
    assert (item.vpc_endpoint_id, item.consumer, item.code, item.outcome) == (
        drifted,
        OTHER,
        "no-grant",
        "reported",
    )
    assert recorder.values["Drift"] == 1
    assert [len(s.items) for s in port.drift_summaries] == [1]
    assert state(provider, drifted) == "available"  # revocation off: reported only

    revoking = replace(deps, settings=replace(deps.settings, revoke_default=True))
    report = sweep(revoking)
    [item] = report.drift
    assert item.outcome == "rejected"
    assert state(provider, drifted) == "rejected"
    assert state(provider, kept) == "available"
    [record] = [r for r in AuditItem.query(drifted) if r.trigger == "sweep"]
    assert (record.action, record.code, record.actor) == ("reject", "no-grant", "sweep")
    assert sweep(revoking).drift == []  # rejected connections are not live: nothing left


def test_drift_respects_a_grants_own_revoke_flag(
    deployment: LocalDeployment,
    deps: Deps,
    service: EndpointService,
    consumer: Consumer,
    provider: Provider,
) -> None:
    put(deps, grant(service.service_id))
    vpce = consumer.create_endpoint(service.service_name)
    deployment.poller(deps).drain()
    put(deps, grant(service.service_id, status=GrantStatus.SUSPENDED, revoke=True))
    report = sweep(deps)  # revoke_default is off, but this grant says revoke
    [item] = report.drift
    assert (item.code, item.outcome) == ("suspended", "rejected")
    assert state(provider, vpce) == "rejected"


def test_drift_never_rejects_a_connection_a_human_approved(
    deployment: LocalDeployment,
    deps: Deps,
    service: EndpointService,
    consumer: Consumer,
    provider: Provider,
    recorder: MetricsRecorder,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Approved in Slack without a grant: the policy would not accept it, but a person did.
    It is its own state, not drift: never revoked (revocation on), not counted or summarised as
    drift on every sweep, reported apart (report, metric, CLI)."""
    vpce = consumer.create_endpoint(service.service_name)
    deployment.poller(deps).drain()  # no grant: escalated
    assert approve_in_slack(deployment, vpce, datetime.now(UTC)) == "approved"
    assert state(provider, vpce) == "available"

    port = RecordingPort()
    revoking = replace(
        deps,
        settings=replace(deps.settings, revoke_default=True),
        metrics=recorder,
        port=_port(port),
    )
    for _ in range(2):  # every sweep, the same
        report = sweep(revoking)
        assert report.drift == []
        [item] = report.approved
        assert (item.vpc_endpoint_id, item.code, item.revoke, item.outcome) == (
            vpce,
            "no-grant",
            False,
            "approved-by-person",
        )
        assert item.reason.startswith("approved by a person at ")
        assert (report.summary()["drift"], report.summary()["approved_no_grant"]) == (0, 1)
    assert (recorder.values["Drift"], recorder.values["ApprovedNoGrant"]) == (0, 2)
    assert port.drift_summaries == []  # no drift summary to Slack
    assert state(provider, vpce) == "available"
    assert [r for r in AuditItem.query(vpce) if r.actor == "sweep"] == []

    capsys.readouterr()
    assert cli_main(["sweep"]) == 0  # the real CLI
    out = capsys.readouterr().out
    assert f"approved by a person, no grant: {vpce} ({CONSUMER})" in out
    assert "drift:" not in out
    assert cli_main(["sweep", "-o", "json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["drift"], summary["approved_no_grant"]) == (0, 1)


def test_a_registry_change_after_the_approval_revokes_it(
    deployment: LocalDeployment,
    deps: Deps,
    service: EndpointService,
    consumer: Consumer,
    provider: Provider,
) -> None:
    """The approval stands until the registry says otherwise later: a grant suspended after
    the click, with revoke on, is an explicit revocation the sweep carries out."""
    put(deps, grant(service.service_id, status=GrantStatus.SUSPENDED, revoke=True))
    vpce = consumer.create_endpoint(service.service_name)
    deployment.poller(deps).drain()  # suspended: escalated
    start = datetime.now(UTC)
    assert approve_in_slack(deployment, vpce, start + timedelta(minutes=1)) == "approved"
    [item] = sweep(deps).approved  # the suspension predates the approval: kept, not drift
    assert (item.code, item.outcome) == ("suspended", "approved-by-person")
    assert state(provider, vpce) == "available"

    suspended_again = grant(service.service_id, status=GrantStatus.SUSPENDED, revoke=True)
    deps.registry.put(suspended_again, by="test", now=start + timedelta(minutes=2))
    [item] = sweep(deps).drift
    assert (item.code, item.outcome) == ("suspended", "rejected")
    assert state(provider, vpce) == "rejected"


def test_missing_notification_is_recreated_and_delivers_again(
    deployment: LocalDeployment,
    deps: Deps,
    service: EndpointService,
    consumer: Consumer,
    provider: Provider,
) -> None:
    ec2 = provider.client("ec2")
    [old] = notifications_of(provider, service.service_id)
    ec2.delete_vpc_endpoint_connection_notifications(
        ConnectionNotificationIds=[old["ConnectionNotificationId"]]
    )
    report = sweep(deps)
    [result] = report.services
    [new] = notifications_of(provider, service.service_id)
    assert new["ConnectionNotificationArn"] == deployment.topic_arn
    assert sorted(new["ConnectionEvents"]) == ["Accept", "Connect", "Delete", "Reject"]
    assert result.fixes == [
        f"connection notification recreated ({new['ConnectionNotificationId']})"
    ]
    enrollment = RegistryItem.get(service.service_id, SERVICE_MARKER)
    assert enrollment.notification_id == new["ConnectionNotificationId"]
    # the path works again: a new Connect reaches the queue and is decided from it
    put(deps, grant(service.service_id))
    vpce = consumer.create_endpoint(service.service_name)
    assert deployment.poller(deps).drain() >= 1
    assert state(provider, vpce) == "available"
    assert sweep(deps).services[0].fixes == []  # in place now: nothing to fix


def test_notification_that_lost_events_gets_a_complete_one_beside_it(
    deployment: LocalDeployment, deps: Deps, service: EndpointService, provider: Provider
) -> None:
    [old] = notifications_of(provider, service.service_id)
    old_id = old["ConnectionNotificationId"]
    provider.client("ec2").modify_vpc_endpoint_connection_notification(
        ConnectionNotificationId=old_id, ConnectionEvents=["Delete"]
    )
    [result] = sweep(deps).services
    notes = {
        n["ConnectionNotificationId"]: n for n in notifications_of(provider, service.service_id)
    }
    [new_id] = set(notes) - {old_id}
    assert result.fixes == [
        f"connection notification created ({new_id}) ({old_id} lacks Connect, Accept, Reject)"
    ]
    assert sorted(notes[new_id]["ConnectionEvents"]) == ["Accept", "Connect", "Delete", "Reject"]
    assert notes[new_id]["ConnectionNotificationArn"] == deployment.topic_arn
    assert RegistryItem.get(service.service_id, SERVICE_MARKER).notification_id == new_id
    assert sweep(deps).services[0].fixes == []


@pytest.mark.parametrize(
    ("tag", "warning"),
    [
        (None, "is missing"),
        ("another-stack", "names another deployment than vpce-approver"),
        ("vpce-approver", None),
    ],
)
def test_managed_tag_is_checked_against_this_deployment(
    deps: Deps, service: EndpointService, provider: Provider, tag: str | None, warning: str | None
) -> None:
    """IAM lets the functions act only on services tagged with this stack's name: a missing tag
    or another deployment's tag is reported (never fixed: CreateTags would let the function
    enroll any service)."""
    ec2 = provider.client("ec2")
    ec2.delete_tags(Resources=[service.service_id], Tags=[{"Key": "vpce-approver:managed"}])
    if tag is not None:
        ec2.create_tags(
            Resources=[service.service_id], Tags=[{"Key": "vpce-approver:managed", "Value": tag}]
        )
    named = replace(deps, settings=replace(deps.settings, deployment_name="vpce-approver"))
    [result] = sweep(named).services
    tag_warnings = [w for w in result.warnings if "vpce-approver:managed" in w]
    if warning is None:
        assert tag_warnings == []
    else:
        assert len(tag_warnings) == 1
        assert warning in tag_warnings[0]


def test_acceptance_required_turned_off_is_turned_back_on(
    deps: Deps, service: EndpointService, provider: Provider, recorder: MetricsRecorder
) -> None:
    ec2 = provider.client("ec2")
    ec2.modify_vpc_endpoint_service_configuration(
        ServiceId=service.service_id, AcceptanceRequired=False
    )
    [result] = sweep(replace(deps, metrics=recorder)).services
    assert result.fixes == ["acceptance_required turned back on"]
    assert recorder.values["EnsureFixed"] == 1
    [config] = ec2.describe_vpc_endpoint_service_configurations(ServiceIds=[service.service_id])[
        "ServiceConfigurations"
    ]
    assert config["AcceptanceRequired"] is True


def test_missing_topic_setting_reports_instead_of_guessing(
    deployment: LocalDeployment, service: EndpointService, provider: Provider
) -> None:
    [old] = notifications_of(provider, service.service_id)
    provider.client("ec2").delete_vpc_endpoint_connection_notifications(
        ConnectionNotificationIds=[old["ConnectionNotificationId"]]
    )
    [result] = sweep(deployment.deps(notification_topic_arn=None)).services  # no topic setting
    assert result.fixes == []
    assert any("NOTIFICATION_TOPIC_ARN is not set" in w for w in result.warnings)
    assert notifications_of(provider, service.service_id) == []


def test_unposted_escalation_is_posted_and_stale_one_refreshed(
    deployment: LocalDeployment,
    deps: Deps,
    service: EndpointService,
    consumer: Consumer,
    other: Consumer,
) -> None:
    unposted = consumer.create_endpoint(service.service_name)  # no grant: escalated
    stale = other.create_endpoint(service.service_name)
    deployment.poller(deps).drain()  # RecordOnly: both recorded, neither posted
    item = EscalationItem.get(stale)
    old = stamp(datetime.now(UTC) - timedelta(hours=3))
    item.update(actions=[EscalationItem.posted.set(True), EscalationItem.updated_at.set(old)])

    port = RecordingPort()
    report = sweep(replace(deps, port=_port(port)))

    assert port.calls == [("opened", unposted), ("refresh", stale)]
    assert (report.escalations.reposted, report.escalations.refreshed) == (1, 1)
    assert EscalationItem.get(unposted).posted is True
    assert EscalationItem.get(stale).updated_at > old
    # posted and freshly refreshed: the next sweep leaves both alone
    port.calls.clear()
    sweep(replace(deps, port=_port(port)))
    assert port.calls == []


def test_escalation_settled_elsewhere_is_closed(
    deployment: LocalDeployment,
    deps: Deps,
    service: EndpointService,
    consumer: Consumer,
    provider: Provider,
) -> None:
    vpce = consumer.create_endpoint(service.service_name)
    deployment.poller(deps).drain()
    provider.client("ec2").accept_vpc_endpoint_connections(
        ServiceId=service.service_id, VpcEndpointIds=[vpce]
    )
    provider.client("sqs").purge_queue(QueueUrl=deployment.queue_url)  # Accept event lost
    port = RecordingPort()
    report = sweep(replace(deps, port=_port(port)))
    assert report.escalations.closed == 1
    item = EscalationItem.get(vpce)
    assert (item.state, item.outcome, item.decided_by) == ("settled", "accepted-elsewhere", "sweep")
    assert ("settled", vpce) in port.calls
    assert ("opened", vpce) not in port.calls


def test_dry_run_acts_on_nothing(
    deployment: LocalDeployment,
    deps: Deps,
    service: EndpointService,
    consumer: Consumer,
    provider: Provider,
) -> None:
    put(deps, grant(service.service_id))
    vpce = consumer.create_endpoint(service.service_name)
    provider.client("sqs").purge_queue(QueueUrl=deployment.queue_url)
    ec2 = provider.client("ec2")
    ec2.modify_vpc_endpoint_service_configuration(
        ServiceId=service.service_id, AcceptanceRequired=False
    )
    [note] = notifications_of(provider, service.service_id)
    ec2.delete_vpc_endpoint_connection_notifications(
        ConnectionNotificationIds=[note["ConnectionNotificationId"]]
    )
    calls = count_calls(deps)
    report = sweep(deps, dry_run=True)
    assert report.dry_run
    assert state(provider, vpce) == "pendingAcceptance"
    assert [(r.action, r.outcome) for r in AuditItem.query(vpce)] == [("would-accept", "shadow")]
    assert report.services[0].fixes == [
        "would turn acceptance_required on",
        "would recreate the connection notification",
    ]
    mutating = {"Accept", "Reject", "Modify", "Create", "Delete"}
    assert not [name for name in calls if any(name.startswith(m) for m in mutating)]
    assert notifications_of(provider, service.service_id) == []


def test_unmanaged_services_are_not_swept(
    deps: Deps, provider: Provider, consumer: Consumer
) -> None:
    svc = provider.create_service()  # not enrolled
    put(deps, grant(svc.service_id))
    vpce = consumer.create_endpoint(svc.service_name)
    report = sweep(deps)
    assert report.services == []
    assert state(provider, vpce) == "pendingAcceptance"


def test_one_failing_service_does_not_stop_the_others(
    deployment: LocalDeployment,
    deps: Deps,
    service: EndpointService,
    consumer: Consumer,
    provider: Provider,
) -> None:
    # enrolled, then deleted behind our back: its ensure step fails
    gone = provider.create_service()
    deployment.enroll(gone)
    provider.client("ec2").delete_vpc_endpoint_service_configurations(ServiceIds=[gone.service_id])
    put(deps, grant(service.service_id))
    vpce = consumer.create_endpoint(service.service_name)
    provider.client("sqs").purge_queue(QueueUrl=deployment.queue_url)
    report = sweep(deps)
    assert set(report.errors) == {gone.service_id}
    assert state(provider, vpce) == "available"


def test_cursor_item_stays_out_of_the_escalation_index(
    deps: Deps, service: EndpointService
) -> None:
    CursorStore().save(Cursor(service.service_id, "t"), datetime.now(UTC))
    assert list(deps.escalations.open_items()) == []
    assert CursorStore().load() == Cursor(service.service_id, "t")
    CursorStore().clear()
    assert CursorStore().load() is None


def test_large_chunk_reads_wildcard_grants_with_one_query(
    deployment: LocalDeployment, deps: Deps, service: EndpointService, provider: Provider
) -> None:
    """Over 100 consumers in a chunk: `*` grants come from one Query of the `*` partition, not
    one key per consumer; they still decide (a `*` allow accepts, a `*` deny wins)."""
    unsubscribe_queue(provider, deployment)
    owners = [f"{400000000000 + i}" for i in range(150)]
    put(deps, *(grant(service.service_id, consumer=o) for o in owners[2:]))
    put(deps, grant("*", consumer=owners[0]))  # only a wildcard allow
    put(  # a service allow, but a wildcard deny: deny wins
        deps,
        grant(service.service_id, consumer=owners[1]),
        grant("*", consumer=owners[1], status=GrantStatus.DENY, principals=()),
    )
    ids = seed_connections(service.service_id, owners, 150)
    reads: Counter[str] = Counter()
    RegistryItem._get_connection().connection.client.meta.events.register(
        "before-call.dynamodb.*", lambda model, **_: reads.update([model.name])
    )
    report = sweep(deps)
    assert report.total("accept:done") == 149
    assert report.total("reject:done") == 1
    final = {c["VpcEndpointId"]: c["VpcEndpointState"] for c in provider.connections()}
    assert final[ids[0]] == "available"
    assert final[ids[1]] == "rejected"
    # 150 service keys + the enrollment = 2 BatchGetItem; the `*` partition = 1 Query; the same
    # again right after the Accept (revalidate.py: an edit meanwhile is undone at once)
    assert reads["BatchGetItem"] == 2 * 2
    # the managed-services index; the `*` partition twice (decide, re-read); and the allow-list
    # reconcile's two partitions (the service's and `*`: sweep/principals.py reads each once)
    assert reads["Query"] == 1 + 2 + 2
