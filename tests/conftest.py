"""Shared fixtures: an emulated AWS (moto + the PrivateLink emulator) with a vpce-approver
deployment whose tables are built from template.yaml."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

# Never let a test reach a real account or a developer's profile.
for _var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_DEFAULT_PROFILE"):
    os.environ.pop(_var, None)
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "1")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "VpceApproverTest")

from vpce_approver.model import Grant, GrantStatus  # noqa: E402
from vpce_tools.emulator import configure_acceptance, throttle  # noqa: E402
from vpce_tools.emulator.testing import emulated_aws  # noqa: E402
from vpce_tools.emulator.world import Consumer, EndpointService, Provider  # noqa: E402
from vpce_tools.stack import LocalDeployment  # noqa: E402

CONSUMER = "111111111111"
OTHER = "222222222222"
THIRD = "333333333333"


@pytest.fixture
def aws() -> Iterator[None]:
    throttle.configure(False)
    configure_acceptance(0)
    with emulated_aws():
        yield
    throttle.configure(False)


@pytest.fixture
def provider(aws: None) -> Provider:
    return Provider()


@pytest.fixture
def deployment(provider: Provider) -> LocalDeployment:
    return LocalDeployment.create(provider)


@pytest.fixture
def service(provider: Provider, deployment: LocalDeployment) -> EndpointService:
    """A managed endpoint service (acceptance required, anyone may request)."""
    svc = provider.create_service(acceptance_required=True)
    deployment.enroll(svc, name="payments-api")
    return svc


@pytest.fixture
def consumer(provider: Provider) -> Consumer:
    return provider.consumer(CONSUMER)


@pytest.fixture
def other(provider: Provider) -> Consumer:
    return provider.consumer(OTHER)


class MetricsRecorder:
    def __init__(self) -> None:
        self.values: dict[str, float] = {}

    def add_metric(self, name: str, unit: str, value: float) -> None:
        self.values[name] = self.values.get(name, 0) + value


@pytest.fixture
def recorder() -> MetricsRecorder:
    return MetricsRecorder()


def grant(service_id: str, consumer: str = CONSUMER, **kwargs: Any) -> Grant:
    kwargs.setdefault("status", GrantStatus.ALLOW)
    kwargs.setdefault("principals", (f"arn:aws:iam::{consumer}:root",))
    return Grant(service_id=service_id, consumer=consumer, **kwargs)


def later(days: int = 30) -> datetime:
    return datetime.now(UTC) + timedelta(days=days)
