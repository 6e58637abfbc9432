"""The benchmark's peer is what it claims to be (one Accept call per Connect notification), and its
figures are medians with their spread."""

from __future__ import annotations

import math
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from conftest import OTHER, grant
from vpce_tools.bench.peer import NaiveDesign
from vpce_tools.bench.scenarios import percentile, unsubscribe_queue
from vpce_tools.bench.spread import Spread, ratio
from vpce_tools.emulator.world import Consumer, EndpointService, Provider
from vpce_tools.stack import LocalDeployment


def test_the_naive_design_makes_one_accept_call_per_connect_notification(
    deployment: LocalDeployment,
    service: EndpointService,
    consumer: Consumer,
    other: Consumer,
    provider: Provider,
) -> None:
    registry = deployment.deps().registry
    for account in (consumer.account_id, OTHER):
        registry.put(grant(service.service_id, account), by="t", now=datetime.now(UTC))
    stranger = provider.consumer("444444444444")  # no grant: not accepted
    unsubscribe_queue(provider, deployment)
    design = NaiveDesign(deployment)
    accepts: list[list[str]] = []

    def on_accept(params: Any = None, **_: Any) -> None:
        accepts.append(list(params["VpcEndpointIds"]))

    design.hooks.append(
        lambda deps: deps.ec2.client.meta.events.register(
            "before-parameter-build.ec2.AcceptVpcEndpointConnections", on_accept
        )
    )
    design.start()
    allowed = [a.create_endpoint(service.service_name) for a in (consumer, other, consumer)]
    refused = stranger.create_endpoint(service.service_name)
    # 4 Connect notifications, then an Accept notification per accept (published from within
    # the invocations themselves): wait until all 7 invocations are done
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (design.submitted < 7 or design.in_flight()):
        time.sleep(0.05)
    design.close()
    assert sorted(accepts) == sorted([[v] for v in allowed])
    assert design.outcomes == Counter({"accepted": 3, "not accepted": 1, "ignored": 3})
    states = {c["VpcEndpointId"]: c["VpcEndpointState"] for c in provider.connections()}
    assert {states[v] for v in allowed} == {"available"}
    assert states[refused] == "pendingAcceptance"


def test_a_stopped_design_starts_no_invocation(
    deployment: LocalDeployment, service: EndpointService, consumer: Consumer, provider: Provider
) -> None:
    unsubscribe_queue(provider, deployment)
    design = NaiveDesign(deployment)
    design.start()
    design.close()
    consumer.create_endpoint(service.service_name)
    assert design.outcomes == Counter()


def test_spread_shows_the_median_then_min_max() -> None:
    assert Spread.of([3.0, 1.0, 2.0]).show("{:.1f}".format, " s") == "2.0 s (1.0-3.0)"
    assert Spread.of([4.0, 4.0]).show("{:g}".format) == "4"
    with pytest.raises(ValueError, match="at least one"):
        Spread.of([])


def test_a_connection_never_available_is_the_slowest() -> None:
    values = [0.5, 0.7, math.inf, 0.6]
    assert percentile(values, 50) == 0.6
    assert percentile(values, 95) == math.inf
    assert percentile([1.0], 95) == 1.0


def test_ratio_is_how_many_times_more_the_peer_needs() -> None:
    assert ratio(4, 500) == "125.0x"
    assert ratio(0, 0) == "n/a"
