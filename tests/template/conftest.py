"""Fixtures of the template checks: the transformed template, its per-function policies, a world on
the emulator that the events/ payloads are bound to, and a recorder of every AWS call."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import botocore.session
import pytest

from conftest import CONSUMER, OTHER, THIRD, grant
from vpce_approver.converge import converge
from vpce_approver.model import GrantStatus
from vpce_tools import policies
from vpce_tools.emulator.world import Provider
from vpce_tools.fake_slack import FakeSlack
from vpce_tools.stack import LocalDeployment

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"

# The IDs events/ payloads use (events/README.md), bound to the world's real IDs at test time.
SERVICE = "vpce-svc-0e5a1b2c3d4e5f607"
ENDPOINT_ALLOWED = "vpce-0a1b2c3d4e5f60718"  # owner 111111111111: an allow grant
ENDPOINT_DENIED = "vpce-0b2c3d4e5f6071829"  # owner 222222222222: a deny grant
ENDPOINT_ESCALATED = "vpce-0c3d4e5f607182930"  # owner 333333333333: no grant, escalated
# Slack's documented example signing secret (api.slack.com "Verifying requests"): tests only.
SLACK_TEST_SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
SLACK_TEST_BOT_TOKEN = "xoxb-0000000000-test-token"


@pytest.fixture(scope="session")
def transformed() -> dict[str, Any]:
    return policies.transform()


@pytest.fixture(scope="session")
def function_policies(transformed: dict[str, Any]) -> dict[str, policies.FunctionPolicy]:
    """Every function's policies, with the optional parts of the template switched on."""
    return policies.function_policies(transformed, **policies.FEATURES)


@dataclass
class World:
    """A managed service with three pending connections (allowed, denied, escalated)."""

    provider: Provider
    deployment: LocalDeployment
    ids: dict[str, str]
    parameters: dict[str, str] = field(default_factory=dict)  # template parameters
    env: dict[str, str] = field(default_factory=dict)  # environment overrides (local stand-ins)

    def bind(self, text: str) -> str:
        for placeholder, real in self.ids.items():
            text = text.replace(placeholder, real)
        return text

    def event(self, path: Path) -> Any:
        return json.loads(self.bind(path.read_text(encoding="utf-8")))

    def tags(self, service_id: str) -> dict[str, str]:
        described = self.provider.client("ec2").describe_tags(
            Filters=[{"Name": "resource-id", "Values": [service_id]}]
        )["Tags"]
        return {t["Key"]: t["Value"] for t in described}


@pytest.fixture
def world(provider: Provider, deployment: LocalDeployment) -> Iterator[World]:
    svc = provider.create_service(acceptance_required=True)
    deployment.enroll(svc, name="payments-api")
    now = datetime.now(UTC)
    deps = deployment.deps()
    deps.registry.put(grant(svc.service_id, CONSUMER), by="test", now=now)
    deps.registry.put(
        grant(svc.service_id, OTHER, status=GrantStatus.DENY, principals=()), by="test", now=now
    )
    endpoints = {
        ENDPOINT_ALLOWED: provider.consumer(CONSUMER).create_endpoint(svc.service_name),
        ENDPOINT_DENIED: provider.consumer(OTHER).create_endpoint(svc.service_name),
        ENDPOINT_ESCALATED: provider.consumer(THIRD).create_endpoint(svc.service_name),
    }
    converge(svc.service_id, deps, endpoint_ids=[endpoints[ENDPOINT_ESCALATED]])
    secrets = provider.client("secretsmanager")
    signing = secrets.create_secret(Name="slack-signing", SecretString=SLACK_TEST_SIGNING_SECRET)
    token = secrets.create_secret(Name="slack-bot-token", SecretString=SLACK_TEST_BOT_TOKEN)
    parameters = {
        **policies.FEATURES,
        "SlackSigningSecretArn": signing["ARN"],
        "SlackBotTokenSecretArn": token["ARN"],
    }
    with FakeSlack(
        token=SLACK_TEST_BOT_TOKEN,
        signing_secret=SLACK_TEST_SIGNING_SECRET,
        team_id=parameters["SlackTeamId"],
    ) as slack:
        yield World(
            provider,
            deployment,
            {SERVICE: svc.service_id, **endpoints},
            parameters=parameters,
            env={"SLACK_API_URL": slack.api_url},
        )


class CallRecorder:
    """Records every API call of every botocore client created while active (boto3's and
    pynamodb's own sessions alike), as the IAM action and resources it needs."""

    def __init__(self) -> None:
        self.calls: list[policies.Call] = []

    def hook(self, params: Mapping[str, Any], model: Any, **_: Any) -> None:
        service = model.service_model.endpoint_prefix
        self.calls.append(policies.to_call(service, model.name, params))


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> CallRecorder:
    recorder = CallRecorder()
    original = botocore.session.Session.create_client

    def create_client(self: botocore.session.Session, *args: Any, **kwargs: Any) -> Any:
        client = original(self, *args, **kwargs)
        client.meta.events.register("before-parameter-build", recorder.hook)
        return client

    monkeypatch.setattr(botocore.session.Session, "create_client", create_client)
    return recorder
