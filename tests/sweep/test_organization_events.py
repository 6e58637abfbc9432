"""An AWS Organizations event (OrganizationEvents: forwarded to the default bus, see
docs/ORGANIZATIONS.md) starts the same sweep as the schedule: the handler logs what the event
names and runs a normal sweep; a malformed one sweeps too (the event is only a hint)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from conftest import grant
from vpce_approver import runtime
from vpce_approver.handlers import sweep as sweep_handler
from vpce_tools.emulator.world import Consumer, EndpointService, Provider
from vpce_tools.stack import LocalDeployment

EVENTS = Path(__file__).resolve().parents[2] / "events" / "SweepFunction"
MOVE = json.loads((EVENTS / "organizations-move-account.json").read_text(encoding="utf-8"))
CREATED = json.loads((EVENTS / "organizations-create-account-result.json").read_text("utf-8"))


@dataclass
class Context:
    remaining: int = 300_000
    function_name: str = "SweepFunction"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:sweep"
    aws_request_id: str = "req-organizations-event"

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining


def lose_notification(
    deployment: LocalDeployment, service: EndpointService, consumer: Consumer
) -> str:
    """A granted consumer's Connect whose notification never arrives: only a sweep decides it."""
    deployment.deps().registry.put(grant(service.service_id), by="t", now=datetime.now(UTC))
    vpce = consumer.create_endpoint(service.service_name)
    deployment.provider.client("sqs").purge_queue(QueueUrl=deployment.queue_url)
    return vpce


def state(provider: Provider, vpce_id: str) -> str:
    [conn] = [c for c in provider.connections() if c["VpcEndpointId"] == vpce_id]
    return str(conn["VpcEndpointState"])


@pytest.fixture(autouse=True)
def fresh_deps() -> Iterator[None]:
    runtime.default_deps.cache_clear()
    yield
    runtime.default_deps.cache_clear()


def logged_start(caplog: pytest.LogCaptureFixture) -> dict[str, Any]:
    [record] = [r for r in caplog.records if r.getMessage() == "sweep started"]
    return dict(vars(record))


@pytest.mark.parametrize(
    "event",
    [
        MOVE,
        CREATED,
        {**MOVE, "detail": "not an object"},  # malformed: still a trigger
        {**CREATED, "detail": {**CREATED["detail"], "serviceEventDetails": ["unexpected"]}},
    ],
    ids=["move-account", "create-account-result", "malformed-detail", "malformed-service-details"],
)
def test_an_organizations_event_runs_a_normal_sweep(
    deployment: LocalDeployment,
    service: EndpointService,
    consumer: Consumer,
    provider: Provider,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    event: dict[str, Any],
) -> None:
    monkeypatch.setenv("NOTIFICATION_TOPIC_ARN", deployment.topic_arn)
    vpce = lose_notification(deployment, service, consumer)
    caplog.clear()
    summary = sweep_handler.handler(event, Context())
    assert (summary["services"], summary["accepted"], summary["complete"]) == (1, 1, True)
    assert summary["errors"] == {}
    assert state(provider, vpce) == "available"
    start = logged_start(caplog)
    assert (start["source"], start["event_id"]) == ("aws.organizations", event["id"])
    assert start.get("organization_event") == sweep_handler.trigger(event).get("organization_event")


def test_the_log_names_the_event_and_its_accounts() -> None:
    assert sweep_handler.trigger(MOVE) == {
        "source": "aws.organizations",
        "event_id": MOVE["id"],
        "organization_event": "MoveAccount",
        "accounts": ["444444444444"],
    }
    assert sweep_handler.trigger(CREATED)["accounts"] == ["555555555555"]
    assert sweep_handler.trigger(CREATED)["organization_event"] == "CreateAccountResult"
    scheduled = json.loads((EVENTS / "scheduled.json").read_text(encoding="utf-8"))
    assert sweep_handler.trigger(scheduled) == {"source": "aws.events", "event_id": scheduled["id"]}
    assert sweep_handler.trigger("not an event") == {"source": None, "event_id": None}
    # A failed account creation names no account: nothing to list, still a trigger.
    failed = {
        **CREATED,
        "detail": {
            **CREATED["detail"],
            "serviceEventDetails": {"createAccountStatus": {"state": "FAILED"}},
        },
    }
    assert sweep_handler.trigger(failed)["accounts"] == []
