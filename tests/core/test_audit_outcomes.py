"""Accept/reject audit records: written "requested" before the call, then rewritten with the
call's answer under the same key (one record per decision, sorted by when it was decided)."""

from __future__ import annotations

from datetime import UTC, datetime

from conftest import CONSUMER, grant
from vpce_approver.audit import AuditRecord, settled
from vpce_approver.converge import converge
from vpce_approver.tables import AuditItem
from vpce_tools.emulator.world import Consumer, EndpointService
from vpce_tools.stack import LocalDeployment

AT = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


def requested(vpce: str, outcome: str = "requested") -> AuditRecord:
    return AuditRecord(
        subject=vpce, action="accept", actor="policy", at=AT, outcome=outcome, vpc_endpoint_id=vpce
    )


def test_settled_answers_each_requested_record_under_its_own_key() -> None:
    records = [requested("vpce-ok"), requested("vpce-bad"), requested("vpce-silent")]
    records.append(requested("vpce-shadow", outcome="shadow"))
    out = settled(records, ["vpce-ok", "vpce-shadow"], {"vpce-bad": "InvalidState"})
    assert [(r.subject, r.outcome) for r in out] == [
        ("vpce-ok", "done"),
        ("vpce-bad", "failed:InvalidState"),
    ]  # no answer: left "requested"; a shadow record is no request
    for before, after in zip(records, out, strict=False):
        key = before.to_item()
        again = after.to_item()
        assert (again.subject, again.sk, again.at, again.day) == (
            key.subject,
            key.sk,
            "2026-12-01T09:30:00.000Z",
            "2026-12-01",
        )


def test_a_failed_accept_leaves_one_record_saying_so(
    deployment: LocalDeployment, service: EndpointService, consumer: Consumer
) -> None:
    deps = deployment.deps()
    deps.registry.put(grant(service.service_id), by="a", now=datetime.now(UTC))
    vpce = consumer.create_endpoint(service.service_name)
    stale = deps.ec2.connections(service.service_id)  # a page read while it was pending
    consumer.delete_endpoints(vpce)  # gone before the accept: an Unsuccessful item
    report = converge(service.service_id, deps, pending=stale)
    [outcome] = report.outcomes
    assert outcome.result.startswith("failed:")
    [record] = AuditItem.query(vpce)  # the "requested" record, answered: not a second record
    assert (record.action, record.consumer, record.outcome) == ("accept", CONSUMER, outcome.result)
