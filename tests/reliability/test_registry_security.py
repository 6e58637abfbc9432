"""Registry security through the real stream (emulator): an item written straight into the table
with a malformed account or ARN is refused by the stream handler (audited grant-refused), never
becomes an allow-list entry and never accepts a connection; `*` principals are synced only when
ALLOW_WILDCARD_PRINCIPAL is set. A throttled ModifyVpcEndpointServicePermissions is retried."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from conftest import CONSUMER, OTHER, grant
from reliability.conftest import Figures, tally
from vpce_approver.converge import converge
from vpce_approver.tables import AuditItem, EscalationItem
from vpce_tools.emulator.world import EndpointService, Provider
from vpce_tools.faults import Injector, check_deployment, no_sleep
from vpce_tools.stack import LocalDeployment
from vpce_tools.stream_poller import registry_poller

ROOT = f"arn:aws:iam::{CONSUMER}:root"


def principals(provider: Provider, service_id: str) -> set[str]:
    response = provider.client("ec2").describe_vpc_endpoint_service_permissions(
        ServiceId=service_id
    )
    return {p["Principal"] for p in response["AllowedPrincipals"]}


def raw_put(deployment: LocalDeployment, item: dict[str, Any]) -> None:
    """Write an item with no validation at all (a console edit, a buggy script)."""
    attrs: dict[str, Any] = {}
    for key, value in item.items():
        if isinstance(value, list):
            attrs[key] = {"L": [{"S": str(v)} for v in value]}
        elif isinstance(value, int):
            attrs[key] = {"N": str(value)}
        else:
            attrs[key] = {"S": str(value)}
    deployment.provider.client("dynamodb").put_item(
        TableName=deployment.settings.registry_table, Item=attrs
    )


@pytest.fixture
def closed(provider: Provider, deployment: LocalDeployment) -> EndpointService:
    """A managed service whose allow-list starts empty."""
    svc = provider.create_service(allowed_principals=())
    deployment.enroll(svc, name="ledger")
    return svc


def base(service_id: str, **changes: Any) -> dict[str, Any]:
    item = {
        "service_id": service_id,
        "consumer": CONSUMER,
        "status": "allow",
        "principals": [ROOT],
        "updated_by": "mallory",
        "updated_at": datetime.now(UTC).isoformat(),
    }
    item.update(changes)
    return item


MALFORMED: dict[str, dict[str, Any]] = {
    "account of 11 digits": {"consumer": "11111111111", "principals": []},
    "account with a letter": {"consumer": "11111111111a", "principals": []},
    "principal of another account": {"principals": [f"arn:aws:iam::{OTHER}:root"]},
    "principal with a path": {"principals": [f"arn:aws:iam::{CONSUMER}:role/team/deployer"]},
    "principal not an ARN": {"principals": ["111111111111"]},
    "principal for another partition's lookalike": {
        "principals": [f"arn:aws:iam::{CONSUMER}:root\nx"]
    },
    "wildcard principal (not enabled)": {"principals": ["*"]},
    "status unknown": {"status": "alow"},
    "max_endpoints not a number": {"max_endpoints": "lots"},
    "region malformed": {"regions": ["mars-1"]},
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_registry_item_is_refused_and_never_allowed(
    deployment: LocalDeployment,
    provider: Provider,
    closed: EndpointService,
    figures: Figures,
    case: str,
) -> None:
    deps = deployment.deps()
    stream = registry_poller(deployment, deps, start="LATEST")
    provider.allow(closed.service_id, ROOT)  # so the consumer can request a connection at all
    provider.consumer(CONSUMER).create_endpoint(closed.service_name)
    provider.client("ec2").modify_vpc_endpoint_service_permissions(
        ServiceId=closed.service_id, RemoveAllowedPrincipals=[ROOT]
    )
    deployment.poller(deps).drain()
    item = base(closed.service_id, **MALFORMED[case])
    raw_put(deployment, item)
    assert stream.drain() == 1  # handled once: refused, not retried
    assert principals(provider, closed.service_id) == set()  # nothing reached the allow-list
    subject = f"grant#{closed.service_id}#{item['consumer']}"
    refused = [i for i in AuditItem.query(subject) if i.action == "grant-refused"]
    assert len(refused) == 1
    assert refused[0].outcome == "refused"
    verdict = check_deployment(provider, [closed.service_id])
    verdict.assert_sound()
    assert verdict.accepted == 0
    assert verdict.escalated == 1
    figures.record(
        load="1 registry item written around the CLI + 1 waiting connection",
        fault=f"registry item: {case}",
        result=f"stream handler refused it (audited), allow-list unchanged; {tally(verdict)}",
        verdict=verdict,
    )


@pytest.mark.parametrize("enabled", [False, True])
def test_wildcard_principal_only_when_configured(
    deployment: LocalDeployment,
    provider: Provider,
    closed: EndpointService,
    figures: Figures,
    enabled: bool,
) -> None:
    deps = deployment.deps(allow_wildcard_principal=enabled)
    stream = registry_poller(deployment, deps, start="LATEST")
    raw_put(deployment, base(closed.service_id, principals=["*"]))
    stream.drain()
    synced = principals(provider, closed.service_id)
    assert ("*" in synced) is enabled
    refused = [
        i
        for i in AuditItem.query(f"grant#{closed.service_id}#{CONSUMER}")
        if i.action == "grant-refused"
    ]
    assert bool(refused) is not enabled
    figures.record(
        load="1 allow grant with principals ['*']",
        fault=f"ALLOW_WILDCARD_PRINCIPAL={str(enabled).lower()}",
        result=f"allow-list after sync: {sorted(synced) or '[]'}",
        lost=0,
        wrong_accepts=0 if ("*" in synced) is enabled else 1,
    )


def test_throttled_permission_sync_is_retried(
    deployment: LocalDeployment, provider: Provider, closed: EndpointService, figures: Figures
) -> None:
    deps = deployment.deps()
    stream = registry_poller(deployment, deps, start="LATEST")
    with Injector(deps.ec2.client) as faults, no_sleep():
        fault = faults.fail("ModifyVpcEndpointServicePermissions", "RequestLimitExceeded", times=10)
        raw_put(deployment, base(closed.service_id))
        stream.drain()
    assert fault.injected == 10  # more than botocore's retries: the stream record was retried
    assert principals(provider, closed.service_id) == {ROOT}
    vpce = provider.consumer(CONSUMER).create_endpoint(closed.service_name)
    deployment.poller(deps).drain()
    verdict = check_deployment(provider, [closed.service_id])
    verdict.assert_sound()
    assert verdict.accepted == 1
    assert vpce
    figures.record(
        load="1 allow grant",
        fault="ModifyVpcEndpointServicePermissions: 10 x RequestLimitExceeded",
        result=f"stream record retried, principal synced; {tally(verdict)}",
        verdict=verdict,
    )


def test_wrongly_typed_item_blocks_no_other_consumer(
    deployment: LocalDeployment, provider: Provider, service: EndpointService, figures: Figures
) -> None:
    """Regression: an item whose attribute has the wrong DynamoDB type (max_endpoints as a
    string) made pynamodb's BatchGetItem raise for the whole read, so every consumer converged
    with it stayed pending (and its records went to the DLQ). Now it is one malformed item."""
    deps = deployment.deps()
    raw_put(deployment, base(service.service_id, max_endpoints="lots"))
    deps.registry.put(grant(service.service_id, consumer=OTHER), by="test", now=datetime.now(UTC))
    [bad] = provider.consumer(CONSUMER).create_endpoints(service.service_name, 1)
    [good] = provider.consumer(OTHER).create_endpoints(service.service_name, 1)
    poller = deployment.poller(deps)
    poller.drain()
    assert deployment.dlq_depth() == 0
    report = converge(service.service_id, deps)  # one converge naming both consumers
    assert set(report.registry_errors) == {CONSUMER}
    assert EscalationItem.get(bad).code == "malformed-grant"
    verdict = check_deployment(provider, [service.service_id])
    verdict.assert_sound()
    assert verdict.accepted == 1
    assert good in {
        c["VpcEndpointId"]
        for c in provider.connections()
        if c["VpcEndpointState"] in ("pending", "available")
    }
    figures.record(
        load="2 consumers converged together, one with a wrongly typed registry item",
        fault="registry item max_endpoints stored as a string (S, not N)",
        result=f"that consumer escalated as malformed-grant, the other accepted; {tally(verdict)}",
        verdict=verdict,
    )
