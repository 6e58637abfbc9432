"""Duplicate, reordered and delayed SNS deliveries at volume: exactly one decision and at most one
escalation message per connection, nothing lost, nothing accepted without a live allow grant."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from reliability.conftest import Figures, tally
from reliability.scenario import ALLOWED, DENIED, UNKNOWN, populate, processor
from vpce_approver.tables import AuditItem, EscalationItem
from vpce_tools.emulator.world import EndpointService, Provider
from vpce_tools.faults import MemoryQueue, RecordingPort, check_deployment, redeliver
from vpce_tools.stack import LocalDeployment


def assert_one_decision_each(
    ids: dict[str, list[str]], port: RecordingPort, connections: int
) -> None:
    """One audit decision per connection, one escalation record and one message per escalation."""
    decisions = Counter(
        str(i.subject) for i in AuditItem.scan() if i.action in {"accept", "reject", "escalate"}
    )
    assert set(decisions.values()) == {1}
    assert len(decisions) == connections
    # `#…` keys are bookkeeping in the same table (sweep cursor, allow-list ownership)
    escalated = [str(i.vpc_endpoint_id) for i in EscalationItem.scan()]
    assert sorted(e for e in escalated if not e.startswith("#")) == sorted(ids[UNKNOWN])
    assert set(port.opened_ids) == set(ids[UNKNOWN])
    assert max(port.opened_ids.values()) == 1


def run_volume(
    deployment: LocalDeployment,
    provider: Provider,
    service: EndpointService,
    figures: Figures,
    *,
    connections: int,
    deliveries: int,
    batch_size: int,
    seed: int,
) -> None:
    queue = MemoryQueue(deployment.topic_arn)
    with queue.listening():
        ids = populate(deployment, provider, service, connections)
        rng = random.Random(seed)
        unique, delivered = queue.duplicate(rng, total=deliveries)
        assert (unique, delivered) == (connections, deliveries)
        # Delayed: a tenth of the deliveries arrive only after everything else was handled
        # (after the Accept/Reject notifications the decisions caused).
        late = queue.ready[: deliveries // 10]
        queue.ready = queue.ready[deliveries // 10 :]
        port = RecordingPort()
        process = processor(deployment.deps(port=port))
        handled = queue.drain(process, batch_size)
        queue.ready.extend(late)
        handled += queue.drain(process, batch_size)
    # Every delivery, plus the Accept/Reject notifications the decisions caused.
    assert handled == deliveries + len(ids[ALLOWED]) + len(ids[DENIED])
    assert queue.dlq == []

    verdict = check_deployment(provider, [service.service_id])
    verdict.assert_sound()
    assert verdict.accepted == len(ids[ALLOWED])
    assert verdict.rejected == len(ids[DENIED])
    assert verdict.escalated == len(ids[UNKNOWN])
    assert_one_decision_each(ids, port, connections)
    figures.record(
        load=f"{connections} connections, {delivered} deliveries"
        f" ({delivered - unique} duplicates), shuffled, batches of {batch_size}",
        fault="duplicate, reordered and delayed (10%) SNS/SQS deliveries",
        result=f"{tally(verdict)}; 1 decision and ≤1 message each",
        verdict=verdict,
        invocations=queue.invocations,
        messages=sum(port.opened_ids.values()),
    )


def test_duplicates_through_real_sqs(
    deployment: LocalDeployment, provider: Provider, service: EndpointService, figures: Figures
) -> None:
    """The same through moto's SQS and the QueuePoller (the Lambda event source in-process)."""
    ids = populate(deployment, provider, service, 60)
    unique, delivered = redeliver(
        provider.client("sqs"), deployment.queue_url, random.Random(3), total=90
    )
    port = RecordingPort()
    poller = deployment.poller(deployment.deps(port=port), batch_size=7)
    handled = poller.drain(max_invocations=1000)
    assert handled == delivered + len(ids[ALLOWED]) + len(ids[DENIED])
    assert deployment.dlq_depth() == 0
    verdict = check_deployment(provider, [service.service_id])
    verdict.assert_sound()
    assert (verdict.accepted, verdict.rejected, verdict.escalated) == (30, 15, 15)
    assert_one_decision_each(ids, port, 60)
    figures.record(
        load=f"60 connections, {delivered} deliveries ({delivered - unique} duplicates),"
        f" shuffled, {poller.invocations} invocations of ≤7 records (moto SQS)",
        fault="duplicate + reordered deliveries through SQS",
        result=f"{tally(verdict)}; 1 decision and ≤1 message each",
        verdict=verdict,
    )


def test_1000_notifications_20pct_duplicates_shuffled(
    deployment: LocalDeployment, provider: Provider, service: EndpointService, figures: Figures
) -> None:
    run_volume(
        deployment,
        provider,
        service,
        figures,
        connections=800,
        deliveries=1000,
        batch_size=100,
        seed=8,
    )


@pytest.mark.soak
def test_5000_notifications_20pct_duplicates_shuffled(
    deployment: LocalDeployment, provider: Provider, service: EndpointService, figures: Figures
) -> None:
    run_volume(
        deployment,
        provider,
        service,
        figures,
        connections=4000,
        deliveries=5000,
        batch_size=250,
        seed=88,
    )
