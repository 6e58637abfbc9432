"""Fixtures local to the emulator tests: everything runs against moto (``mock_aws``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import botocore.endpoint
import pytest

from vpce_tools.emulator import configure_acceptance, throttle
from vpce_tools.emulator.testing import emulated_aws
from vpce_tools.emulator.world import Consumer, EndpointService, Provider

from .strict_json import check_json_response
from .strict_xml import check_response, served_operations

CONSUMER_ACCOUNT = "111111111111"
OTHER_ACCOUNT = "222222222222"


_SERVED = served_operations()


JSON_SERVICES = ("organizations",)
"""JSON-protocol services whose every response is checked (moto's, with the emulator's checks)."""


class RawChecks:
    """Every raw response of an operation the emulator serves (and of Organizations), checked
    against botocore's model."""

    def __init__(self) -> None:
        self.checked: list[str] = []
        self.problems: list[str] = []

    def __call__(self, http_response: Any, operation_model: Any) -> Any:
        response = _convert(http_response, operation_model)
        if operation_model.name in _SERVED:
            self.checked.append(operation_model.name)
            self.problems += check_response(
                operation_model, response["status_code"], response["body"]
            )
        elif operation_model.service_model.service_name in JSON_SERVICES:
            self.checked.append(operation_model.name)
            self.problems += check_json_response(
                operation_model, response["status_code"], response["body"]
            )
        return response


_convert = botocore.endpoint.convert_to_response_dict


@pytest.fixture(autouse=True)
def raw_xml_checks(monkeypatch: pytest.MonkeyPatch) -> Iterator[RawChecks]:
    """Autouse: a test fails when any emulator response does not match botocore's model."""
    checks = RawChecks()
    monkeypatch.setattr(botocore.endpoint, "convert_to_response_dict", checks)
    yield checks
    assert checks.problems == [], checks.problems


@pytest.fixture
def aws() -> Iterator[None]:
    throttle.configure(False)
    configure_acceptance(0)
    with emulated_aws():
        yield
    throttle.configure(False)
    configure_acceptance(0)


@pytest.fixture
def provider(aws: None) -> Provider:
    return Provider()


@pytest.fixture
def service(provider: Provider) -> EndpointService:
    return provider.create_service(acceptance_required=True)


@pytest.fixture
def consumer(provider: Provider) -> Consumer:
    return provider.consumer(CONSUMER_ACCOUNT)


@pytest.fixture
def ec2(provider: Provider) -> Any:
    return provider.client("ec2")


class Inbox:
    """An SQS queue subscribed to an SNS topic, in the provider's account."""

    def __init__(self, provider: Provider, name: str = "vpce-events") -> None:
        self.sns = provider.client("sns")
        self.sqs = provider.client("sqs")
        self.topic_arn: str = self.sns.create_topic(Name=name)["TopicArn"]
        self.queue_url: str = self.sqs.create_queue(QueueName=name)["QueueUrl"]
        queue_arn = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url, AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
        self.sns.subscribe(TopicArn=self.topic_arn, Protocol="sqs", Endpoint=queue_arn)

    def drain(self) -> list[dict[str, Any]]:
        """SNS envelopes received so far (``Message`` decoded into ``Body``)."""
        out: list[dict[str, Any]] = []
        while True:
            msgs = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get(
                "Messages", []
            )
            if not msgs:
                return out
            for m in msgs:
                envelope = json.loads(m["Body"])
                envelope["Body"] = json.loads(envelope["Message"])
                out.append(envelope)
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"])


@pytest.fixture
def inbox(provider: Provider) -> Inbox:
    return Inbox(provider)
