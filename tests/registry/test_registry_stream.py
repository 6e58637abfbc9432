"""Registry edits take effect through the real DynamoDB stream of the registry table (emulator):
stream records -> handlers.registry_stream.process -> allowed principals, converge, revocation."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from approvals import approve_in_slack
from conftest import CONSUMER, OTHER, grant
from vpce_approver.converge import Deps
from vpce_approver.model import WILDCARD_SERVICE, Grant, GrantStatus
from vpce_approver.registry import item_from_grant
from vpce_approver.tables import AuditItem, EscalationItem
from vpce_tools.emulator.world import Consumer, EndpointService, Provider
from vpce_tools.stack import LocalDeployment
from vpce_tools.stream_poller import StreamPoller, registry_poller

ROOT = f"arn:aws:iam::{CONSUMER}:root"
OTHER_ROOT = f"arn:aws:iam::{OTHER}:root"


def state(provider: Provider, vpce_id: str) -> str:
    [conn] = [c for c in provider.connections() if c["VpcEndpointId"] == vpce_id]
    return str(conn["VpcEndpointState"])


def principals(provider: Provider, service_id: str) -> set[str]:
    response = provider.client("ec2").describe_vpc_endpoint_service_permissions(
        ServiceId=service_id
    )
    return {p["Principal"] for p in response["AllowedPrincipals"]}


def put(deps: Deps, g: Grant, by: str = "alice") -> None:
    deps.registry.put(g, by=by, now=datetime.now(UTC))


def audit(subject: str) -> list[AuditItem]:
    return list(AuditItem.query(subject))


def actions(subject: str) -> list[str]:
    return [i.action for i in audit(subject)]


@pytest.fixture
def deps(deployment: LocalDeployment) -> Deps:
    return deployment.deps()


@pytest.fixture
def stream(deployment: LocalDeployment, deps: Deps, service: EndpointService) -> StreamPoller:
    """The registry stream from now on (the service's enrollment is already applied)."""
    return registry_poller(deployment, deps, start="LATEST")


@pytest.fixture
def closed_service(provider: Provider, deployment: LocalDeployment) -> EndpointService:
    """A managed service nobody may request yet (no allowed principals)."""
    svc = provider.create_service(allowed_principals=())
    deployment.enroll(svc, name="ledger")
    return svc


def test_added_grant_accepts_waiting_connection_and_allows_principal(
    deps: Deps,
    stream: StreamPoller,
    service: EndpointService,
    consumer: Consumer,
    provider: Provider,
) -> None:
    vpce = consumer.create_endpoint(service.service_name)
    assert ROOT not in principals(provider, service.service_id)
    put(deps, grant(service.service_id))
    assert stream.drain() == 1
    assert state(provider, vpce) == "available"
    assert ROOT in principals(provider, service.service_id)
    [change, added] = audit(f"grant#{service.service_id}#{CONSUMER}")
    assert (change.action, change.actor, change.trigger) == (
        "grant-added",
        "registry:alice",
        "registry",
    )
    assert change.old is None
    assert change.new.as_dict()["status"] == "allow"
    assert change.new.as_dict()["principals"] == [ROOT]
    assert (added.action, added.outcome) == ("principals-added", "done")
    [accept] = audit(vpce)
    assert (accept.action, accept.trigger, accept.actor) == ("accept", "registry", "registry:alice")


def test_grant_opens_a_closed_service_then_the_notification_accepts(
    deployment: LocalDeployment,
    deps: Deps,
    closed_service: EndpointService,
    consumer: Consumer,
    provider: Provider,
) -> None:
    stream = registry_poller(deployment, deps, start="LATEST")
    with pytest.raises(Exception, match="InvalidServiceName"):
        consumer.create_endpoint(closed_service.service_name)
    put(deps, grant(closed_service.service_id))
    stream.drain()
    assert principals(provider, closed_service.service_id) == {ROOT}
    vpce = consumer.create_endpoint(closed_service.service_name)
    deployment.poller(deps).drain()
    assert state(provider, vpce) == "available"


def test_wildcard_grant_applies_to_every_managed_service(
    deployment: LocalDeployment,
    deps: Deps,
    service: EndpointService,
    closed_service: EndpointService,
    consumer: Consumer,
    provider: Provider,
) -> None:
    unmanaged = provider.create_service(allowed_principals=())
    first = consumer.create_endpoint(service.service_name)
    stream = registry_poller(deployment, deps, start="LATEST")
    put(deps, grant(WILDCARD_SERVICE))
    stream.drain()
    assert ROOT in principals(provider, service.service_id)
    assert principals(provider, closed_service.service_id) == {ROOT}
    assert principals(provider, unmanaged.service_id) == set()
    assert state(provider, first) == "available"
    second = consumer.create_endpoint(closed_service.service_name)
    deployment.poller(deps).drain()
    assert state(provider, second) == "available"


@pytest.mark.parametrize(
    ("revoke", "revoke_default", "revoked"),
    [
        (True, False, True),  # the grant asks for it
        (None, True, True),  # the deployment's default
        (None, False, False),  # off by default: principal removed, connection stays
        (False, True, False),  # the grant opts out of the default
    ],
)
def test_suspend_removes_principal_and_revokes_when_asked(
    deployment: LocalDeployment,
    service: EndpointService,
    consumer: Consumer,
    provider: Provider,
    revoke: bool | None,
    revoke_default: bool,
    revoked: bool,
) -> None:
    deps = deployment.deps(revoke_default=revoke_default)
    stream = registry_poller(deployment, deps, start="LATEST")
    put(deps, grant(service.service_id))
    stream.drain()
    vpce = consumer.create_endpoint(service.service_name)
    deployment.poller(deps).drain()
    assert state(provider, vpce) == "available"

    put(deps, grant(service.service_id, status=GrantStatus.SUSPENDED, revoke=revoke), by="bob")
    stream.drain()
    assert ROOT not in principals(provider, service.service_id)
    assert state(provider, vpce) == ("rejected" if revoked else "available")
    subject = f"grant#{service.service_id}#{CONSUMER}"
    change = next(i for i in audit(subject) if i.action == "grant-changed")
    assert change.actor == "registry:bob"
    assert change.old.as_dict()["status"] == "allow"
    assert change.new.as_dict()["status"] == "suspended"
    assert "status: allow -> suspended" in change.reason
    if revoked:
        reject = [i for i in audit(vpce) if i.code == "revoked"]
        assert [(i.action, i.actor, i.outcome) for i in reject] == [
            ("reject", "registry:bob", "done")
        ]


def test_deny_overrides_wildcard_allow_on_that_service_only(
    deployment: LocalDeployment,
    service: EndpointService,
    closed_service: EndpointService,
    consumer: Consumer,
    provider: Provider,
) -> None:
    deps = deployment.deps()
    stream = registry_poller(deployment, deps, start="LATEST")
    put(deps, grant(WILDCARD_SERVICE))
    stream.drain()
    vpce = consumer.create_endpoint(service.service_name)
    kept = consumer.create_endpoint(closed_service.service_name)
    deployment.poller(deps).drain()
    put(deps, grant(service.service_id, status=GrantStatus.DENY, principals=(), revoke=True))
    stream.drain()
    assert ROOT not in principals(provider, service.service_id)
    assert state(provider, vpce) == "rejected"
    assert principals(provider, closed_service.service_id) == {ROOT}
    assert state(provider, kept) == "available"


def test_principal_still_needed_by_another_live_grant_is_kept(
    deployment: LocalDeployment,
    deps: Deps,
    stream: StreamPoller,
    service: EndpointService,
    consumer: Consumer,
    provider: Provider,
) -> None:
    put(deps, grant(service.service_id, revoke=True))
    put(deps, grant(WILDCARD_SERVICE, revoke=True))
    stream.drain()
    vpce = consumer.create_endpoint(service.service_name)
    deployment.poller(deps).drain()
    assert state(provider, vpce) == "available"
    deps.registry.delete(service.service_id, CONSUMER)
    stream.drain()
    # the * grant still allows the consumer: principal kept, nothing revoked
    assert ROOT in principals(provider, service.service_id)
    assert state(provider, vpce) == "available"
    deps.registry.delete(WILDCARD_SERVICE, CONSUMER)
    stream.drain()
    assert ROOT not in principals(provider, service.service_id)
    assert state(provider, vpce) == "rejected"
    trail = actions(f"grant#{WILDCARD_SERVICE}#{CONSUMER}")
    assert sorted(trail) == ["grant-added", "grant-removed", "principals-removed"]


def test_other_consumers_and_hand_made_entries_are_untouched(
    deps: Deps,
    stream: StreamPoller,
    service: EndpointService,
    provider: Provider,
) -> None:
    provider.allow(service.service_id, OTHER_ROOT)  # set by hand, not by the registry
    put(deps, grant(service.service_id))
    stream.drain()
    deps.registry.delete(service.service_id, CONSUMER)
    stream.drain()
    assert principals(provider, service.service_id) == {"*", OTHER_ROOT}


def test_ttl_expiry_removes_principal_and_revokes(
    deployment: LocalDeployment,
    service: EndpointService,
    consumer: Consumer,
    provider: Provider,
) -> None:
    deps = deployment.deps(revoke_default=True)
    stream = registry_poller(deployment, deps, start="LATEST")
    put(deps, grant(service.service_id, expires_at=datetime.now(UTC) + timedelta(seconds=30)))
    stream.drain()
    vpce = consumer.create_endpoint(service.service_name)
    deployment.poller(deps).drain()
    assert state(provider, vpce) == "available"

    deps.clock = lambda: datetime.now(UTC) + timedelta(minutes=5)  # past the expiry
    assert stream.expire(service.service_id, CONSUMER)  # DynamoDB's TTL deletes the item
    stream.drain()
    subject = f"grant#{service.service_id}#{CONSUMER}"
    expired = next(i for i in audit(subject) if i.action == "grant-expired")
    assert (expired.actor, expired.reason, expired.new) == ("ttl", "expired (TTL deletion)", None)
    assert expired.old.as_dict()["status"] == "allow"
    assert "expires_at" in expired.old.as_dict()
    assert ROOT not in principals(provider, service.service_id)
    assert state(provider, vpce) == "rejected"
    assert [i.actor for i in audit(vpce) if i.code == "revoked"] == ["ttl"]


def test_real_delete_is_a_removal_not_an_expiry(
    deps: Deps, stream: StreamPoller, service: EndpointService
) -> None:
    put(deps, grant(service.service_id))
    stream.drain()
    assert deps.registry.delete(service.service_id, CONSUMER)
    stream.drain()
    subject = f"grant#{service.service_id}#{CONSUMER}"
    removed = next(i for i in audit(subject) if i.action.startswith("grant-removed"))
    assert removed.actor == "registry:alice"  # the last writer (the CLI stamps the remover)
    assert "grant-expired" not in actions(subject)


def recording(stream: StreamPoller) -> list[dict[str, Any]]:
    """Keep every event the poller delivers (to deliver it again)."""
    batches: list[dict[str, Any]] = []
    inner: Callable[[dict[str, Any]], Any] = stream.process

    def record(event: dict[str, Any]) -> Any:
        batches.append(copy.deepcopy(event))
        return inner(event)

    stream.process = record
    return batches


def snapshot(provider: Provider, service_id: str) -> tuple[object, ...]:
    return (
        principals(provider, service_id),
        sorted((c["VpcEndpointId"], c["VpcEndpointState"]) for c in provider.connections()),
        sorted((i.subject, i.sk, i.action, i.reason, i.actor, i.outcome) for i in AuditItem.scan()),
        sorted((e.vpc_endpoint_id, e.state) for e in EscalationItem.scan()),
    )


def test_replayed_batch_changes_nothing(
    deployment: LocalDeployment,
    service: EndpointService,
    consumer: Consumer,
    provider: Provider,
) -> None:
    from vpce_approver.handlers.registry_stream import process

    deps = deployment.deps(revoke_default=True)
    stream = registry_poller(deployment, deps, start="LATEST")
    batches = recording(stream)
    vpce = consumer.create_endpoint(service.service_name)
    put(deps, grant(service.service_id))
    put(deps, grant(WILDCARD_SERVICE, consumer=OTHER))
    stream.drain()
    assert state(provider, vpce) == "available"
    put(deps, grant(service.service_id, status=GrantStatus.SUSPENDED))
    stream.drain()
    assert state(provider, vpce) == "rejected"
    put(deps, grant(service.service_id))
    stream.drain()
    again = consumer.create_endpoint(service.service_name)
    deployment.poller(deps).drain()
    assert state(provider, again) == "available"
    assert len(batches) == 3

    before = snapshot(provider, service.service_id)
    for event in batches:  # Lambda delivers every batch again
        assert process(event, deps) == {"batchItemFailures": []}
    assert snapshot(provider, service.service_id) == before


def test_replayed_revocation_spares_connections_approved_after_it(
    deployment: LocalDeployment,
    service: EndpointService,
    consumer: Consumer,
    provider: Provider,
) -> None:
    from vpce_approver.handlers.registry_stream import process

    deps = deployment.deps(revoke_default=True)
    stream = registry_poller(deployment, deps, start="LATEST")
    batches = recording(stream)
    put(deps, grant(service.service_id))
    put(deps, grant(service.service_id, status=GrantStatus.SUSPENDED))
    stream.drain()
    [event] = batches
    for record in event["Records"]:  # the suspension happened a minute ago
        record["dynamodb"]["ApproximateCreationDateTime"] -= 60
    # a human approves a new connection of the suspended consumer (e.g. from Slack)
    approved = consumer.create_endpoint(service.service_name)
    provider.client("ec2").accept_vpc_endpoint_connections(
        ServiceId=service.service_id, VpcEndpointIds=[approved]
    )
    assert state(provider, approved) == "available"
    assert process(event, deps) == {"batchItemFailures": []}
    assert state(provider, approved) == "available"


def test_malformed_item_is_refused_never_allowed(
    deployment: LocalDeployment,
    deps: Deps,
    closed_service: EndpointService,
    provider: Provider,
    caplog: pytest.LogCaptureFixture,
) -> None:
    stream = registry_poller(deployment, deps, start="LATEST")
    item = item_from_grant(grant(closed_service.service_id), by="mallory", now=datetime.now(UTC))
    item.principals = [OTHER_ROOT]  # another account's principal
    item.save()
    bad_key = item_from_grant(grant(closed_service.service_id), by="x", now=datetime.now(UTC))
    bad_key.consumer = "12345"
    bad_key.save()
    with caplog.at_level(logging.ERROR):
        stream.drain()
    assert principals(provider, closed_service.service_id) == set()
    [refused] = audit(f"grant#{closed_service.service_id}#{CONSUMER}")
    assert (refused.action, refused.outcome, refused.code) == (
        "grant-refused",
        "refused",
        "malformed-grant",
    )
    assert "another account" in refused.reason
    [refused_key] = audit(f"grant#{closed_service.service_id}#12345")
    assert refused_key.action == "grant-refused"
    assert "malformed registry item" in caplog.text or "refusing" in caplog.text


@pytest.mark.parametrize("allow_wildcard", [False, True])
def test_wildcard_principal_only_when_the_deployment_allows_it(
    deployment: LocalDeployment,
    closed_service: EndpointService,
    provider: Provider,
    allow_wildcard: bool,
) -> None:
    deps = deployment.deps(allow_wildcard_principal=allow_wildcard)
    stream = registry_poller(deployment, deps, start="LATEST")
    item = item_from_grant(grant(closed_service.service_id), by="x", now=datetime.now(UTC))
    item.principals = ["*"]
    item.save()
    stream.drain()
    assert principals(provider, closed_service.service_id) == ({"*"} if allow_wildcard else set())
    action = actions(f"grant#{closed_service.service_id}#{CONSUMER}")[0]
    assert action == ("grant-added" if allow_wildcard else "grant-refused")


def test_enrolling_a_service_applies_existing_grants(
    deployment: LocalDeployment, deps: Deps, provider: Provider, consumer: Consumer
) -> None:
    svc = provider.create_service()
    put(deps, grant(svc.service_id))  # granted before the service is managed: nothing happens
    vpce = consumer.create_endpoint(svc.service_name)
    stream = registry_poller(deployment, deps)  # TRIM_HORIZON, as deployed
    stream.drain()
    assert ROOT not in principals(provider, svc.service_id)
    assert state(provider, vpce) == "pendingAcceptance"
    deployment.enroll(svc)
    stream.drain()
    assert ROOT in principals(provider, svc.service_id)
    assert state(provider, vpce) == "available"
    assert "service-enrolled" in actions(f"service#{svc.service_id}")


def test_failed_record_is_reported_and_retried(
    deps: Deps,
    stream: StreamPoller,
    service: EndpointService,
    consumer: Consumer,
    provider: Provider,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    vpce = consumer.create_endpoint(service.service_name)
    calls = {"n": 0}
    real = deps.ec2.modify_principals

    def flaky(*args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("EC2 is throttling")
        real(*args, **kwargs)

    monkeypatch.setattr(deps.ec2, "modify_principals", flaky)
    put(deps, grant(service.service_id))
    put(deps, grant(service.service_id, consumer=OTHER))
    assert stream.poll_once() == 2  # first record failed, second applied
    assert state(provider, vpce) == "pendingAcceptance"
    assert OTHER_ROOT in principals(provider, service.service_id)
    assert stream.poll_once() == 2  # Lambda retries from the failed record on
    assert state(provider, vpce) == "available"
    assert ROOT in principals(provider, service.service_id)
    assert stream.dead == []


def test_persistent_failure_goes_to_the_on_failure_destination(
    deps: Deps,
    stream: StreamPoller,
    service: EndpointService,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("EC2 is down")

    monkeypatch.setattr(deps.ec2, "modify_principals", broken)
    put(deps, grant(service.service_id))
    stream.drain()
    assert len(stream.dead) == 1
    assert stream.invocations == 3  # first try + 2 retries
    assert stream.drain() == 0  # moved on


def test_shadow_mode_records_but_changes_nothing(
    deployment: LocalDeployment,
    service: EndpointService,
    consumer: Consumer,
    provider: Provider,
) -> None:
    deps = deployment.deps(shadow_mode=True)
    stream = registry_poller(deployment, deps, start="LATEST")
    vpce = consumer.create_endpoint(service.service_name)
    put(deps, grant(service.service_id))
    stream.drain()
    assert ROOT not in principals(provider, service.service_id)
    assert state(provider, vpce) == "pendingAcceptance"
    assert "would-principals-added" in actions(f"grant#{service.service_id}#{CONSUMER}")
    assert [i.action for i in audit(vpce)] == ["would-accept"]
    assert list(EscalationItem.scan()) == []


def test_revocation_spares_a_waiting_connection_a_human_approved_after_it(
    deployment: LocalDeployment,
    service: EndpointService,
    consumer: Consumer,
    provider: Provider,
) -> None:
    """The connection existed at the time of the change, but a human approved it in Slack
    afterwards (while the record waited for its retry, or before a replay): that later decision
    stands. The consumer's other connection, accepted by the grant, is revoked."""
    from vpce_approver.handlers.registry_stream import process

    deps = deployment.deps(revoke_default=True)
    stream = registry_poller(deployment, deps, start="LATEST")
    put(deps, grant(service.service_id, max_endpoints=1))
    stream.drain()
    accepted = consumer.create_endpoint(service.service_name)
    deployment.poller(deps).drain()
    waiting = consumer.create_endpoint(service.service_name)
    deployment.poller(deps).drain()
    assert (state(provider, accepted), state(provider, waiting)) == (
        "available",
        "pendingAcceptance",  # over the grant's limit: escalated
    )
    batches = recording(stream)
    deps.registry.delete(service.service_id, CONSUMER)
    stream.drain()
    [event] = batches
    assert state(provider, accepted) == "rejected"
    assert state(provider, waiting) == "pendingAcceptance"  # not live: nothing to revoke yet
    later = datetime.now(UTC) + timedelta(minutes=2)
    assert approve_in_slack(deployment, waiting, later) == "approved"
    assert state(provider, waiting) == "available"

    assert process(event, deps) == {"batchItemFailures": []}  # the record is delivered again
    assert state(provider, waiting) == "available"


def test_revocation_still_rejects_what_a_human_approved_before_it(
    deployment: LocalDeployment,
    service: EndpointService,
    consumer: Consumer,
    provider: Provider,
) -> None:
    """An approval made before the access was taken away does not outlive the revocation."""
    deps = deployment.deps(revoke_default=True)
    stream = registry_poller(deployment, deps, start="LATEST")
    put(deps, grant(service.service_id, max_endpoints=1))
    stream.drain()
    consumer.create_endpoint(service.service_name)
    deployment.poller(deps).drain()
    waiting = consumer.create_endpoint(service.service_name)
    deployment.poller(deps).drain()
    earlier = datetime.now(UTC) - timedelta(minutes=2)
    assert approve_in_slack(deployment, waiting, earlier) == "approved"
    deps.registry.delete(service.service_id, CONSUMER)
    stream.drain()
    assert state(provider, waiting) == "rejected"
