"""OU / organization grants end to end on the emulator, with the organization held in a
StaticDirectory (the AWS adapter is tested in tests/organization/test_org_*.py): the
registry stream, converge, the sweep's membership reconcile, revocation and the fail-closed path
(issue 15, "Membership changes take effect")."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from conftest import CONSUMER, OTHER, THIRD, grant
from vpce_approver.converge import Deps, converge
from vpce_approver.membership import MembershipChange, StaticDirectory
from vpce_approver.model import GrantStatus, Membership, MemberState, Reason
from vpce_approver.sweep import sweep
from vpce_approver.tables import AuditItem, EscalationItem
from vpce_tools.emulator.world import EndpointService, Provider
from vpce_tools.stack import LocalDeployment
from vpce_tools.stream_poller import StreamPoller, registry_poller

ORG = "o-abcdefghij"
PROD = "ou-ab12-prod0001"
WORKLOADS = "ou-ab12-work0001"
SANDBOX = "ou-ab12-sand0001"
FOURTH = "444444444444"


def root(account: str) -> str:
    return f"arn:aws:iam::{account}:root"


def principals(provider: Provider, service_id: str) -> set[str]:
    response = provider.client("ec2").describe_vpc_endpoint_service_permissions(
        ServiceId=service_id
    )
    return {p["Principal"] for p in response["AllowedPrincipals"]}


def state(provider: Provider, service_id: str, vpce_id: str) -> str:
    response = provider.client("ec2").describe_vpc_endpoint_connections(
        Filters=[{"Name": "vpc-endpoint-id", "Values": [vpce_id]}]
    )
    [conn] = [c for c in response["VpcEndpointConnections"] if c["ServiceId"] == service_id]
    return str(conn["VpcEndpointState"])


def ou_grant(service_id: str, scope: str, **kw: object) -> object:
    kw.setdefault("principals", ())
    return grant(service_id, consumer=scope, **kw)


@pytest.fixture
def org() -> StaticDirectory:
    """CONSUMER and OTHER in workloads/prod, THIRD in sandbox; FOURTH is outside."""
    return StaticDirectory(
        ORG,
        {
            CONSUMER: (PROD, WORKLOADS),
            OTHER: (PROD, WORKLOADS),
            THIRD: (SANDBOX,),
        },
    )


@pytest.fixture
def deps(deployment: LocalDeployment, org: StaticDirectory) -> Deps:
    deps = deployment.deps(notification_topic_arn=deployment.topic_arn)
    deps.registry.directory = org
    return deps


@pytest.fixture
def closed(provider: Provider, deployment: LocalDeployment) -> EndpointService:
    """A managed service whose allow-list starts empty."""
    svc = provider.create_service(allowed_principals=())
    deployment.enroll(svc, name="ledger")
    return svc


@pytest.fixture
def stream(deployment: LocalDeployment, deps: Deps, closed: EndpointService) -> StreamPoller:
    return registry_poller(deployment, deps, start="LATEST")


def put(deps: Deps, *grants: object) -> None:
    for g in grants:
        deps.registry.put(g, by="test", now=datetime.now(UTC))  # type: ignore[arg-type]


def test_ou_grant_onboards_every_member_and_nobody_else(
    deps: Deps, stream: StreamPoller, closed: EndpointService, provider: Provider
) -> None:
    put(deps, ou_grant(closed.service_id, WORKLOADS))
    stream.drain()

    # every member of workloads (nested prod included) may request; sandbox and outsiders not
    assert principals(provider, closed.service_id) == {root(CONSUMER), root(OTHER)}
    with pytest.raises(Exception, match="InvalidServiceName"):
        provider.consumer(THIRD).create_endpoint(closed.service_name)

    vpce = provider.consumer(CONSUMER).create_endpoint(closed.service_name)
    report = converge(closed.service_id, deps)
    assert report.accepted == [vpce]
    [decision] = [a for a in AuditItem.query(vpce) if a.action == "accept"]
    assert WORKLOADS in (decision.reason or "")
    assert f"{ORG} / {WORKLOADS} / {PROD}" in (decision.reason or "")


def test_principal_role_puts_the_members_role_on_the_allow_list(
    deps: Deps, stream: StreamPoller, closed: EndpointService, provider: Provider
) -> None:
    put(deps, ou_grant(closed.service_id, PROD, principal_role="workload-api"))
    stream.drain()
    assert principals(provider, closed.service_id) == {
        f"arn:aws:iam::{CONSUMER}:role/workload-api",
        f"arn:aws:iam::{OTHER}:role/workload-api",
    }


def test_pending_connections_of_members_are_accepted_when_the_ou_grant_lands(
    deps: Deps, stream: StreamPoller, provider: Provider, deployment: LocalDeployment
) -> None:
    svc = provider.create_service(allowed_principals=(root(CONSUMER), root(THIRD)))
    deployment.enroll(svc, name="open")
    stream.drain()
    member = provider.consumer(CONSUMER).create_endpoint(svc.service_name)
    elsewhere = provider.consumer(THIRD).create_endpoint(svc.service_name)

    put(deps, ou_grant(svc.service_id, ORG, status=GrantStatus.ALLOW))
    put(deps, ou_grant(svc.service_id, SANDBOX, status=GrantStatus.DENY))
    stream.drain()

    assert state(provider, svc.service_id, member) in {"pending", "available"}
    assert state(provider, svc.service_id, elsewhere) == "rejected"  # deny at the OU wins


def test_a_new_account_in_a_granted_ou_is_onboarded_by_one_sweep_with_no_registry_edit(
    deps: Deps,
    stream: StreamPoller,
    closed: EndpointService,
    provider: Provider,
    org: StaticDirectory,
) -> None:
    put(deps, ou_grant(closed.service_id, PROD))
    stream.drain()
    assert root(FOURTH) not in principals(provider, closed.service_id)

    org.move(FOURTH, (PROD, WORKLOADS))  # created in / moved into workloads/prod
    report = sweep(deps)

    assert root(FOURTH) in principals(provider, closed.service_id)
    assert report.membership is not None
    vpce = provider.consumer(FOURTH).create_endpoint(closed.service_name)
    assert converge(closed.service_id, deps).accepted == [vpce]


def test_an_account_moved_out_loses_its_entry_and_its_next_connection_is_not_accepted(
    deps: Deps,
    stream: StreamPoller,
    closed: EndpointService,
    provider: Provider,
    org: StaticDirectory,
) -> None:
    put(deps, ou_grant(closed.service_id, PROD))
    stream.drain()
    live = provider.consumer(OTHER).create_endpoint(closed.service_name)
    assert converge(closed.service_id, deps).accepted == [live]
    waiting = provider.consumer(OTHER).create_endpoint(closed.service_name)

    org.move(OTHER, (SANDBOX,))
    report = sweep(deps)

    assert root(OTHER) not in principals(provider, closed.service_id)
    assert root(CONSUMER) in principals(provider, closed.service_id)
    assert state(provider, closed.service_id, waiting) == "pendingAcceptance"
    assert EscalationItem.get(waiting).code == Reason.NO_GRANT.value
    # revocation is opt-in (REVOKE_DEFAULT off here): the live one is drift, reported, kept
    assert [d.vpc_endpoint_id for d in report.drift] == [live]
    assert state(provider, closed.service_id, live) == "available"


def test_removing_an_ou_grant_with_revoke_rejects_members_without_a_grant_of_their_own(
    deps: Deps, stream: StreamPoller, closed: EndpointService, provider: Provider
) -> None:
    put(
        deps,
        ou_grant(closed.service_id, PROD, revoke=True),
        grant(closed.service_id, consumer=CONSUMER),
    )
    stream.drain()
    mine = provider.consumer(CONSUMER).create_endpoint(closed.service_name)
    theirs = provider.consumer(OTHER).create_endpoint(closed.service_name)
    assert sorted(converge(closed.service_id, deps).accepted) == sorted([mine, theirs])

    deps.registry.remove(closed.service_id, PROD, by="alice")
    stream.drain()

    assert state(provider, closed.service_id, theirs) == "rejected"
    assert state(provider, closed.service_id, mine) == "available"  # its own grant stands
    assert principals(provider, closed.service_id) == {root(CONSUMER)}
    [record] = [a for a in AuditItem.query(theirs) if a.code == "revoked"]
    assert (record.actor, record.outcome, record.consumer) == ("registry:alice", "done", OTHER)


def test_unreadable_organization_never_accepts_on_an_ou_grant_and_strips_nothing(
    deps: Deps,
    stream: StreamPoller,
    closed: EndpointService,
    provider: Provider,
    org: StaticDirectory,
) -> None:
    put(deps, ou_grant(closed.service_id, PROD))
    stream.drain()
    before = principals(provider, closed.service_id)
    vpce = provider.consumer(CONSUMER).create_endpoint(closed.service_name)

    org.unreadable = "AccessDeniedException: not authorized to ListParents"
    report = converge(closed.service_id, deps)
    swept = sweep(deps)

    assert report.accepted == []
    [outcome] = report.outcomes
    assert outcome.decision.code is Reason.MEMBERSHIP_UNKNOWN
    assert "AccessDeniedException" in outcome.decision.reason
    assert EscalationItem.get(vpce).code == Reason.MEMBERSHIP_UNKNOWN.value
    assert principals(provider, closed.service_id) == before  # nothing removed on a guess
    assert swept.errors["organization"].startswith("AccessDeniedException")
    assert swept.allow_lists[0].incomplete


@dataclass
class StaleDirectory:
    """A container's cache: answers from `cached` until confirm() sees the recorded epoch."""

    cached: dict[str, tuple[str, ...]]
    truth: dict[str, tuple[str, ...]]
    recorded: int = 1
    built_under: int = 0
    asked: list[str] = field(default_factory=list)

    def memberships(self, accounts: Iterable[str]) -> dict[str, Membership]:
        out = {}
        for account in accounts:
            self.asked.append(account)
            path = self.cached.get(account)
            out[account] = (
                Membership(account, MemberState.MEMBER, ORG, path)
                if path is not None
                else Membership.outside(account, ORG)
            )
        return out

    def confirm(self) -> bool:
        if self.built_under >= self.recorded:
            return True
        self.cached, self.built_under = dict(self.truth), self.recorded
        return False

    def members(self, scope: str) -> frozenset[str] | None:
        return frozenset(a for a, p in self.cached.items() if scope in p)

    def refresh(self, *, record: bool = True) -> MembershipChange:
        return MembershipChange(epoch=self.recorded)


def test_a_membership_the_deployment_knows_is_stale_is_never_used_to_accept(
    deps: Deps,
    stream: StreamPoller,
    closed: EndpointService,
    provider: Provider,
    org: StaticDirectory,
) -> None:
    put(deps, ou_grant(closed.service_id, PROD))
    stream.drain()
    vpce = provider.consumer(OTHER).create_endpoint(closed.service_name)
    # This container cached OTHER in prod; a sweep elsewhere has since recorded its move out.
    deps.registry.directory = StaleDirectory(
        cached={OTHER: (PROD, WORKLOADS)}, truth={OTHER: (SANDBOX,)}
    )

    report = converge(closed.service_id, deps)

    assert report.accepted == []
    [outcome] = report.outcomes
    assert outcome.connection.vpc_endpoint_id == vpce
    assert outcome.decision.code is Reason.NO_GRANT


def test_an_ou_grants_history_is_found_by_its_ou(
    deps: Deps, stream: StreamPoller, closed: EndpointService
) -> None:
    put(deps, ou_grant(closed.service_id, PROD, note="payments onboarding"))
    stream.drain()
    deps.registry.remove(closed.service_id, PROD, by="alice")
    stream.drain()
    history = list(AuditItem.by_consumer.query(PROD))
    # (within one second the sort key does not order them; remove stamps who removes it first)
    actions = {a.action for a in history if a.action.startswith("grant-")}
    assert {"grant-added", "grant-removed"} <= actions
    assert {a.actor for a in history if a.action == "grant-removed"} == {"registry:alice"}
