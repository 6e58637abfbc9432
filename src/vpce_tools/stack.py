"""A vpce-approver deployment on the emulator: what template.yaml creates on AWS (tables from the
template itself, the notification topic -> queue) plus a poller that feeds the queue to the
notification handler the way Lambda's SQS event source does (batches, partial failures, redrive).

Used by the tests, `make demo`, `vpce-approver local` and the benchmark."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from vpce_approver.config import Settings
from vpce_approver.converge import Deps, MetricSink
from vpce_approver.escalations import EscalationPort
from vpce_approver.runtime import build
from vpce_approver.sweep import MANAGED_TAG_KEY

from . import template
from .emulator.world import EndpointService, Provider

CONNECTION_EVENTS = ["Connect", "Accept", "Reject", "Delete"]


def drain(poll_once: Callable[[], int], max_invocations: int = 100) -> int:
    """Call an event source's poll_once until it handles nothing (or the bound is hit); the
    records handled in all."""
    total = 0
    for _ in range(max_invocations):
        handled = poll_once()
        if not handled:
            break
        total += handled
    return total


@dataclass
class QueuePoller:
    """Lambda's SQS event source, in-process: receive up to `batch_size` messages, call the
    handler with an SQS event, delete what succeeded, make failures visible again."""

    sqs: Any
    queue_url: str
    process: Callable[[Sequence[Mapping[str, Any]]], list[str]]
    batch_size: int = 1000
    invocations: int = 0
    received: int = 0

    def _receive(self) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        while len(messages) < self.batch_size:
            got = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=min(10, self.batch_size - len(messages)),
                AttributeNames=["All"],
            ).get("Messages", [])
            if not got:
                break
            messages.extend(got)
        return messages

    def poll_once(self) -> int:
        """One invocation (if anything is queued). Returns the number of records handled."""
        messages = self._receive()
        if not messages:
            return 0
        records = [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:local",
            }
            for m in messages
        ]
        self.invocations += 1
        self.received += len(records)
        failed = set(self.process(records))
        done = [m for m in messages if m["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(done[start : start + 10])
                ],
            )
        for m in messages:
            if m["MessageId"] in failed:
                self.sqs.change_message_visibility(
                    QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
                )
        return len(records)

    def drain(self, max_invocations: int = 100) -> int:
        """Poll until the queue is empty (or a bound is hit). Returns records handled."""
        return drain(self.poll_once, max_invocations)


@dataclass
class LocalDeployment:
    """One deployment of vpce-approver in the provider's (emulated) account."""

    provider: Provider
    settings: Settings = field(default_factory=Settings)
    topic_arn: str = ""
    queue_url: str = ""
    dlq_url: str = ""
    max_receive_count: int = 3
    # A hook on every Deps this deployment builds (`vpce-approver local` prints events through it).
    observe: Callable[[Deps], Deps] | None = None

    @classmethod
    def create(cls, provider: Provider, **overrides: Any) -> LocalDeployment:
        settings = replace(
            Settings(region=provider.region, endpoint_url=provider.endpoint_url), **overrides
        )
        deployment = cls(provider, settings)
        deployment._create_tables()
        deployment._create_notification_path()
        deployment.settings = replace(settings, notification_topic_arn=deployment.topic_arn)
        return deployment

    def _create_tables(self) -> None:
        ddb = self.provider.client("dynamodb")
        existing = set(ddb.list_tables()["TableNames"])
        for logical_id, setting in template.TABLES.items():
            name = getattr(self.settings, setting)
            if name in existing:
                continue
            ddb.create_table(**template.create_table_kwargs(logical_id, name))
            ttl = template.ttl_attribute(logical_id)
            if ttl:
                ddb.update_time_to_live(
                    TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl}
                )

    def _create_notification_path(self) -> None:
        sns, sqs = self.provider.client("sns"), self.provider.client("sqs")
        self.topic_arn = sns.create_topic(Name="vpce-approver-notifications")["TopicArn"]
        self.dlq_url = sqs.create_queue(QueueName="vpce-approver-notifications-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=self.dlq_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        self.queue_url = sqs.create_queue(
            QueueName="vpce-approver-notifications",
            Attributes={
                "VisibilityTimeout": "360",
                "RedrivePolicy": json.dumps(
                    {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": self.max_receive_count}
                ),
            },
        )["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        sns.subscribe(TopicArn=self.topic_arn, Protocol="sqs", Endpoint=queue_arn)

    def deps(
        self,
        *,
        metrics: MetricSink | None = None,
        port: EscalationPort | None = None,
        **overrides: Any,
    ) -> Deps:
        settings = replace(self.settings, **overrides) if overrides else self.settings
        deps = build(settings, metrics=metrics, port=port)
        return self.observe(deps) if self.observe is not None else deps

    def enroll(self, service: EndpointService, *, name: str | None = None) -> str:
        """What `vpce-approver services add` does: tag the service as managed, put the
        connection notification in place, and record the enrollment in the registry."""
        ec2 = self.provider.client("ec2")
        ec2.create_tags(
            Resources=[service.service_id],
            Tags=[{"Key": MANAGED_TAG_KEY, "Value": "vpce-approver"}],
        )
        notification = ec2.create_vpc_endpoint_connection_notification(
            ServiceId=service.service_id,
            ConnectionNotificationArn=self.topic_arn,
            ConnectionEvents=CONNECTION_EVENTS,
        )["ConnectionNotification"]
        self.deps().registry.enroll(
            service.service_id,
            name=name,
            notification_id=notification["ConnectionNotificationId"],
            by="local",
            now=datetime.now(UTC),
        )
        return str(notification["ConnectionNotificationId"])

    def poller(self, deps: Deps | None = None, *, batch_size: int = 1000) -> QueuePoller:
        from vpce_approver.handlers.notifications import process

        deps = deps or self.deps()
        return QueuePoller(
            self.provider.client("sqs"),
            self.queue_url,
            lambda records: process(records, deps),
            batch_size=batch_size,
        )

    def dlq_depth(self) -> int:
        attrs = self.provider.client("sqs").get_queue_attributes(
            QueueUrl=self.dlq_url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"])
