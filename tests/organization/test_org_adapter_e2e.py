"""The Organizations adapter in the decision path, end to end on the emulator: moto's
Organizations is the truth, two containers (the sweep's and the notification handler's) each
hold their own OrganizationsDirectory, and nobody edits the registry."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from vpce_approver.converge import Deps, converge
from vpce_approver.model import Grant, GrantStatus, Reason
from vpce_approver.organization import directory
from vpce_approver.sweep import sweep
from vpce_tools.emulator.world import EndpointService, Provider
from vpce_tools.stack import LocalDeployment
from vpce_tools.stream_poller import StreamPoller, registry_poller

from .orgkit import Factory, Org


def principals(provider: Provider, service_id: str) -> set[str]:
    response = provider.client("ec2").describe_vpc_endpoint_service_permissions(
        ServiceId=service_id
    )
    return {p["Principal"] for p in response["AllowedPrincipals"]}


def container(deployment: LocalDeployment, make_directory: Factory) -> Deps:
    deps = deployment.deps(notification_topic_arn=deployment.topic_arn)
    deps.registry.directory, _ = make_directory()
    return deps


@pytest.fixture
def closed(provider: Provider, deployment: LocalDeployment) -> EndpointService:
    svc = provider.create_service(allowed_principals=())
    deployment.enroll(svc, name="ledger")
    return svc


@pytest.fixture
def sweeper(deployment: LocalDeployment, make_directory: Factory) -> Deps:
    return container(deployment, make_directory)


@pytest.fixture
def notifier(deployment: LocalDeployment, make_directory: Factory) -> Deps:
    return container(deployment, make_directory)


@pytest.fixture
def stream(deployment: LocalDeployment, sweeper: Deps, closed: EndpointService) -> StreamPoller:
    return registry_poller(deployment, sweeper, start="LATEST")


def ou_grant(deps: Deps, service_id: str, scope: str) -> None:
    deps.registry.put(Grant(service_id, scope, GrantStatus.ALLOW), by="test", now=datetime.now(UTC))


def test_the_factory_builds_a_directory_from_settings(org: Org, deployment: LocalDeployment):
    built = directory(deployment.settings)
    assert built.max_age == deployment.settings.membership_max_age
    assert built.epochs is not None
    assert built.memberships([org.account()]).popitem()[1].known


def test_a_new_account_created_in_a_granted_ou_connects_and_is_accepted(
    org: Org,
    sweeper: Deps,
    notifier: Deps,
    stream: StreamPoller,
    closed: EndpointService,
    provider: Provider,
):
    prod = org.ou("prod", org.ou("workloads"))
    ou_grant(sweeper, closed.service_id, prod)
    stream.drain()
    assert converge(closed.service_id, notifier).accepted == []  # the notifier's cache warms
    assert sweep(sweeper).membership.epoch == 1  # type: ignore[union-attr]  # the baseline

    account = org.account(prod)  # `aws organizations create-account` + `move-account`
    report = sweep(sweeper)

    assert report.membership is not None
    assert report.membership.joined == (account,)
    assert f"arn:aws:iam::{account}:root" in principals(provider, closed.service_id)
    vpce = provider.consumer(account).create_endpoint(closed.service_name)
    assert converge(closed.service_id, notifier).accepted == [vpce]


def test_a_moved_out_account_is_not_accepted_by_a_container_that_cached_it_inside(
    org: Org,
    sweeper: Deps,
    notifier: Deps,
    stream: StreamPoller,
    closed: EndpointService,
    provider: Provider,
):
    prod, sandbox = org.ou("prod"), org.ou("sandbox")
    account = org.account(prod)
    ou_grant(sweeper, closed.service_id, prod)
    stream.drain()
    sweep(sweeper)
    first = provider.consumer(account).create_endpoint(closed.service_name)
    assert converge(closed.service_id, notifier).accepted == [first]  # cached: in prod
    waiting = provider.consumer(account).create_endpoint(closed.service_name)

    org.move(account, sandbox)
    sweep(sweeper)  # records the move (a new epoch)

    report = converge(closed.service_id, notifier)  # within its max_age, but known stale
    assert report.accepted == []
    [outcome] = [o for o in report.outcomes if o.connection.vpc_endpoint_id == waiting]
    assert outcome.decision.code is Reason.NO_GRANT
