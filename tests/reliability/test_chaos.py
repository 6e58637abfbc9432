"""Everything at once: duplicated and shuffled deliveries, the Accept/Reject throttle, and random
DynamoDB errors on all three tables, then the sweep. The invariants hold at any size; the default
run is small, the soak run is large."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from reliability.conftest import Figures, tally
from reliability.scenario import ALLOWED, DENIED, UNKNOWN, populate, processor
from vpce_approver.sweep import sweep
from vpce_approver.tables import AuditItem, EscalationItem, RegistryItem
from vpce_tools.emulator import throttle
from vpce_tools.emulator.world import EndpointService, Provider
from vpce_tools.faults import (
    Injector,
    MemoryQueue,
    RecordingPort,
    check_deployment,
    model_client,
    no_sleep,
)
from vpce_tools.stack import LocalDeployment

OPERATIONS = ("BatchGetItem", "BatchWriteItem", "PutItem", "GetItem", "UpdateItem", "Query")


@pytest.mark.parametrize(
    ("connections", "error_rate", "batch"),
    [
        (150, 0.05, 10),
        pytest.param(2000, 0.05, 50, marks=pytest.mark.soak),
        pytest.param(1000, 0.20, 25, marks=pytest.mark.soak),
    ],
)
def test_chaos_then_sweep(
    deployment: LocalDeployment,
    provider: Provider,
    service: EndpointService,
    figures: Figures,
    connections: int,
    error_rate: float,
    batch: int,
) -> None:
    rng = random.Random(connections)
    clock = throttle.FakeClock()
    queue = MemoryQueue(deployment.topic_arn)
    port = RecordingPort()
    deps = deployment.deps(port=port)
    injectors = [Injector(model_client(m)) for m in (RegistryItem, AuditItem, EscalationItem)]
    with queue.listening():
        ids = populate(deployment, provider, service, connections)
        queue.duplicate(rng, total=int(connections * 1.2))
        with throttle.throttled(clock=clock), no_sleep(clock):
            faults = [
                injector.fail(op, "InternalServerError", when=lambda _: rng.random() < error_rate)
                for injector in injectors
                for op in OPERATIONS
            ]
            queue.drain(processor(deps), batch)
        for injector in injectors:
            injector.remove()
        during = check_deployment(provider, [service.service_id])
        assert during.wrong_accepts == []
        clock.advance(3600)
        sweep(deps)
        sweep(deps)
    injected = sum(f.injected for f in faults)
    assert injected > 0
    verdict = check_deployment(provider, [service.service_id])
    verdict.assert_sound(once=False)
    assert (verdict.accepted, verdict.rejected) == (len(ids[ALLOWED]), len(ids[DENIED]))
    assert verdict.escalated == len(ids[UNKNOWN])
    escalate_records = Counter(str(i.subject) for i in AuditItem.scan() if i.action == "escalate")
    assert set(escalate_records) == set(ids[UNKNOWN])
    assert set(escalate_records.values()) == {1}  # one escalate record each, even when retried
    assert set(port.opened_ids) == set(ids[UNKNOWN])
    figures.record(
        load=f"{connections} connections, {int(connections * 1.2)} deliveries (shuffled),"
        f" batches of {batch}",
        fault=f"Accept/Reject throttle + {error_rate:.0%} DynamoDB errors on every table"
        f" ({injected} injected); {len(queue.dlq)} records to the DLQ",
        result=f"{during.accepted + during.rejected} settled during the storm; after the sweep:"
        f" {tally(verdict)}",
        verdict=verdict,
        dlq=len(queue.dlq),
        injected=injected,
    )
