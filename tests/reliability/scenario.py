"""A mixed population for the fault tests: an allowed consumer, a denied one, an unknown one."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from conftest import CONSUMER, OTHER, THIRD, grant
from vpce_approver.converge import Deps
from vpce_approver.handlers.notifications import process as handle
from vpce_approver.model import GrantStatus
from vpce_tools.emulator.world import EndpointService, Provider
from vpce_tools.stack import LocalDeployment

ALLOWED, DENIED, UNKNOWN = CONSUMER, OTHER, THIRD
Process = Callable[[Sequence[Mapping[str, Any]]], list[str]]


def processor(deps: Deps) -> Process:
    """The notification handler's batch function bound to deps (what the Lambda runs)."""
    return lambda records: handle(records, deps)


def grants(deployment: LocalDeployment, service: EndpointService) -> None:
    registry = deployment.deps().registry
    now = datetime.now(UTC)
    registry.put(grant(service.service_id), by="test", now=now)
    registry.put(
        grant(service.service_id, consumer=DENIED, status=GrantStatus.DENY, principals=()),
        by="test",
        now=now,
    )


def populate(
    deployment: LocalDeployment,
    provider: Provider,
    service: EndpointService,
    n: int,
    *,
    split: tuple[float, float] = (0.5, 0.25),
) -> dict[str, list[str]]:
    """n connections: `split[0]` from the allowed consumer, `split[1]` denied, the rest unknown
    (escalated). Returns the endpoint IDs by account."""
    grants(deployment, service)
    allowed, denied = int(n * split[0]), int(n * split[1])
    counts = {ALLOWED: allowed, DENIED: denied, UNKNOWN: n - allowed - denied}
    return {
        account: provider.consumer(account).create_endpoints(service.service_name, count)
        if count
        else []
        for account, count in counts.items()
    }
