"""The notification Lambda handler as Lambda calls it: SQS event in, batch item failures out."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from conftest import grant
from vpce_approver import runtime
from vpce_approver.handlers import notifications
from vpce_approver.registry import Registry
from vpce_tools.emulator.world import Consumer, EndpointService, Provider
from vpce_tools.stack import LocalDeployment


@dataclass
class Context:
    function_name: str = "NotificationFunction"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:n"
    aws_request_id: str = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


@pytest.fixture(autouse=True)
def fresh_deps() -> Iterator[None]:
    runtime.default_deps.cache_clear()
    yield
    runtime.default_deps.cache_clear()


def sqs_event(deployment: LocalDeployment, provider: Provider) -> dict[str, object]:
    sqs = provider.client("sqs")
    messages = sqs.receive_message(QueueUrl=deployment.queue_url, MaxNumberOfMessages=10)[
        "Messages"
    ]
    return {
        "Records": [
            {"messageId": m["MessageId"], "body": m["Body"], "eventSource": "aws:sqs"}
            for m in messages
        ]
    }


def test_handler_accepts_and_reports_no_failures(
    deployment: LocalDeployment,
    service: EndpointService,
    consumer: Consumer,
    provider: Provider,
) -> None:
    deployment.deps().registry.put(grant(service.service_id), by="t", now=datetime.now(UTC))
    vpce = consumer.create_endpoint(service.service_name)
    result = notifications.handler(sqs_event(deployment, provider), Context())
    assert result == {"batchItemFailures": []}
    assert consumer.endpoint_state(vpce).lower() == "available"


def test_handler_reports_failed_records_for_retry(
    deployment: LocalDeployment,
    service: EndpointService,
    consumer: Consumer,
    provider: Provider,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    consumer.create_endpoint(service.service_name)
    event = sqs_event(deployment, provider)

    def down(*args: object, **kwargs: object) -> None:
        raise ConnectionError("registry unavailable")

    monkeypatch.setattr(Registry, "read", down)
    result = notifications.handler(event, Context())
    ids = [r["messageId"] for r in event["Records"]]  # type: ignore[attr-defined]
    assert result == {"batchItemFailures": [{"itemIdentifier": i} for i in ids]}


def test_direct_sns_failure_raises_so_sns_retries(
    deployment: LocalDeployment,
    service: EndpointService,
    consumer: Consumer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    vpce = consumer.create_endpoint(service.service_name)
    body = json.dumps(
        {"serviceId": service.service_id, "vpcEndpointId": vpce, "eventType": "Connect"}
    )
    monkeypatch.setattr(Registry, "read", lambda *a, **k: (_ for _ in ()).throw(OSError()))
    with pytest.raises(RuntimeError, match="could not be converged"):
        notifications.handler(
            {"Records": [{"EventSource": "aws:sns", "Sns": {"MessageId": "m", "Message": body}}]},
            Context(),
        )


def test_event_without_records_is_ignored(deployment: LocalDeployment) -> None:
    assert notifications.handler({"unexpected": True}, Context()) == {"batchItemFailures": []}


def test_transient_unsuccessful_items_are_retried_not_left_for_the_sweep(
    deployment: LocalDeployment,
    service: EndpointService,
    consumer: Consumer,
    provider: Provider,
) -> None:
    from vpce_tools.faults import Injector

    deployment.deps().registry.put(grant(service.service_id), by="t", now=datetime.now(UTC))
    vpce = consumer.create_endpoint(service.service_name)
    event = sqs_event(deployment, provider)
    deps = runtime.default_deps()
    with Injector(deps.ec2.client) as faults:
        faults.drop_ids("AcceptVpcEndpointConnections", lambda _: True, times=1)
        first = notifications.handler(event, Context())
    assert first == {
        "batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in event["Records"]]
    }  # type: ignore[attr-defined]
    assert consumer.endpoint_state(vpce).lower() == "pendingacceptance"
    # the redelivery (the fault has passed) accepts it
    assert notifications.handler(event, Context()) == {"batchItemFailures": []}
    assert consumer.endpoint_state(vpce).lower() == "available"
