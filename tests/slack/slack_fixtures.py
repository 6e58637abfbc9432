"""Slack fixtures: the fake Slack wired to the emulated deployment (slack_local.start), with a fast
client configuration so retries cost milliseconds (except Retry-After, which is honoured)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from vpce_approver.slack.client import ClientConfig
from vpce_approver.tables import EscalationItem
from vpce_tools import slack_local
from vpce_tools.emulator.world import Consumer, EndpointService, Provider
from vpce_tools.fake_slack import Message
from vpce_tools.slack_local import LocalSlack
from vpce_tools.stack import LocalDeployment

FAST = ClientConfig(timeout=0.3, max_retries=2, backoff=0.01, max_retry_after=5)
APPROVER = slack_local.LOCAL_APPROVER
SECOND_APPROVER = "U0SECOND"
GROUP_MEMBER = "U0GROUPIE"
VISITOR = slack_local.LOCAL_VISITOR


@pytest.fixture(name="local")
def local_fixture(deployment: LocalDeployment) -> Iterator[LocalSlack]:
    slack = slack_local.start(
        deployment,
        approvers=(APPROVER, SECOND_APPROVER),
        groups={"S0APPROVERS": [GROUP_MEMBER]},
        approver_group="S0APPROVERS",
        config=FAST,
    )
    try:
        yield slack
    finally:
        slack.stop()


def escalate(local: LocalSlack, service: EndpointService, consumer: Consumer) -> str:
    """A consumer with no grant connects; the notification is converged: escalated and posted."""
    vpce = consumer.create_endpoint(service.service_name)
    local.deployment.poller(local.deps()).drain()
    return vpce


def message(local: LocalSlack, vpce: str) -> Message:
    found = local.fake.message_for(vpce)
    assert found is not None, f"no Slack message for {vpce}"
    return found


def escalation(vpce: str) -> EscalationItem:
    return EscalationItem.get(vpce, consistent_read=True)


def state(provider: Provider, vpce: str) -> str:
    [conn] = [c for c in provider.connections() if c["VpcEndpointId"] == vpce]
    return str(conn["VpcEndpointState"])


class CallCounter:
    """Counts the EC2 calls a client makes (botocore's event hooks; nothing is replaced)."""

    def __init__(self, client: Any, operation: str) -> None:
        self.count = 0
        self.hooks: list[Any] = []
        client.meta.events.register(f"before-call.ec2.{operation}", self._seen)

    def _seen(self, **kwargs: Any) -> None:
        self.count += 1
        for hook in self.hooks:
            hook()
