"""`vpce-approver doctor` and `vpce-approver sweep` show allow-list drift (issue 11 §1): missing
principals a live grant needs, extra ones this deployment added and no live grant needs."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from cli_runner import Cli, cli_fixture  # noqa: F401 - provides the `cli` fixture

from conftest import CONSUMER, OTHER, THIRD, grant
from vpce_approver.converge import Deps
from vpce_approver.sweep import sweep
from vpce_tools.emulator.world import EndpointService, Provider
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


def put(deps: Deps, *grants: Any) -> None:
    for g in grants:
        deps.registry.put(g, by="test", now=datetime.now(UTC))


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
    return registry_poller(deployment, deps, start="LATEST")


def test_doctor_shows_allow_list_drift(
    cli: Cli,
    deployment: LocalDeployment,
    deps: Deps,
    stream: StreamPoller,
    closed: EndpointService,
    provider: Provider,
) -> None:
    put(deps, grant(closed.service_id, consumer=OTHER))
    stream.drain()
    deps.registry.delete(closed.service_id, OTHER)  # lost: OTHER_ROOT is extra
    put(deps, grant(closed.service_id))  # lost: ROOT is missing
    provider.allow(closed.service_id, THIRD_ROOT)  # the provider's own
    _, out, _ = cli("doctor", closed.service_id, "--format", "json")
    got = {c["name"]: (c["verdict"], c["detail"]) for c in json.loads(out)["checks"]}
    verdict, detail = got["allowed principals"]
    assert verdict == "warn"
    assert f"missing 1 a live grant needs: {ROOT}" in detail
    assert f"extra 1 this deployment added and no live grant needs: {OTHER_ROOT}" in detail
    assert "1 not added by this deployment (left alone)" in detail

    sweep(deps)
    _, out, _ = cli("doctor", closed.service_id, "--format", "json")
    got = {c["name"]: (c["verdict"], c["detail"]) for c in json.loads(out)["checks"]}
    assert got["allowed principals"][0] == "ok"


def test_cli_sweep_reports_allow_list_drift(
    cli: Cli, deps: Deps, closed: EndpointService, provider: Provider
) -> None:
    put(deps, grant(closed.service_id))
    code, out, _ = cli("sweep", "--dry-run", "-q")
    assert code == 0
    assert f"allowed principals of {closed.service_id}: missing 1 ['{ROOT}']" in out
    assert "-> would-fix" in out
    assert principals(provider, closed.service_id) == set()
    code, out, _ = cli("sweep", "-q", "--format", "json")
    [svc] = json.loads(out)["per_service"]
    assert svc["allow_list"]["outcome"] == "fixed"
    assert principals(provider, closed.service_id) == {ROOT}
