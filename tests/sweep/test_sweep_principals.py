"""Allowed principals are level-triggered (issue 11 §1): the sweep reconciles every managed
service's allow-list against the registry, whatever the registry stream did or did not deliver;
it removes only what this deployment added; the audit trail stays small per record (§4)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from conftest import CONSUMER, OTHER, THIRD, MetricsRecorder, grant
from vpce_approver import ownership
from vpce_approver.converge import Deps
from vpce_approver.model import WILDCARD_SERVICE, GrantStatus
from vpce_approver.sweep import sweep
from vpce_approver.tables import AuditItem, EscalationItem, RegistryItem
from vpce_tools.emulator.world import Consumer, EndpointService, Provider
from vpce_tools.stack import LocalDeployment
from vpce_tools.stream_poller import StreamPoller, registry_poller

ROOT = f"arn:aws:iam::{CONSUMER}:root"
OTHER_ROOT = f"arn:aws:iam::{OTHER}:root"
THIRD_ROOT = f"arn:aws:iam::{THIRD}:root"


def principals(provider: Provider, service_id: str) -> set[str]:
    response = provider.client("ec2").describe_vpc_endpoint_service_permissions(
        ServiceId=service_id
    )
    return {p["Principal"] for p in response["AllowedPrincipals"]}


def remove_by_hand(provider: Provider, service_id: str, *principal: str) -> None:
    provider.client("ec2").modify_vpc_endpoint_service_permissions(
        ServiceId=service_id, RemoveAllowedPrincipals=list(principal)
    )


def put(deps: Deps, *grants: Any) -> None:
    for g in grants:
        deps.registry.put(g, by="test", now=datetime.now(UTC))


def service_audit(service_id: str) -> list[AuditItem]:
    return list(AuditItem.query(f"service#{service_id}"))


@pytest.fixture
def deps(deployment: LocalDeployment) -> Deps:
    return deployment.deps(notification_topic_arn=deployment.topic_arn)


@pytest.fixture
def closed(provider: Provider, deployment: LocalDeployment) -> EndpointService:
    """A managed service whose allow-list starts empty."""
    svc = provider.create_service(allowed_principals=())
    deployment.enroll(svc, name="ledger")
    return svc


@pytest.fixture
def stream(deployment: LocalDeployment, deps: Deps, closed: EndpointService) -> StreamPoller:
    """The registry stream from now on (the enrollment is already applied)."""
    return registry_poller(deployment, deps, start="LATEST")


def test_grant_whose_stream_record_never_arrived_is_allowed_after_one_sweep(
    deps: Deps, closed: EndpointService, provider: Provider, consumer: Consumer
) -> None:
    # Written to the registry, but no stream record is ever processed (a batch in the DLQ).
    put(deps, grant(closed.service_id), grant(WILDCARD_SERVICE, consumer=OTHER))
    assert principals(provider, closed.service_id) == set()
    with pytest.raises(Exception, match="InvalidServiceName"):
        consumer.create_endpoint(closed.service_name)

    report = sweep(deps)

    assert principals(provider, closed.service_id) == {ROOT, OTHER_ROOT}  # `*` grants too
    [allow] = report.allow_lists
    assert (allow.missing, allow.extra, allow.outcome) == ((ROOT, OTHER_ROOT), (), "fixed")
    assert report.summary()["principals_missing"] == 2
    consumer.create_endpoint(closed.service_name)  # the consumer may request now
    [added] = service_audit(closed.service_id)
    assert (added.action, added.actor, added.trigger, added.outcome) == (
        "principals-added",
        "sweep",
        "sweep",
        "done",
    )
    assert added.new.as_dict() == {"added": [ROOT, OTHER_ROOT]}
    # a second sweep finds nothing to do and writes nothing
    again = sweep(deps)
    assert again.allow_lists[0].outcome == "in-sync"
    assert len(service_audit(closed.service_id)) == 1


def test_principal_removed_by_hand_in_the_console_is_re_added(
    deps: Deps, stream: StreamPoller, closed: EndpointService, provider: Provider
) -> None:
    put(deps, grant(closed.service_id))
    stream.drain()
    assert principals(provider, closed.service_id) == {ROOT}
    remove_by_hand(provider, closed.service_id, ROOT)
    sweep(deps)
    assert principals(provider, closed.service_id) == {ROOT}


def test_removes_what_it_added_once_no_live_grant_needs_it(
    deployment: LocalDeployment,
    deps: Deps,
    stream: StreamPoller,
    closed: EndpointService,
    provider: Provider,
) -> None:
    put(deps, grant(closed.service_id), grant(closed.service_id, consumer=OTHER))
    stream.drain()
    assert principals(provider, closed.service_id) == {ROOT, OTHER_ROOT}
    # Both grants go away, but the stream records are lost; then a redeploy: fresh clients,
    # fresh model bindings. Ownership is in DynamoDB, not in the process.
    deps.registry.delete(closed.service_id, CONSUMER)
    put(deps, grant(closed.service_id, consumer=OTHER, status=GrantStatus.SUSPENDED))
    ownership.OwnedPrincipalItem._connection = None
    fresh = deployment.deps(notification_topic_arn=deployment.topic_arn)

    report = sweep(fresh)

    assert principals(provider, closed.service_id) == set()
    assert report.allow_lists[0].extra == (ROOT, OTHER_ROOT)
    assert ownership.owned(closed.service_id, [ROOT, OTHER_ROOT]) == set()  # released
    [removed] = [i for i in service_audit(closed.service_id) if i.action == "principals-removed"]
    assert removed.new.as_dict() == {"removed": [ROOT, OTHER_ROOT]}


def test_the_providers_own_principals_survive_the_sweep_and_the_stream(
    deps: Deps, stream: StreamPoller, closed: EndpointService, provider: Provider
) -> None:
    # The provider lists two principals by hand; a grant later names one of them too.
    provider.allow(closed.service_id, ROOT, THIRD_ROOT)
    put(deps, grant(closed.service_id))
    stream.drain()
    sweep(deps)
    assert ownership.owned(closed.service_id, [ROOT, THIRD_ROOT]) == set()  # never claimed
    # The grant is removed through the stream: the stream path leaves the provider's entry.
    deps.registry.delete(closed.service_id, CONSUMER)
    stream.drain()
    assert principals(provider, closed.service_id) == {ROOT, THIRD_ROOT}
    # And the sweep leaves both, counting them as not its own.
    report = sweep(deps)
    assert principals(provider, closed.service_id) == {ROOT, THIRD_ROOT}
    allow = report.allow_lists[0]
    assert (allow.extra, allow.foreign, allow.outcome) == ((), 2, "in-sync")


def test_the_stream_path_records_ownership_of_what_it_adds(
    deps: Deps, stream: StreamPoller, closed: EndpointService
) -> None:
    put(deps, grant(closed.service_id))
    stream.drain()
    [item] = [i for i in EscalationItem.scan() if str(i.vpc_endpoint_id).startswith("#principal#")]
    assert item.vpc_endpoint_id == f"#principal#{closed.service_id}#{ROOT}"
    assert ownership.owned(closed.service_id, [ROOT]) == {ROOT}
    # not an escalation: the ownership record is never in the open-escalations index
    assert list(deps.escalations.open_items()) == []


@pytest.mark.parametrize("mode", ["dry-run", "shadow"])
def test_dry_run_and_shadow_mode_report_and_change_nothing(
    mode: str,
    deployment: LocalDeployment,
    deps: Deps,
    stream: StreamPoller,
    closed: EndpointService,
    provider: Provider,
) -> None:
    put(deps, grant(closed.service_id, consumer=OTHER))
    stream.drain()  # OTHER_ROOT added (and owned)
    deps.registry.delete(closed.service_id, OTHER)  # lost record: OTHER_ROOT is now extra
    put(deps, grant(closed.service_id))  # lost record: ROOT is missing
    if mode == "shadow":
        report = sweep(deployment.deps(shadow_mode=True))
    else:
        report = sweep(deps, dry_run=True)
    assert principals(provider, closed.service_id) == {OTHER_ROOT}
    allow = report.allow_lists[0]
    assert (allow.missing, allow.extra, allow.outcome) == ((ROOT,), (OTHER_ROOT,), "would-fix")
    assert ownership.owned(closed.service_id, [ROOT, OTHER_ROOT]) == {OTHER_ROOT}
    trail = {i.action: i.new.as_dict() for i in service_audit(closed.service_id)}
    assert trail == {
        "would-principals-added": {"added": [ROOT]},
        "would-principals-removed": {"removed": [OTHER_ROOT]},
    }


@pytest.mark.parametrize("allow_wildcard", [False, True])
def test_wildcard_principal_only_when_the_deployment_allows_it(
    allow_wildcard: bool,
    deployment: LocalDeployment,
    closed: EndpointService,
    provider: Provider,
) -> None:
    deps = deployment.deps(allow_wildcard_principal=allow_wildcard)
    item = RegistryItem(
        closed.service_id, CONSUMER, status="allow", principals=["*"], updated_by="t"
    )
    item.save()  # written around the CLI (which refuses `*` without the setting)
    sweep(deps)
    assert principals(provider, closed.service_id) == ({"*"} if allow_wildcard else set())


def test_a_malformed_item_is_no_grant_for_the_allow_list_either(
    deps: Deps, stream: StreamPoller, closed: EndpointService, provider: Provider
) -> None:
    put(deps, grant(closed.service_id))
    stream.drain()
    # The grant is overwritten around the CLI with a wrongly typed field (no stream processed).
    RegistryItem(closed.service_id, CONSUMER, status="allow-ish", principals=[ROOT]).save()
    report = sweep(deps)
    # as on the stream path: bad data only narrows who may request (nobody is disconnected)
    assert principals(provider, closed.service_id) == set()
    allow = report.allow_lists[0]
    assert (allow.missing, allow.extra, allow.outcome) == ((), (ROOT,), "fixed")


def test_an_allow_list_failure_is_reported_and_connections_still_converge(
    deployment: LocalDeployment,
    deps: Deps,
    service: EndpointService,
    consumer: Consumer,
    provider: Provider,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    put(deps, grant(service.service_id))
    vpce = consumer.create_endpoint(service.service_name)
    provider.client("sqs").purge_queue(QueueUrl=deployment.queue_url)

    def denied(*_: Any, **__: Any) -> None:
        raise RuntimeError("UnauthorizedOperation")

    monkeypatch.setattr(deps.ec2, "modify_principals", denied)
    report = sweep(deps)
    assert report.errors == {
        f"{service.service_id} allowed principals": "failed:RuntimeError: UnauthorizedOperation"
    }
    [conn] = [c for c in provider.connections() if c["VpcEndpointId"] == vpce]
    assert conn["VpcEndpointState"] == "available"


def test_metrics_count_allow_list_drift(
    deployment: LocalDeployment, closed: EndpointService, recorder: MetricsRecorder
) -> None:
    deps = deployment.deps(metrics=recorder)
    put(deps, grant(closed.service_id), grant(closed.service_id, consumer=OTHER))
    sweep(deps)
    assert recorder.values["PrincipalsAdded"] == 2
    assert recorder.values["AllowListDrift"] == 2
