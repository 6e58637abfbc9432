"""How the notification path keeps Accept calls few without a batching window (call counts, never
speed): a hint converges everything pending on its service, and the pacer makes what arrives while
it waits part of the same Accept call."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from conftest import OTHER, THIRD, grant
from vpce_approver.converge import Deps
from vpce_approver.handlers.notifications import process
from vpce_approver.pacing import Pacer
from vpce_tools.emulator.throttle import FakeClock
from vpce_tools.emulator.world import Consumer, EndpointService, Provider
from vpce_tools.stack import LocalDeployment


def counted(deps: Deps) -> Counter[str]:
    """EC2 API calls made by this Deps' client, by operation."""
    calls: Counter[str] = Counter()

    def on_call(model: Any = None, **_: Any) -> None:
        calls[model.name] += 1

    deps.ec2.client.meta.events.register("before-call.ec2", on_call)
    return calls


def connect_record(service: EndpointService, vpce: str, message_id: str) -> dict[str, Any]:
    body = {"serviceId": service.service_id, "vpcEndpointId": vpce, "eventType": "Connect"}
    return {"messageId": message_id, "body": json.dumps(body), "eventSource": "aws:sqs"}


def registered(deployment: LocalDeployment, service: EndpointService, *accounts: str) -> None:
    registry = deployment.deps().registry
    for account in accounts:
        registry.put(grant(service.service_id, account), by="t", now=datetime.now(UTC))


def states(provider: Provider, service: EndpointService) -> Counter[str]:
    return Counter(str(c["VpcEndpointState"]) for c in provider.connections(service.service_id))


def test_one_hint_decides_everything_pending_on_its_service_in_one_accept_call(
    deployment: LocalDeployment,
    service: EndpointService,
    consumer: Consumer,
    other: Consumer,
    provider: Provider,
) -> None:
    registered(deployment, service, consumer.account_id, OTHER)
    first = consumer.create_endpoint(service.service_name)
    for actor in (consumer, other, other, consumer):
        actor.create_endpoint(service.service_name)
    provider.client("sqs").purge_queue(QueueUrl=deployment.queue_url)  # only one hint survives
    deps = deployment.deps()
    calls = counted(deps)
    assert process([connect_record(service, first, "m1")], deps) == []
    assert states(provider, service) == Counter({"available": 5})
    assert calls == Counter(
        {"DescribeVpcEndpointConnections": 1, "AcceptVpcEndpointConnections": 1}
    )


def test_a_burst_drained_ten_records_at_a_time_costs_one_accept_call(
    deployment: LocalDeployment,
    service: EndpointService,
    consumer: Consumer,
    other: Consumer,
    provider: Provider,
) -> None:
    """The event source without a window hands over at most 10 records per invocation: the first
    invocation decides the whole burst, the later ones find it decided."""
    registered(deployment, service, consumer.account_id, OTHER)
    for i in range(30):
        (consumer if i % 2 else other).create_endpoint(service.service_name)
    deps = deployment.deps()
    calls = counted(deps)
    poller = deployment.poller(deps, batch_size=10)
    poller.drain()
    assert states(provider, service) == Counter({"available": 30})
    assert calls["AcceptVpcEndpointConnections"] == 1
    assert poller.invocations >= 6  # 30 Connect hints, then 30 Accept notifications
    assert deployment.dlq_depth() == 0


def test_what_arrives_while_the_pacer_waits_joins_the_same_accept_call(
    deployment: LocalDeployment,
    service: EndpointService,
    consumer: Consumer,
    other: Consumer,
    provider: Provider,
) -> None:
    registered(deployment, service, consumer.account_id, OTHER, THIRD)
    third = provider.consumer(THIRD)
    clock = FakeClock()
    arrivals: list[Callable[[], str]] = [
        lambda: other.create_endpoint(service.service_name),
        lambda: third.create_endpoint(service.service_name),
    ]

    def sleep(seconds: float) -> None:  # two Connects arrive during the wait
        clock.advance(seconds)
        for arrive in arrivals:
            arrive()

    pacer = Pacer(0.5, 1.0, clock=clock, sleep=sleep)
    deps = deployment.deps()
    calls = counted(deps)
    a = consumer.create_endpoint(service.service_name)
    assert process([connect_record(service, a, "m1")], deps, pacer) == []
    assert calls["AcceptVpcEndpointConnections"] == 1  # the token was there: no wait
    assert pacer.waited == 0

    b = consumer.create_endpoint(service.service_name)
    assert process([connect_record(service, b, "m2")], deps, pacer) == []
    assert pacer.waited > 0  # no token: it waited, and meanwhile two more Connects came
    assert calls["AcceptVpcEndpointConnections"] == 2  # b and both arrivals: one call
    assert states(provider, service) == Counter({"available": 4})


def test_a_hint_already_decided_costs_one_describe_and_no_wait(
    deployment: LocalDeployment,
    service: EndpointService,
    consumer: Consumer,
    provider: Provider,
) -> None:
    registered(deployment, service, consumer.account_id)
    clock = FakeClock()
    pacer = Pacer(0.5, 1.0, clock=clock, sleep=clock.advance)
    deps = deployment.deps()
    a = consumer.create_endpoint(service.service_name)
    b = consumer.create_endpoint(service.service_name)
    assert process([connect_record(service, a, "m1")], deps, pacer) == []  # decides a and b
    assert pacer.delay() > 0
    calls = counted(deps)
    assert process([connect_record(service, b, "m2")], deps, pacer) == []
    assert calls == Counter({"DescribeVpcEndpointConnections": 1})
    assert pacer.waited == 0
    assert states(provider, service) == Counter({"available": 2})


def test_escalations_alone_spend_no_token(
    deployment: LocalDeployment,
    service: EndpointService,
    consumer: Consumer,
    provider: Provider,
) -> None:
    """No grant: the converge escalates (no Accept/Reject call), so the next one need not wait."""
    clock = FakeClock()
    pacer = Pacer(0.5, 1.0, clock=clock, sleep=clock.advance)
    deps = deployment.deps()
    calls = counted(deps)
    for i in range(3):
        vpce = consumer.create_endpoint(service.service_name)
        assert process([connect_record(service, vpce, f"m{i}")], deps, pacer) == []
    assert pacer.waited == 0
    assert calls["AcceptVpcEndpointConnections"] == calls["RejectVpcEndpointConnections"] == 0
    assert states(provider, service) == Counter({"pendingAcceptance": 3})
