"""Decisions that bad data and races cannot bend (issue 11 §2 and §3), on the emulator:

- a live deny wins even when the consumer also has a malformed item;
- max_endpoints admits the earliest connections, also when they were created in the same second
  and when a notification names only a later one;
- converges running at once (real threads) never admit more than max_endpoints of one consumer;
- a grant suspended, denied or removed between converge's registry read and its Accept leaves no
  connection available on the old grant (the edit is injected exactly there).
Each records its figures for docs/RELIABILITY.md."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from conftest import CONSUMER, OTHER, grant
from reliability.conftest import Figures, tally
from vpce_approver.converge import Deps, Report, converge
from vpce_approver.limits import LeaseItem
from vpce_approver.model import Connection, GrantStatus
from vpce_approver.tables import AuditItem, EscalationItem, RegistryItem
from vpce_tools.emulator.world import EndpointService, Provider
from vpce_tools.faults import (
    Injector,
    RecordingPort,
    check_deployment,
    model_client,
    no_sleep,
    table_is,
)
from vpce_tools.stack import LocalDeployment
from vpce_tools.stream_poller import registry_poller


def raw_put(deployment: LocalDeployment, service_id: str, **attrs: dict[str, Any]) -> None:
    """An item written around the CLI, with a wrongly typed attribute."""
    item = {
        "service_id": {"S": service_id},
        "consumer": {"S": CONSUMER},
        "status": {"S": "allow"},
        **attrs,
    }
    deployment.provider.client("dynamodb").put_item(
        TableName=deployment.settings.registry_table, Item=item
    )


def put(deps: Deps, *grants: Any) -> None:
    for g in grants:
        deps.registry.put(g, by="test", now=datetime.now(UTC))


def live(provider: Provider, service_id: str, owner: str = CONSUMER) -> list[str]:
    return [
        str(c["VpcEndpointId"])
        for c in provider.connections()
        if c["ServiceId"] == service_id
        and c["VpcEndpointOwner"] == owner
        and str(c["VpcEndpointState"]).lower() in ("pending", "available")
    ]


def described(deps: Deps, service_id: str) -> list[Connection]:
    """The connections in Describe's order."""
    return deps.ec2.connections(service_id)


# ------------------------------------------------------------------ §2: a deny wins over bad data


@pytest.mark.parametrize(
    ("malformed_at", "deny_at"), [("service", "*"), ("*", "service")], ids=["svc-bad", "star-bad"]
)
def test_live_deny_wins_over_a_malformed_item(
    deployment: LocalDeployment,
    provider: Provider,
    service: EndpointService,
    figures: Figures,
    malformed_at: str,
    deny_at: str,
) -> None:
    """Before: the malformed item turned the deny into an escalation (which a click could then
    approve). Now the connection is rejected as denied, and never escalated."""
    deps = deployment.deps()
    sid = service.service_id
    raw_put(deployment, sid if malformed_at == "service" else "*", max_endpoints={"S": "lots"})
    put(deps, grant(sid if deny_at == "service" else "*", status=GrantStatus.DENY, principals=()))
    vpce = provider.consumer(CONSUMER).create_endpoint(service.service_name)
    report = converge(sid, deps)
    assert report.rejected == [vpce]
    assert set(report.registry_errors) == {CONSUMER}  # still reported
    assert EscalationItem.count() == 0
    [record] = AuditItem.query(vpce)
    assert (record.action, record.code) == ("reject", "denied")
    verdict = check_deployment(provider, [sid])
    verdict.assert_sound()
    assert verdict.rejected == 1
    figures.record(
        load="1 waiting connection; a deny grant and a wrongly typed item for the same consumer",
        fault=f"registry: deny on {deny_at}, max_endpoints stored as a string on {malformed_at}",
        result=f"rejected as denied, never escalated; malformed item reported; {tally(verdict)}",
        verdict=verdict,
    )


# ------------------------------------------------------------------ §3: earliest first


def test_same_second_creations_admit_the_earliest_in_describe_order(
    deployment: LocalDeployment, provider: Provider, service: EndpointService, figures: Figures
) -> None:
    """CreationTimestamp has whole seconds. Three connections created in the same second, the
    earliest with *not* the smallest random ID: with max_endpoints=1 the earliest is admitted
    (Describe's order), never the one whose ID sorts first."""
    deps = deployment.deps()
    sid = service.service_id
    put(deps, grant(sid, max_endpoints=1))
    consumer = provider.consumer(CONSUMER)
    created = [consumer.create_endpoint(service.service_name) for _ in range(2)]
    while min(created) == created[0]:  # until a later one's ID sorts before the first's
        created.append(consumer.create_endpoint(service.service_name))
    conns = described(deps, sid)
    assert [c.vpc_endpoint_id for c in conns] == created  # Describe lists in creation order
    second = conns[0].created.replace(microsecond=0) if conns[0].created else None
    same_second = [replace(c, created=second) for c in conns]
    report = converge(sid, deps, pending=same_second)
    assert report.accepted == [created[0]]
    assert set(report.escalated) == set(created[1:])
    assert {EscalationItem.get(v).code for v in created[1:]} == {"over-limit"}
    verdict = check_deployment(provider, [sid])
    assert verdict.wrong_accepts == []
    assert verdict.lost == 0
    figures.record(
        load=f"{len(created)} connections of one consumer created in the same second",
        fault="max_endpoints=1; the earliest has not the smallest endpoint ID",
        result=f"the earliest accepted (Describe's order), {len(created) - 1} escalated over-limit",
        lost=verdict.lost,
        wrong_accepts=len(verdict.wrong_accepts),
    )


def test_a_notification_for_a_later_connection_still_admits_the_earliest(
    deployment: LocalDeployment, provider: Provider, service: EndpointService, figures: Figures
) -> None:
    deps = deployment.deps()
    sid = service.service_id
    put(deps, grant(sid, max_endpoints=1))
    first, later = provider.consumer(CONSUMER).create_endpoints(service.service_name, 2)
    report = converge(sid, deps, endpoint_ids=[later])  # the later one's notification came first
    assert report.accepted == [first]
    assert report.escalated == [later]
    assert live(provider, sid) == [first]
    verdict = check_deployment(provider, [sid])
    assert verdict.wrong_accepts == []
    assert verdict.lost == 0
    figures.record(
        load="2 connections of one consumer, max_endpoints=1",
        fault="the notification of the later connection is converged first (reordering)",
        result="the earlier one accepted, the later escalated over-limit",
        lost=verdict.lost,
        wrong_accepts=len(verdict.wrong_accepts),
    )


# ------------------------------------------------------------------ §3: concurrency


def run(
    deps: Deps,
    sid: str,
    mine: list[str],
    barrier: threading.Barrier,
    reports: list[Report],
    errors: list[BaseException],
) -> None:
    """One converge in its own thread, started together with the others."""
    try:
        barrier.wait(timeout=10)
        reports.append(converge(sid, deps, endpoint_ids=mine))
    except BaseException as exc:  # surfaced by the test's assert
        errors.append(exc)


def slow_describe(deps: Deps, seconds: float) -> Injector:
    """Every Describe answers `seconds` later (network latency): the window between a converge's
    count and its Accept is as wide as on AWS, so concurrent converges really overlap."""
    injector = Injector(deps.ec2.client)

    def pause(_: Mapping[str, Any]) -> None:
        threading.Event().wait(seconds)

    injector.after("DescribeVpcEndpointConnections", pause)
    return injector


@pytest.mark.parametrize(("limit", "connections", "threads", "rounds"), [(2, 6, 3, 4)])
def test_concurrent_converges_never_admit_more_than_max_endpoints(
    deployment: LocalDeployment,
    provider: Provider,
    service: EndpointService,
    figures: Figures,
    limit: int,
    connections: int,
    threads: int,
    rounds: int,
) -> None:
    """`threads` converges of one service run at once (notifications at concurrency 2, the
    stream, the sweep), each naming a different connection of the same limited consumer; in
    every round a fresh set of connections. Without the lease each counted 0 live and accepted:
    up to threads x limit. With it: exactly `limit` live per round, the rest escalated or
    deferred (and then escalated by the retry)."""
    deps = deployment.deps()
    sid = service.service_id
    consumer = provider.consumer(CONSUMER)
    admitted: list[int] = []
    deferred = 0
    with slow_describe(deps, 0.05):
        for _ in range(rounds):
            put(deps, grant(sid, max_endpoints=limit))  # each round: a fresh budget
            ids = consumer.create_endpoints(service.service_name, connections)
            barrier = threading.Barrier(threads)
            reports: list[Report] = []
            errors: list[BaseException] = []
            workers = [
                threading.Thread(
                    target=run, args=(deps, sid, ids[i::threads], barrier, reports, errors)
                )
                for i in range(threads)
            ]
            for w in workers:
                w.start()
            for w in workers:
                w.join(timeout=60)
            assert errors == []
            retry = [v for r in reports for v in r.retryable]
            deferred += len(retry)
            if retry:  # what SQS does with a record reported as failed
                converge(sid, deps, endpoint_ids=retry)
            now_live = [v for v in live(provider, sid) if v in ids]
            admitted.append(len(now_live))
            assert len(now_live) == limit, f"admitted {len(now_live)} with max_endpoints={limit}"
            assert now_live == ids[:limit]  # the earliest
            # withdraw them, so the next round starts with a clean budget
            consumer.delete_endpoints(*ids)
    verdict = check_deployment(provider, [sid])
    verdict.assert_sound(once=False)
    figures.record(
        load=f"{rounds} rounds: {connections} connections of one consumer, {threads} converges"
        " at once (threads), each naming a share",
        fault=f"max_endpoints={limit}; 50 ms Describe latency so the converges overlap",
        result=f"admitted per round: {admitted} (never more than {limit}, the earliest);"
        f" {deferred} connection(s) deferred by the lease and decided on retry",
        verdict=verdict,
    )


# ------------------------------------------------------------------ §3: edit before the Accept

EDITS: dict[str, Callable[[Deps, str], None]] = {
    "suspended": lambda deps, sid: put(deps, grant(sid, status=GrantStatus.SUSPENDED)),
    "denied": lambda deps, sid: put(deps, grant(sid, status=GrantStatus.DENY, principals=())),
    "removed": lambda deps, sid: RegistryItem.get(sid, CONSUMER).delete(),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_grant_edited_between_registry_read_and_accept_leaves_nothing_available(
    deployment: LocalDeployment,
    provider: Provider,
    service: EndpointService,
    figures: Figures,
    edit: str,
) -> None:
    """The edit is injected right before the Accept call is sent (after converge read the
    registry); the registry stream's effect runs too. The connection must not stay available
    on the old grant: it is rejected at once, audited with code grant-changed."""
    deps = deployment.deps()
    sid = service.service_id
    stream = registry_poller(deployment, deps, start="LATEST")
    put(deps, grant(sid))
    stream.drain()
    vpce = provider.consumer(CONSUMER).create_endpoint(service.service_name)
    with Injector(deps.ec2.client) as faults:
        fault = faults.before("AcceptVpcEndpointConnections", lambda: EDITS[edit](deps, sid))
        report = converge(sid, deps, endpoint_ids=[vpce])
    assert fault.injected == 1
    stream.drain()  # the edit's own effect (allow-list, converge, opt-in revocation)
    assert live(provider, sid) == []
    assert report.rejected == [vpce]
    codes = [(i.action, i.code) for i in AuditItem.query(vpce)]
    assert ("reject", "grant-changed") in codes
    verdict = check_deployment(provider, [sid])
    verdict.assert_sound()
    assert verdict.rejected == 1
    figures.record(
        load="1 allowed consumer, 1 waiting connection",
        fault=f"grant {edit} between converge's registry read and its Accept (injected there)",
        result="accepted, then rejected at once on the re-read (code grant-changed);"
        f" {tally(verdict)}",
        verdict=verdict,
    )


@pytest.fixture(autouse=True)
def _every_lease_released(deployment: LocalDeployment) -> Iterator[None]:
    """After every test: no limit lease is left held (each converge gave its leases back)."""
    yield
    leases = [i for i in LeaseItem.scan() if str(i.vpc_endpoint_id).startswith("#limit#")]
    assert [i.vpc_endpoint_id for i in leases if i.holder] == []


def test_a_failed_re_read_after_the_accept_loses_nothing(
    deployment: LocalDeployment, provider: Provider, service: EndpointService, figures: Figures
) -> None:
    """The registry read right after the Accept fails (beyond retries): the rest of the converge
    still runs (the escalation opened in the same converge is posted), nothing is lost."""
    port = RecordingPort()
    deps = deployment.deps(port=port)
    sid = service.service_id
    put(deps, grant(sid))
    ok = provider.consumer(CONSUMER).create_endpoint(service.service_name)
    stranger = provider.consumer(OTHER).create_endpoint(service.service_name)
    registry = table_is(deployment.settings.registry_table)
    reads: list[int] = []

    def second_read(request: Any) -> bool:
        if not registry(request):
            return False
        reads.append(1)
        return len(reads) > 1

    with Injector(model_client(RegistryItem)) as faults, no_sleep():
        fault = faults.fail("BatchGetItem", "InternalServerError", when=second_read)
        report = converge(sid, deps)
    assert fault.injected > 0
    assert report.accepted == [ok]
    assert report.escalated == [stranger]
    assert dict(port.opened_ids) == {stranger: 1}
    verdict = check_deployment(provider, [sid])
    verdict.assert_sound()
    figures.record(
        load="1 allowed and 1 unknown consumer converged together",
        fault=f"registry BatchGetItem after the Accept: InternalServerError ({fault.injected} x)",
        result=f"accept kept, escalation posted, error logged; {tally(verdict)}",
        verdict=verdict,
    )
