"""The audit trail stays small per record (issue 11 §4): an allow-list change is audited as what
changed, in records of a bounded size, never as the whole list before and after. With 10,000
principals on one service every audit item stays a few KB (DynamoDB refuses items over 400 KB,
which used to fail the stream handler after it had already changed the allow-list)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from conftest import CONSUMER, grant
from reliability.conftest import Figures
from vpce_approver.converge import Deps
from vpce_approver.grants import PRINCIPALS_PER_RECORD
from vpce_approver.registry import item_from_grant
from vpce_approver.sweep import sweep
from vpce_approver.tables import AuditItem, RegistryItem
from vpce_tools.emulator.world import Provider
from vpce_tools.stack import LocalDeployment
from vpce_tools.stream_poller import registry_poller

N = 10_000
# A concrete bound, far below DynamoDB's 400 KB: PRINCIPALS_PER_RECORD root ARNs (31 bytes) and
# the record's other fields fit in a few KB.
MAX_ITEM_BYTES = 4 * 1024
ACCOUNTS = [f"{500000000000 + i}" for i in range(N)]


def root(account: str) -> str:
    return f"arn:aws:iam::{account}:root"


def item_bytes(item: AuditItem) -> int:
    """An upper bound of the item's DynamoDB size: its attributes in the wire format, as JSON
    (names, type tags and quotes included; DynamoDB counts names and values only)."""
    return len(json.dumps(item.serialize(), separators=(",", ":")).encode())


def audit_items() -> list[AuditItem]:
    return list(AuditItem.scan())


def test_a_grant_change_on_a_service_with_10000_principals_audits_a_few_kb(
    deployment: LocalDeployment, provider: Provider, figures: Figures
) -> None:
    svc = provider.create_service(allowed_principals=())
    for start in range(0, N, 1000):
        provider.allow(svc.service_id, *(root(a) for a in ACCOUNTS[start : start + 1000]))
    deployment.enroll(svc, name="big")
    deps = deployment.deps()
    stream = registry_poller(deployment, deps, start="LATEST")
    deps.registry.put(grant(svc.service_id), by="alice", now=datetime.now(UTC))
    assert stream.drain() == 1
    listed = deps.ec2.allowed_principals(svc.service_id)
    assert len(listed) == N + 1
    items = audit_items()
    added = [i for i in items if i.action == "principals-added"]
    assert [a.new.as_dict() for a in added] == [{"added": [root(CONSUMER)]}]
    largest = max(item_bytes(i) for i in items)
    assert largest < MAX_ITEM_BYTES
    figures.record(
        load=f"{N:,} principals on one service, 1 grant added through the stream",
        fault="none: the size of the audit trail (DynamoDB refuses items over 400 KB)",
        result=f"{len(items)} audit items, the largest {largest:,} bytes (< {MAX_ITEM_BYTES:,})",
        lost=0,
        wrong_accepts=0,
    )


@pytest.mark.parametrize(
    "count",
    [
        1_000,  # the same records as 10,000: the bound is per record, whatever the count
        pytest.param(N, marks=pytest.mark.soak),  # minutes in moto's DynamoDB: `make soak`
    ],
)
def test_a_sweep_adding_and_removing_many_principals_audits_bounded_records(
    count: int, deployment: LocalDeployment, provider: Provider, figures: Figures
) -> None:
    accounts = ACCOUNTS[:count]
    svc = provider.create_service(allowed_principals=())
    deployment.enroll(svc, name="big")
    deps: Deps = deployment.deps(notification_topic_arn=deployment.topic_arn)
    now = datetime.now(UTC)
    # 10,000 grants whose stream records never reached the handler.
    with RegistryItem.batch_write() as batch:
        for account in accounts:
            batch.save(item_from_grant(grant(svc.service_id, consumer=account), by="t", now=now))

    report = sweep(deps)
    assert len(report.allow_lists[0].missing) == count
    assert len(deps.ec2.allowed_principals(svc.service_id)) == count
    added = [i for i in audit_items() if i.action == "principals-added"]
    assert len(added) == count // PRINCIPALS_PER_RECORD
    assert sorted(p for i in added for p in i.new.as_dict()["added"]) == sorted(
        root(a) for a in accounts
    )

    # All grants go (records lost again): the sweep removes what it added, audited the same way.
    with RegistryItem.batch_write() as batch:
        for account in accounts:
            batch.delete(RegistryItem(svc.service_id, account))
    sweep(deps)
    assert deps.ec2.allowed_principals(svc.service_id) == set()
    items = audit_items()
    removed = [i for i in items if i.action == "principals-removed"]
    assert sum(len(i.new.as_dict()["removed"]) for i in removed) == count
    sizes = [item_bytes(i) for i in items]
    assert max(sizes) < MAX_ITEM_BYTES, max(sizes)
    figures.record(
        load=f"{count:,} grants on one service, stream records lost; then all deleted, lost again",
        fault="none: the size of the audit trail (DynamoDB refuses items over 400 KB)",
        result=(
            f"2 sweeps: +{count:,} then -{count:,} principals in {len(added)} + {len(removed)}"
            f" records, the largest item {max(sizes):,} bytes (bound {MAX_ITEM_BYTES:,})"
        ),
        lost=0,
        wrong_accepts=0,
    )
