"""The Lambda dies mid-converge (timeout, OOM): simulated by raising LambdaKilled, which no
`except Exception` can catch, at the worst moments. The killed invocation's whole batch comes back
(as SQS does after the visibility timeout); the next run converges, and the audit trail still
shows what happened."""

from __future__ import annotations

import pytest

from reliability.conftest import Figures, tally
from reliability.scenario import ALLOWED, DENIED, UNKNOWN, populate, processor
from vpce_approver.sweep import sweep
from vpce_approver.tables import AuditItem, EscalationItem
from vpce_tools.emulator.world import EndpointService, Provider
from vpce_tools.faults import (
    LambdaKilled,
    MemoryQueue,
    RecordingPort,
    check_deployment,
    kill_after,
    survive,
)
from vpce_tools.stack import LocalDeployment

# (object attribute on Deps, method, die before calling it?) and what the moment means
MOMENTS = {
    "after Accept, before the next write": ("ec2", "accept", False),
    "after Reject, before the next write": ("ec2", "reject", False),
    "after the audit write, before Accept": ("ec2", "accept", True),
    "after the audit write, before the escalation record": ("escalations", "open_once", True),
    "after the escalation record, before the message": ("port", "opened", True),
}


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_killed_mid_converge_next_run_converges(
    deployment: LocalDeployment,
    provider: Provider,
    service: EndpointService,
    figures: Figures,
    moment: str,
) -> None:
    attribute, method, before = MOMENTS[moment]
    port = RecordingPort()
    deps = deployment.deps(port=port)
    queue = MemoryQueue(deployment.topic_arn)
    with queue.listening():
        ids = populate(deployment, provider, service, 12)
        with kill_after(getattr(deps, attribute), method, before=before) as kills:
            queue.drain(survive(processor(deps)), 12)
    assert kills == [1]
    assert queue.dlq == []
    verdict = check_deployment(provider, [service.service_id])
    verdict.assert_sound(once=False)
    assert (verdict.accepted, verdict.rejected) == (len(ids[ALLOWED]), len(ids[DENIED]))
    assert verdict.escalated == len(ids[UNKNOWN])
    # the trail shows each decision; an action that happened before the kill is in it once
    for vpce in ids[ALLOWED]:
        assert "accept" in [i.action for i in AuditItem.query(vpce)]
    for vpce in ids[UNKNOWN]:
        assert [i.action for i in AuditItem.query(vpce)] == ["escalate"]
    # every escalation reaches the port (the sweep posts what the kill left unposted)
    sweep(deps)
    assert set(port.opened_ids) == set(ids[UNKNOWN])
    # `#…` keys are bookkeeping in the same table (sweep cursor, allow-list ownership)
    escalated = {str(i.vpc_endpoint_id) for i in EscalationItem.scan()}
    assert {e for e in escalated if not e.startswith("#")} == set(ids[UNKNOWN])
    figures.record(
        load=f"12 connections ({len(ids[ALLOWED])} allowed, {len(ids[DENIED])} denied,"
        f" {len(ids[UNKNOWN])} unknown), one batch",
        fault=f"Lambda killed {moment}",
        result=f"batch redelivered; next run: {tally(verdict)}; audit trail complete",
        verdict=verdict,
    )


def test_lambda_killed_is_not_an_exception() -> None:
    """The simulation is honest only if no handler's `except Exception` can swallow it."""
    assert not issubclass(LambdaKilled, Exception)
