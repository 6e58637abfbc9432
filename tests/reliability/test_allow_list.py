"""Allowed principals converge like connections (issue 11 §1): whatever happened to the registry
stream (a batch in its DLQ) or to the allow-list (edited by hand in the console), one sweep puts
back what live allow grants need and takes away only what this deployment added; the provider's
own entries survive. Then every consumer connects and the deployment is judged as usual."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from botocore.exceptions import ClientError

from conftest import grant
from reliability.conftest import Figures, tally
from vpce_approver.model import WILDCARD_SERVICE, GrantStatus
from vpce_approver.sweep import sweep
from vpce_tools.emulator.world import Provider
from vpce_tools.faults import Injector, check_deployment, no_sleep
from vpce_tools.stack import LocalDeployment
from vpce_tools.stream_poller import registry_poller

ALLOWED = [f"{600000000000 + i}" for i in range(10)]  # service grants
EVERYWHERE = [f"{610000000000 + i}" for i in range(5)]  # `*` grants
DENIED = [f"{620000000000 + i}" for i in range(5)]
PROVIDERS_OWN = "arn:aws:iam::630000000000:root"


def root(account: str) -> str:
    return f"arn:aws:iam::{account}:root"


def principals(provider: Provider, service_id: str) -> set[str]:
    response = provider.client("ec2").describe_vpc_endpoint_service_permissions(
        ServiceId=service_id
    )
    return {p["Principal"] for p in response["AllowedPrincipals"]}


def test_stream_batch_in_its_dlq_then_one_sweep_allows_every_grant(
    deployment: LocalDeployment, provider: Provider, figures: Figures
) -> None:
    svc = provider.create_service(allowed_principals=[PROVIDERS_OWN])
    deployment.enroll(svc, name="ledger")
    deps = deployment.deps(notification_topic_arn=deployment.topic_arn)
    stream = registry_poller(deployment, deps, start="LATEST", max_retries=2)
    now = datetime.now(UTC)
    grants = [grant(svc.service_id, consumer=a) for a in ALLOWED]
    grants += [grant(WILDCARD_SERVICE, consumer=a) for a in EVERYWHERE]
    grants += [grant(svc.service_id, consumer=a, status=GrantStatus.DENY) for a in DENIED]
    with Injector(deps.ec2.client) as faults, no_sleep():
        fault = faults.fail("ModifyVpcEndpointServicePermissions", "InternalError")
        for g in grants:
            deps.registry.put(g, by="test", now=now)
        stream.drain()
    dead = sum(int(batch["BatchSize"]) for batch in stream.dead)
    assert dead == len(grants)  # the stream path gave up on every record: all in its DLQ
    assert principals(provider, svc.service_id) == {PROVIDERS_OWN}

    report = sweep(deps)

    wanted = {root(a) for a in ALLOWED + EVERYWHERE}
    assert principals(provider, svc.service_id) == wanted | {PROVIDERS_OWN}
    for account in ALLOWED + EVERYWHERE:
        provider.consumer(account).create_endpoint(svc.service_name)
    for account in DENIED:  # not on the allow-list: AWS refuses the request itself
        with pytest.raises(ClientError, match="InvalidServiceName"):
            provider.consumer(account).create_endpoint(svc.service_name)
    deployment.poller(deps).drain()
    verdict = check_deployment(provider, [svc.service_id])
    verdict.assert_sound()
    assert verdict.accepted == len(wanted)
    figures.record(
        load=f"{len(grants)} grants (10 service, 5 `*`, 5 deny), 1 principal of the provider's own",
        fault=(
            f"ModifyVpcEndpointServicePermissions always InternalError ({fault.injected} injected):"
            f" {dead} stream records to the DLQ"
        ),
        result=(
            f"one sweep added {len(report.allow_lists[0].missing)} principals, the provider's kept;"
            f" then the allowed consumers connected ({len(DENIED)} denied ones could not):"
            f" {tally(verdict)}"
        ),
        verdict=verdict,
    )


def test_hand_edits_and_lost_removals_converge_in_one_sweep(
    deployment: LocalDeployment, provider: Provider, figures: Figures
) -> None:
    svc = provider.create_service(allowed_principals=[PROVIDERS_OWN])
    deployment.enroll(svc, name="ledger")
    deps = deployment.deps(notification_topic_arn=deployment.topic_arn)
    stream = registry_poller(deployment, deps, start="LATEST")
    now = datetime.now(UTC)
    for account in ALLOWED:
        deps.registry.put(grant(svc.service_id, consumer=account), by="test", now=now)
    stream.drain()
    removed_by_hand, revoked = ALLOWED[:3], ALLOWED[3:6]
    provider.client("ec2").modify_vpc_endpoint_service_permissions(
        ServiceId=svc.service_id, RemoveAllowedPrincipals=[root(a) for a in removed_by_hand]
    )
    for account in revoked:  # grants deleted; their stream records never processed
        deps.registry.delete(svc.service_id, account)

    report = sweep(deps)

    kept = [a for a in ALLOWED if a not in revoked]
    assert principals(provider, svc.service_id) == {root(a) for a in kept} | {PROVIDERS_OWN}
    allow = report.allow_lists[0]
    assert allow.missing == tuple(sorted(root(a) for a in removed_by_hand))
    assert allow.extra == tuple(sorted(root(a) for a in revoked))
    for account in kept:
        provider.consumer(account).create_endpoint(svc.service_name)
    deployment.poller(deps).drain()
    verdict = check_deployment(provider, [svc.service_id])
    verdict.assert_sound()
    assert verdict.accepted == len(kept)
    figures.record(
        load=f"{len(ALLOWED)} allow grants applied by the stream, 1 principal of the provider's",
        fault=(
            f"{len(removed_by_hand)} principals removed by hand in the console;"
            f" {len(revoked)} grants deleted with their stream records lost"
        ),
        result=(
            f"one sweep: +{len(allow.missing)} re-added, -{len(allow.extra)} removed, the"
            f" provider's kept; then the granted consumers connected: {tally(verdict)}"
        ),
        verdict=verdict,
    )
