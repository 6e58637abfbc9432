"""`vpce-approver audit` at any size: served from the by_time index (never a Scan), newest first
by decision time, --since across day partitions, the one-off backfill of pre-index records."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cli_runner import Cli, cli_fixture  # noqa: F401 - provides the `cli` fixture

from conftest import CONSUMER, grant
from vpce_approver.audit import Audit, AuditRecord
from vpce_approver.tables import AuditItem
from vpce_tools.emulator.world import Consumer, EndpointService
from vpce_tools.stack import LocalDeployment


def record(subject: str, at: datetime, action: str = "accept", **extra: Any) -> AuditRecord:
    return AuditRecord(subject=subject, action=action, actor="policy", at=at, **extra)


@pytest.fixture
def no_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: Any, **__: Any) -> Any:
        raise AssertionError("the audit table was scanned")

    monkeypatch.setattr(AuditItem, "scan", refuse)


def subjects(out: str) -> list[str]:
    return [r["subject"] for r in json.loads(out)]


def test_limit_reads_the_newest_days_first_never_a_scan(
    cli: Cli, deployment: LocalDeployment, no_scan: None
) -> None:
    now = datetime.now(UTC)
    Audit().write(
        record(f"vpce-{days}d{h}", now - timedelta(days=days, hours=h))
        for days in (0, 1, 3, 30)
        for h in (0, 1)
    )
    code, out, _ = cli("audit", "--limit", "3", "-o", "json")
    assert code == 0
    assert subjects(out) == ["vpce-1d0", "vpce-0d1", "vpce-0d0"]  # the newest 3, in time order
    code, out, _ = cli("audit", "--limit", "7", "-o", "json")
    assert subjects(out)[0] == "vpce-30d0"  # walked back over the quiet days in between
    code, out, err = cli("audit", "-o", "json")
    assert len(json.loads(out)) == 8
    assert "the last 50 at most" in err


def test_since_spans_day_partitions_and_sorts_by_decision_time(
    cli: Cli, deployment: LocalDeployment, no_scan: None
) -> None:
    now = datetime.now(UTC)
    Audit().write(
        [
            record("vpce-old", now - timedelta(days=3)),
            record("vpce-yesterday", now - timedelta(days=1)),
            # a fixed sort key older than its decision (converge's idempotent escalate record):
            # it sorts by when it was decided, not by its key
            record(
                "vpce-late",
                now - timedelta(minutes=1),
                action="escalate",
                sort_key="2020-01-01T00:00:00.000Z#escalate",
            ),
            record("vpce-early", now - timedelta(minutes=5)),
        ]
    )
    code, out, _ = cli("audit", "--since", "2d", "-o", "json")
    assert code == 0
    assert subjects(out) == ["vpce-yesterday", "vpce-early", "vpce-late"]
    code, out, _ = cli("audit", "--since", "2d", "--limit", "1", "-o", "json")
    assert subjects(out) == ["vpce-late"]


def test_records_written_before_the_index_are_backfilled(
    cli: Cli, deployment: LocalDeployment
) -> None:
    now = datetime.now(UTC)
    legacy = record("vpce-legacy", now - timedelta(hours=2)).to_item()
    legacy.day = None  # as written before by_time existed
    legacy.save()
    Audit().write([record("vpce-new", now)])
    code, out, _ = cli("audit", "--limit", "5", "-o", "json")
    assert subjects(out) == ["vpce-new"]  # the documented limitation until the backfill
    code, out, _ = cli("audit", "--backfill-index")
    assert (code, out.strip()) == (0, "indexed 1 record(s) written before the by_time index")
    code, out, _ = cli("audit", "--limit", "5", "-o", "json")
    assert subjects(out) == ["vpce-legacy", "vpce-new"]
    code, out, _ = cli("audit", "--backfill-index")
    assert out.strip() == "indexed 0 record(s) written before the by_time index"
    code, _, err = cli("audit", "--backfill-index", "--limit", "3")
    assert (code, "takes no filter" in err) == (2, True)


def test_accept_shows_that_the_call_succeeded(
    cli: Cli, deployment: LocalDeployment, service: EndpointService, consumer: Consumer
) -> None:
    deployment.deps().registry.put(grant(service.service_id), by="a", now=datetime.now(UTC))
    vpce = consumer.create_endpoint(service.service_name)
    deployment.poller().drain()
    _, out, _ = cli("audit", "--consumer", CONSUMER, "-o", "json")
    [row] = json.loads(out)
    assert (row["subject"], row["action"], row["outcome"]) == (vpce, "accept", "done")
    _, out, _ = cli("audit", "--limit", "1")
    assert "done" in out.splitlines()[1].split()
