"""The limit lease (limits.py) on the emulated escalations table: exclusive, released, taken over
after LEASE_TTL when its holder died, and a converge that cannot get it defers (retryable)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from conftest import CONSUMER, OTHER, grant
from vpce_approver.converge import converge
from vpce_approver.limits import LEASE_TTL, LeaseItem, Leases, lease_key
from vpce_approver.tables import EscalationItem
from vpce_tools.emulator.world import EndpointService, Provider
from vpce_tools.stack import LocalDeployment

SVC = "vpce-svc-0123456789abcdef0"


def test_lease_is_exclusive_released_and_taken_over_after_ttl(deployment: LocalDeployment) -> None:
    now = datetime.now(UTC)
    leases = Leases(wait=0)
    first = leases.acquire(SVC, [CONSUMER, OTHER], lambda: now)
    assert first.consumers == {CONSUMER, OTHER}
    second = leases.acquire(SVC, [CONSUMER], lambda: now)
    assert second.consumers == set()  # held by the first
    leases.release(first)
    assert leases.acquire(SVC, [CONSUMER], lambda: now).consumers == {CONSUMER}
    # that holder "dies" without releasing: another converge gets the lease only after LEASE_TTL
    assert leases.acquire(SVC, [CONSUMER], lambda: now + LEASE_TTL / 2).consumers == set()
    later = now + LEASE_TTL + LEASE_TTL / 10
    assert leases.acquire(SVC, [CONSUMER], lambda: later).consumers == {CONSUMER}
    item = LeaseItem.get(lease_key(SVC, CONSUMER))
    assert item.holder is not None
    # the lease item never shows up as an escalation (no `state`: not in the by_state index)
    assert list(EscalationItem.by_state.query("open")) == []


def test_a_busy_lease_defers_the_consumers_connections(
    deployment: LocalDeployment, provider: Provider, service: EndpointService
) -> None:
    deps = replace(deployment.deps(), leases=Leases(wait=0))
    deps.registry.put(grant(service.service_id, max_endpoints=2), by="t", now=datetime.now(UTC))
    deps.registry.put(grant(service.service_id, consumer=OTHER), by="t", now=datetime.now(UTC))
    limited = provider.consumer(CONSUMER).create_endpoint(service.service_name)
    free = provider.consumer(OTHER).create_endpoint(service.service_name)
    other = Leases(wait=0).acquire(service.service_id, [CONSUMER], deps.clock)  # a converge
    report = converge(service.service_id, deps)
    assert report.accepted == [free]  # a consumer without a limit takes no lease
    assert report.retryable == [limited]  # deferred: the notification is redelivered
    assert report.summary()["none:deferred"] == 1
    Leases().release(other)
    assert converge(service.service_id, deps, endpoint_ids=[limited]).accepted == [limited]
