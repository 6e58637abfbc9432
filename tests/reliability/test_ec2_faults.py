"""EC2 faults on the notification path: throttling bursts, partial `Unsuccessful` responses, a
connection deleted between Describe and Accept. Nothing lost, nothing stuck after the sweep, every
outcome audited, nothing accepted without a live allow grant."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from reliability.conftest import Figures, tally
from reliability.scenario import ALLOWED, DENIED, UNKNOWN, populate, processor
from vpce_approver.converge import SETTLED_CODES
from vpce_approver.sweep import sweep
from vpce_approver.tables import AuditItem, EscalationItem
from vpce_tools.emulator import throttle
from vpce_tools.emulator.world import EndpointService, Provider
from vpce_tools.faults import (
    Injector,
    MemoryQueue,
    RecordingPort,
    check_deployment,
    no_sleep,
)
from vpce_tools.stack import LocalDeployment


def failed_outcomes(vpce_id: str) -> list[str]:
    return [str(i.outcome) for i in AuditItem.query(vpce_id) if str(i.outcome).startswith("failed")]


@pytest.mark.parametrize(("connections", "batch"), [(240, 4)])
def test_throttling_burst_is_retried_with_backoff(
    deployment: LocalDeployment,
    provider: Provider,
    service: EndpointService,
    figures: Figures,
    connections: int,
    batch: int,
) -> None:
    """Accept/Reject throttled at AWS's 10 burst, 1/s, the burst already spent by other callers:
    ~60 small invocations (each converges everything pending on the service, so the first
    ones decide most of it) meet an empty bucket. botocore's standard retries back off (on a fake
    clock that the throttle refills from); what still fails is redelivered; the sweep ends the
    rest."""
    clock = throttle.FakeClock()
    queue = MemoryQueue(deployment.topic_arn)
    deps = deployment.deps(port=RecordingPort())
    with throttle.throttled(clock=clock), no_sleep(clock) as slept, queue.listening():
        ids = populate(deployment, provider, service, connections)
        for action in throttle.THROTTLED_ACTIONS:  # the burst is gone: every call waits
            while throttle.take(provider.account_id, provider.region, action):
                pass
        with Injector(deps.ec2.client) as spy:
            codes = spy.observe()
            queue.drain(processor(deps), batch)
        assert codes["RequestLimitExceeded"] > 0  # the burst really was throttled
        during = check_deployment(provider, [service.service_id])
        assert during.wrong_accepts == []
        clock.advance(60)
        report = sweep(deps)
        assert report.errors == {}
    verdict = check_deployment(provider, [service.service_id])
    verdict.assert_sound(once=False)
    assert verdict.accepted == len(ids[ALLOWED])
    assert verdict.rejected == len(ids[DENIED])
    assert verdict.escalated == len(ids[UNKNOWN])
    figures.record(
        load=f"{connections} connections, {queue.invocations} invocations of ≤{batch} records",
        fault=f"Accept/Reject throttle 10 burst 1/s: {codes['RequestLimitExceeded']}"
        f" RequestLimitExceeded, {len(queue.dlq)} records to the DLQ",
        result=f"{tally(verdict)} (backoff {slept.slept:.0f} s fake time; sweep after)",
        verdict=verdict,
        throttled=codes["RequestLimitExceeded"],
        dlq=len(queue.dlq),
    )


def test_throttled_until_dlq_then_sweep_converges(
    deployment: LocalDeployment, provider: Provider, service: EndpointService, figures: Figures
) -> None:
    """A throttle that never refills while the queue retries: every Accept fails after botocore's
    retries, the records exhaust maxReceiveCount and land in the DLQ; nothing is accepted, and
    the sweep after the storm accepts them all (each decision audited)."""
    clock = throttle.FakeClock()
    queue = MemoryQueue(deployment.topic_arn, max_receive_count=3)
    deps = deployment.deps()
    with queue.listening():
        ids = populate(deployment, provider, service, 30, split=(1.0, 0.0))
        with throttle.throttled(burst=1, clock=clock), no_sleep():  # clock never advances
            throttle.take(provider.account_id, provider.region, "AcceptVpcEndpointConnections")
            queue.drain(processor(deps), 10)
            during = check_deployment(provider, [service.service_id])
    assert len(queue.dlq) == 30
    assert during.accepted == 0
    assert during.wrong_accepts == []
    # each attempt left its "requested" record: the trail shows what was tried (every invocation
    # converges the whole service, so each connection was tried at least once per receive)
    assert all(
        [i.action for i in AuditItem.query(vpce)].count("accept") >= 3 for vpce in ids[ALLOWED]
    )
    report = sweep(deps)
    assert report.summary()["accepted"] == 30
    verdict = check_deployment(provider, [service.service_id])
    verdict.assert_sound(once=False)
    figures.record(
        load="30 allowed connections, batches of 10",
        fault="Accept throttled for good: retries exhausted, 3 receives, DLQ",
        result=f"0 accepted during the storm, {len(queue.dlq)} in the DLQ;"
        f" sweep after: {tally(verdict)}",
        verdict=verdict,
        dlq=len(queue.dlq),
    )


@pytest.mark.parametrize("code", ["InternalError", "InvalidVpcEndpointId.NotFound"])
def test_partial_unsuccessful_is_audited_and_swept(
    deployment: LocalDeployment,
    provider: Provider,
    service: EndpointService,
    figures: Figures,
    code: str,
) -> None:
    """Accept and Reject answer with a third of the IDs in `Unsuccessful`: those connections stay
    pendingAcceptance with a failed:<code> audit record; the others are settled. A transient
    code (InternalError) has the notification records redelivered (here the fault persists, so
    they end in the DLQ); a code that says the connection is gone does not. The sweep converges
    the rest."""
    transient = code not in SETTLED_CODES
    queue = MemoryQueue(deployment.topic_arn)
    deps = deployment.deps()
    with queue.listening():
        ids = populate(deployment, provider, service, 60)
        dropped: set[str] = set()

        def select(vpce_id: str) -> bool:
            if int(vpce_id[-6:], 16) % 3 == 0:
                dropped.add(vpce_id)
                return True
            return False

        with Injector(deps.ec2.client) as faults:
            faults.drop_ids("AcceptVpcEndpointConnections", select, code=code)
            faults.drop_ids("RejectVpcEndpointConnections", select, code=code)
            queue.drain(processor(deps), 20)
    assert dropped
    if transient:
        assert queue.dlq  # retried while the fault lasted, then parked for inspection
    else:
        assert queue.dlq == []
    for vpce in dropped:
        outcomes = failed_outcomes(vpce)
        assert set(outcomes) == {f"failed:{code}"}
        # transient: its own records are redelivered. Settled: never redelivered (no DLQ above);
        # another hint of the same service may still converge it again (it is still pending)
        assert len(outcomes) > 1 if transient else len(outcomes) >= 1
    before = check_deployment(provider, [service.service_id])
    assert before.wrong_accepts == []
    assert sorted(before.stuck) == sorted(dropped)  # not lost: waiting for the sweep
    report = sweep(deps)
    assert report.summary()["accepted"] + report.summary()["rejected"] == len(dropped)
    verdict = check_deployment(provider, [service.service_id])
    verdict.assert_sound(once=False)
    assert verdict.accepted == len(ids[ALLOWED])
    assert verdict.rejected == len(ids[DENIED])
    figures.record(
        load=f"60 connections ({len(ids[ALLOWED])} allowed, {len(ids[DENIED])} denied,"
        f" {len(ids[UNKNOWN])} unknown)",
        fault=f"{len(dropped)} IDs answered Unsuccessful {code} by Accept/Reject"
        + (" (transient: records retried, then DLQ)" if transient else ""),
        result=f"{len(before.stuck)} pending with failed:{code} audited, then sweep:"
        f" {tally(verdict)}",
        verdict=verdict,
        stuck_before_sweep=len(before.stuck),
    )


def test_connection_deleted_between_describe_and_accept(
    deployment: LocalDeployment, provider: Provider, service: EndpointService, figures: Figures
) -> None:
    """The consumer deletes endpoints right after converge's Describe: Accept reports them
    InvalidState; they are audited as failed, nothing else is disturbed, and the escalation of
    a deleted unknown consumer's endpoint is closed as withdrawn by the Delete notification."""
    queue = MemoryQueue(deployment.topic_arn)
    deps = deployment.deps()
    with queue.listening():
        ids = populate(deployment, provider, service, 20)
        victims = [ids[ALLOWED][0], ids[ALLOWED][1], ids[DENIED][0]]
        escalated_victim = ids[UNKNOWN][0]
        done: list[bool] = []

        def delete_once(parsed: Mapping[str, Any]) -> None:
            if not done:
                done.append(True)
                for account, vpce in [(ALLOWED, victims[0]), (ALLOWED, victims[1])]:
                    provider.consumer(account).delete_endpoints(vpce)
                provider.consumer(DENIED).delete_endpoints(victims[2])

        with Injector(deps.ec2.client) as faults:
            faults.after("DescribeVpcEndpointConnections", delete_once)
            queue.drain(processor(deps), 100)
        provider.consumer(UNKNOWN).delete_endpoints(escalated_victim)
        queue.drain(processor(deps), 100)
    for vpce in victims:
        assert failed_outcomes(vpce) == ["failed:InvalidState"]
    item = EscalationItem.get(escalated_victim)
    assert (item.state, item.outcome) == ("settled", "withdrawn")
    sweep(deps)
    verdict = check_deployment(provider, [service.service_id])
    verdict.assert_sound(once=False)
    assert verdict.withdrawn == 4
    assert verdict.accepted == len(ids[ALLOWED]) - 2
    figures.record(
        load=f"{sum(len(v) for v in ids.values())} connections",
        fault="3 endpoints deleted between Describe and Accept/Reject, 1 escalated one later",
        result=f"{tally(verdict)}; failed:InvalidState audited, escalation closed as withdrawn",
        verdict=verdict,
    )
