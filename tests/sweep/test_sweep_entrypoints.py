"""The sweep's entry points: the scheduled Lambda handler, `vpce-approver sweep`, and the demo
step, each on the emulator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from conftest import grant
from vpce_approver import runtime
from vpce_approver.handlers import sweep as sweep_handler
from vpce_approver.tables import AuditItem
from vpce_tools import cli
from vpce_tools.commands.sweep import demo_lost_notification
from vpce_tools.emulator.world import Consumer, EndpointService, Provider
from vpce_tools.stack import LocalDeployment

SCHEDULED_EVENT = {
    "version": "0",
    "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "account": "123456789012",
    "time": "2026-11-30T10:00:00Z",
    "region": "us-east-1",
    "resources": ["arn:aws:events:us-east-1:123456789012:rule/vpce-approver-sweep"],
    "detail": {},
}


@dataclass
class Context:
    remaining: int = 300_000
    function_name: str = "SweepFunction"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:sweep"
    aws_request_id: str = "req-sweep"

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining


@pytest.fixture(autouse=True)
def fresh_deps() -> Iterator[None]:
    runtime.default_deps.cache_clear()
    yield
    runtime.default_deps.cache_clear()


def lose_notification(
    deployment: LocalDeployment, service: EndpointService, consumer: Consumer
) -> str:
    deployment.deps().registry.put(grant(service.service_id), by="t", now=datetime.now(UTC))
    vpce = consumer.create_endpoint(service.service_name)
    deployment.provider.client("sqs").purge_queue(QueueUrl=deployment.queue_url)
    return vpce


def state(provider: Provider, vpce_id: str) -> str:
    [conn] = [c for c in provider.connections() if c["VpcEndpointId"] == vpce_id]
    return str(conn["VpcEndpointState"])


def test_scheduled_event_sweeps_and_returns_a_summary(
    deployment: LocalDeployment,
    service: EndpointService,
    consumer: Consumer,
    provider: Provider,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NOTIFICATION_TOPIC_ARN", deployment.topic_arn)
    vpce = lose_notification(deployment, service, consumer)
    summary = sweep_handler.handler(SCHEDULED_EVENT, Context())
    assert (summary["services"], summary["accepted"], summary["complete"]) == (1, 1, True)
    assert summary["errors"] == {}
    assert state(provider, vpce) == "available"
    json.dumps(summary)  # what Lambda returns must serialise


def test_handler_with_no_time_left_stops_cleanly(
    deployment: LocalDeployment,
    service: EndpointService,
    consumer: Consumer,
    provider: Provider,
) -> None:
    vpce = lose_notification(deployment, service, consumer)
    summary = sweep_handler.handler(SCHEDULED_EVENT, Context(remaining=1_000))
    assert summary["complete"] is False
    assert summary["stopped_at"] == {"service_id": service.service_id, "next_token": None}
    assert state(provider, vpce) == "pendingAcceptance"
    assert sweep_handler.handler(SCHEDULED_EVENT, Context())["accepted"] == 1


def test_handler_fails_the_invocation_when_a_service_failed(
    deployment: LocalDeployment, service: EndpointService, provider: Provider
) -> None:
    provider.client("ec2").delete_vpc_endpoint_service_configurations(
        ServiceIds=[service.service_id]
    )
    with pytest.raises(sweep_handler.SweepFailed, match=service.service_id):
        sweep_handler.handler(SCHEDULED_EVENT, Context())


def test_cli_dry_run_changes_nothing_then_sweep_converges(
    deployment: LocalDeployment,
    service: EndpointService,
    consumer: Consumer,
    provider: Provider,
    capsys: pytest.CaptureFixture[str],
) -> None:
    vpce = lose_notification(deployment, service, consumer)
    assert cli.main(["sweep", "--dry-run"]) == 0
    out, err = capsys.readouterr()
    assert "dry run: nothing was changed" in out
    assert f"{service.service_id}: page 1" in err  # progress
    assert state(provider, vpce) == "pendingAcceptance"
    assert [i.action for i in AuditItem.query(vpce)] == ["would-accept"]

    assert cli.main(["sweep", "--format", "json", "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["accepted"] == 1
    assert err == ""
    assert state(provider, vpce) == "available"


def test_cli_rejects_a_bad_topic_arn(
    deployment: LocalDeployment, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["sweep", "--topic-arn", "not-an-arn"]) == 2
    assert "--topic-arn" in capsys.readouterr().err


def test_cli_recreates_a_notification_with_the_topic_option(
    deployment: LocalDeployment, service: EndpointService, provider: Provider
) -> None:
    ec2 = provider.client("ec2")
    ids = [
        n["ConnectionNotificationId"]
        for n in ec2.describe_vpc_endpoint_connection_notifications()["ConnectionNotificationSet"]
    ]
    ec2.delete_vpc_endpoint_connection_notifications(ConnectionNotificationIds=ids)
    assert cli.main(["sweep", "-q", "--topic-arn", deployment.topic_arn]) == 0
    notes = ec2.describe_vpc_endpoint_connection_notifications()["ConnectionNotificationSet"]
    assert [n["ConnectionNotificationArn"] for n in notes] == [deployment.topic_arn]


def test_demo_step_recovers_a_lost_notification(
    deployment: LocalDeployment, service: EndpointService, consumer: Consumer
) -> None:
    lines: list[str] = []
    assert demo_lost_notification(deployment, service, consumer, say=lines.append) is True
    assert "lost" in lines[0]
    assert lines[-1].endswith("is available")
