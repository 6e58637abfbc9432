"""DynamoDB errors and throttling on the registry, audit and escalation tables, injected at the
botocore layer of pynamodb's clients (so pynamodb's and botocore's own retries run). Fail closed:
no accept without a registry hit; retried; DLQ after retries; the sweep converges afterwards."""

from __future__ import annotations

import json

import pytest

from reliability.conftest import Figures, tally
from reliability.scenario import ALLOWED, DENIED, UNKNOWN, populate, processor
from vpce_approver.sweep import sweep
from vpce_approver.tables import AuditItem, EscalationItem, RegistryItem
from vpce_tools.emulator.world import EndpointService, Provider
from vpce_tools.faults import (
    Injector,
    MemoryQueue,
    RecordingPort,
    all_unprocessed,
    check_deployment,
    model_client,
    no_sleep,
)
from vpce_tools.stack import LocalDeployment

THROTTLED = "ProvisionedThroughputExceededException"


def test_registry_throttling_within_retries_is_absorbed(
    deployment: LocalDeployment, provider: Provider, service: EndpointService, figures: Figures
) -> None:
    queue = MemoryQueue(deployment.topic_arn)
    deps = deployment.deps()
    with queue.listening():
        ids = populate(deployment, provider, service, 40)
        with Injector(model_client(RegistryItem)) as faults, no_sleep():
            fault = faults.fail("BatchGetItem", THROTTLED, times=3)
            queue.drain(processor(deps), 10)
    assert fault.injected == 3
    assert queue.dlq == []
    verdict = check_deployment(provider, [service.service_id])
    verdict.assert_sound()
    assert (verdict.accepted, verdict.rejected) == (len(ids[ALLOWED]), len(ids[DENIED]))
    figures.record(
        load="40 connections, batches of 10",
        fault=f"registry BatchGetItem: {fault.injected} x {THROTTLED} (within pynamodb retries)",
        result=f"{tally(verdict)}, no redelivery needed",
        verdict=verdict,
    )


def test_registry_unprocessed_keys_never_drop_a_grant(
    deployment: LocalDeployment, provider: Provider, service: EndpointService, figures: Figures
) -> None:
    """DynamoDB under load answers BatchGetItem with every key in UnprocessedKeys: a dropped key
    would turn an allowed consumer into an escalation, a denied one into an escalation too."""
    queue = MemoryQueue(deployment.topic_arn)
    deps = deployment.deps()
    with queue.listening():
        ids = populate(deployment, provider, service, 40)
        with Injector(model_client(RegistryItem)) as faults:
            fault = faults.respond("BatchGetItem", all_unprocessed, times=5)
            queue.drain(processor(deps), 10)
    assert fault.injected == 5
    verdict = check_deployment(provider, [service.service_id])
    verdict.assert_sound()
    assert (verdict.accepted, verdict.rejected) == (len(ids[ALLOWED]), len(ids[DENIED]))
    assert verdict.escalated == len(ids[UNKNOWN])
    figures.record(
        load="40 connections, batches of 10",
        fault=f"registry BatchGetItem: {fault.injected} answers with every key unprocessed",
        result=tally(verdict),
        verdict=verdict,
    )


@pytest.mark.parametrize(
    ("model", "operation", "code"),
    [
        (RegistryItem, "BatchGetItem", THROTTLED),
        (RegistryItem, "BatchGetItem", "InternalServerError"),
        (AuditItem, "BatchWriteItem", THROTTLED),
        (AuditItem, "BatchWriteItem", "InternalServerError"),
        (EscalationItem, "PutItem", "InternalServerError"),
    ],
    ids=["registry-throttled", "registry-5xx", "audit-throttled", "audit-5xx", "escalations-5xx"],
)
def test_table_down_fails_closed_then_sweep_converges(
    deployment: LocalDeployment,
    provider: Provider,
    service: EndpointService,
    figures: Figures,
    model: type,
    operation: str,
    code: str,
) -> None:
    """The table fails every call while the notifications are handled: every record is retried
    and lands in the DLQ; nothing is accepted, no message is posted for an escalation whose
    decision was not recorded. After the outage the sweep converges everything, audited."""
    queue = MemoryQueue(deployment.topic_arn, max_receive_count=3)
    port = RecordingPort()
    deps = deployment.deps(port=port)
    with queue.listening():
        ids = populate(deployment, provider, service, 24)
        with Injector(model_client(model)) as faults, no_sleep():
            fault = faults.fail(operation, code)
            queue.drain(processor(deps), 8)
    during = check_deployment(provider, [service.service_id])
    assert fault.injected > 0
    in_dlq = {json.loads(json.loads(d.body)["Message"])["vpcEndpointId"] for d in queue.dlq}
    if model is EscalationItem:  # only the batches that had an escalation to open
        assert set(ids[UNKNOWN]) <= in_dlq
    else:
        assert in_dlq == {i for group in ids.values() for i in group}
    assert during.wrong_accepts == []
    if model is not EscalationItem:  # no registry read or no audit record: nothing is done
        assert during.accepted == during.rejected == 0
    assert sum(port.opened_ids.values()) == 0
    sweep(deps)
    verdict = check_deployment(provider, [service.service_id])
    verdict.assert_sound(once=False)
    assert (verdict.accepted, verdict.rejected) == (len(ids[ALLOWED]), len(ids[DENIED]))
    assert verdict.escalated == len(ids[UNKNOWN])
    assert max(port.opened_ids.values()) == 1
    table = model.__name__.removesuffix("Item").lower()
    figures.record(
        load="24 connections, batches of 8, maxReceiveCount 3",
        fault=f"{table} {operation} always {code} ({fault.injected} injected)",
        result=f"{during.accepted} accepted during the outage, {len(queue.dlq)} records to the DLQ;"
        f" sweep after: {tally(verdict)}",
        verdict=verdict,
        dlq=len(queue.dlq),
    )
