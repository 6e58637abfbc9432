"""One sweeper at a time without reserved concurrency: the lease (sweep/lease.py), on the emulator,
with real threads racing for it."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from conftest import MetricsRecorder
from vpce_approver.handlers import sweep as sweep_handler
from vpce_approver.sweep import SweepReport
from vpce_approver.sweep.lease import LEASE_KEY, MARGIN, LeaseItem, SweepLease
from vpce_approver.tables import EscalationItem
from vpce_tools.stack import LocalDeployment

NOW = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
LIFETIME = timedelta(seconds=280)


@dataclass
class Context:
    aws_request_id: str
    remaining: int = 280_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining


def test_a_held_lease_refuses_a_second_run_until_released(deployment: LocalDeployment) -> None:
    deployment.deps()  # binds the models to the deployment's tables
    first, second = SweepLease("run-1"), SweepLease("run-2")
    assert first.acquire(NOW, LIFETIME) is None
    held = second.acquire(NOW + timedelta(seconds=10), LIFETIME)
    assert held is not None
    assert held.owner == "run-1"
    assert held.until == (NOW + LIFETIME + MARGIN).timestamp()
    assert second.release() is False  # not its lease: left alone
    assert first.holder() == held
    assert first.release() is True
    assert first.holder() is None
    assert second.acquire(NOW + timedelta(seconds=20), LIFETIME) is None


def test_an_expired_lease_is_taken_over_and_the_old_owner_cannot_delete_it(
    deployment: LocalDeployment,
) -> None:
    """A run that crashed (or timed out) blocks the next one only for its own lifetime."""
    deployment.deps()
    crashed, next_run = SweepLease("crashed"), SweepLease("next")
    assert crashed.acquire(NOW, LIFETIME) is None
    still_running = NOW + LIFETIME + MARGIN - timedelta(seconds=1)
    assert next_run.acquire(still_running, LIFETIME) is not None
    expired = NOW + LIFETIME + MARGIN + timedelta(seconds=1)
    assert next_run.acquire(expired, LIFETIME) is None
    assert crashed.release() is False
    holder = next_run.holder()
    assert holder is not None
    assert holder.owner == "next"


def test_the_lease_item_stays_out_of_the_escalation_index(deployment: LocalDeployment) -> None:
    deps = deployment.deps()
    assert SweepLease("run").acquire(NOW, LIFETIME) is None
    assert LeaseItem.Meta.table_name == deps.settings.escalations_table
    assert LeaseItem.get(LEASE_KEY, consistent_read=True).owner == "run"
    assert list(EscalationItem.by_state.query("open")) == []


def test_concurrent_scheduled_runs_sweep_one_at_a_time(
    deployment: LocalDeployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight invocations start together (EventBridge delivered the schedule twice, a manual
    invoke, a slow run overlapping the next): exactly one sweeps, the others exit cleanly and say
    so, and the lease is free again afterwards."""
    runs = 8
    metrics = MetricsRecorder()
    deps = deployment.deps(metrics=metrics)
    inside, most_inside, swept = 0, 0, []
    lock = threading.Lock()
    all_tried = threading.Event()
    tried = 0

    def slow_sweep(d: Any, **_: Any) -> SweepReport:
        nonlocal inside, most_inside
        with lock:
            inside += 1
            most_inside = max(most_inside, inside)
            swept.append(threading.current_thread().name)
        all_tried.wait(timeout=30)  # hold the lease until every other run has tried
        with lock:
            inside -= 1
        return SweepReport()

    monkeypatch.setattr(sweep_handler, "sweep", slow_sweep)
    start = threading.Barrier(runs)
    results: dict[str, dict[str, Any]] = {}

    def invoke(n: int) -> None:
        nonlocal tried
        start.wait()
        summary = sweep_handler.run({"source": "aws.events"}, Context(f"req-{n}"), deps)  # type: ignore[arg-type]
        with lock:
            results[f"req-{n}"] = summary
            if "skipped" in summary:
                tried += 1
                if tried == runs - 1:
                    all_tried.set()

    threads = [threading.Thread(target=invoke, args=(n,), name=f"req-{n}") for n in range(runs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert all(not t.is_alive() for t in threads)
    assert len(results) == runs
    assert most_inside == 1
    assert len(swept) == 1
    skipped = [r for r in results.values() if "skipped" in r]
    assert len(skipped) == runs - 1
    assert {r["holder"] for r in skipped} == {swept[0]}
    assert metrics.values["SweepSkipped"] == runs - 1
    assert SweepLease("probe").holder() is None  # released by the run that swept


def test_a_run_that_finds_the_lease_held_sweeps_nothing(
    deployment: LocalDeployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    deps = deployment.deps(metrics=MetricsRecorder())
    assert SweepLease("someone-else").acquire(deps.clock(), LIFETIME) is None

    def must_not_run(*_: Any, **__: Any) -> SweepReport:
        raise AssertionError("swept while another run held the lease")

    monkeypatch.setattr(sweep_handler, "sweep", must_not_run)
    summary = sweep_handler.run({}, Context("req-late"), deps)  # type: ignore[arg-type]
    assert summary["skipped"] == "another sweep holds the lease"
    assert summary["holder"] == "someone-else"
    holder = SweepLease("probe").holder()
    assert holder is not None
    assert holder.owner == "someone-else"  # not released by the run that skipped


def test_a_failed_run_releases_the_lease(
    deployment: LocalDeployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    deps = deployment.deps()

    def crash(*_: Any, **__: Any) -> SweepReport:
        raise RuntimeError("boom")

    monkeypatch.setattr(sweep_handler, "sweep", crash)
    with pytest.raises(RuntimeError, match="boom"):
        sweep_handler.run({}, Context("req-crash"), deps)  # type: ignore[arg-type]
    assert SweepLease("probe").holder() is None
