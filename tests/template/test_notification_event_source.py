"""NotificationFunction's SQS event source: valid for Lambda, and consistent with the pacer that
replaced the batching window (functions/vpce_approver/pacing.py)."""

from __future__ import annotations

from typing import Any

import pytest

from vpce_approver import pacing
from vpce_tools import template

THROTTLE_RATE = 1.0  # AcceptVpcEndpointConnections: 1 per second sustained (after a burst of 10)


@pytest.fixture(scope="module")
def event_source() -> dict[str, Any]:
    fn = template.load()["Resources"]["NotificationFunction"]["Properties"]
    events = [e for e in fn["Events"].values() if e["Type"] == "SQS"]
    assert len(events) == 1
    return dict(events[0]["Properties"])


def test_batch_size_is_valid_for_the_batching_window(event_source: dict[str, Any]) -> None:
    """Lambda refuses a BatchSize above 10 unless MaximumBatchingWindowInSeconds is >= 1."""
    size = int(event_source.get("BatchSize", 10))
    window = float(event_source.get("MaximumBatchingWindowInSeconds", 0))
    assert 1 <= size <= 10_000
    assert 0 <= window <= 300
    if window < 1:
        assert size <= 10


def test_no_window_makes_a_connect_wait(event_source: dict[str, Any]) -> None:
    assert float(event_source.get("MaximumBatchingWindowInSeconds", 0)) == 0


def test_paced_containers_together_stay_within_the_accept_throttle(
    event_source: dict[str, Any],
) -> None:
    concurrency = int(event_source["ScalingConfig"]["MaximumConcurrency"])
    assert pacing.RATE * concurrency <= THROTTLE_RATE


def test_failed_records_are_retried_one_by_one(event_source: dict[str, Any]) -> None:
    assert "ReportBatchItemFailures" in event_source.get("FunctionResponseTypes", [])
