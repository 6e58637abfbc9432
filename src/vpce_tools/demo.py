"""`make demo`: vpce-approver's main job, end to end on the local emulator (no AWS account).

A provider enrolls an endpoint service; consumers in other accounts create interface endpoints;
their Connect notifications flow SNS -> SQS -> the notification handler, which accepts registered
consumers, rejects denied ones and escalates the rest, each with its reason in the audit trail."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TextIO

from vpce_approver.model import Grant, GrantStatus
from vpce_approver.tables import AuditItem, EscalationItem

from .emulator.testing import emulated_aws
from .emulator.world import Consumer, EndpointService, Organization, Provider
from .stack import LocalDeployment

TEAM_A, PARTNER, STRANGER, LIMITED = "111111111111", "222222222222", "333333333333", "444444444444"
LATE = "555555555555"


class Narrator:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.step = 0

    def title(self, text: str) -> None:
        self.step += 1
        print(f"\n== {self.step}. {text}", file=self.out)

    def say(self, text: str = "") -> None:
        print(f"   {text}" if text else "", file=self.out)

    def table(self, rows: list[tuple[str, ...]], header: tuple[str, ...]) -> None:
        widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
        for row in [header, tuple("-" * w for w in widths), *rows]:
            self.say("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


@dataclass
class World:
    provider: Provider
    deployment: LocalDeployment
    service: EndpointService
    consumers: dict[str, Consumer]
    narrator: Narrator
    organization: Organization

    def state(self, vpce_id: str) -> str:
        for conn in self.provider.connections(self.service.service_id):
            if conn["VpcEndpointId"] == vpce_id:
                return str(conn["VpcEndpointState"])
        return "unknown"

    def last_decision(self, vpce_id: str) -> tuple[str, str]:
        items = list(AuditItem.query(vpce_id, scan_index_forward=False, limit=1))
        if not items:
            return ("-", "-")
        return (items[0].action, items[0].reason or "")


def grant(
    service_id: str,
    consumer: str,
    status: GrantStatus,
    *,
    note: str,
    owner: str | None = None,
    max_endpoints: int | None = None,
) -> Grant:
    principals = (f"arn:aws:iam::{consumer}:root",) if status is GrantStatus.ALLOW else ()
    return Grant(
        service_id=service_id,
        consumer=consumer,
        status=status,
        principals=principals,
        owner=owner,
        note=note,
        max_endpoints=max_endpoints,
    )


def setup(narrator: Narrator) -> World:
    narrator.title("Provider enrolls its endpoint service (acceptance required)")
    provider = Provider()
    # OU/organization grants on from the start (account grants decide as before: the consumers
    # below are outside the organization); the default MEMBERSHIP_MAX_AGE (300 s): the
    # organization step shows that a sweep that saw a move is what ends a cached membership.
    organization = provider.create_organization()
    deployment = LocalDeployment.create(provider, organization_grants=True)
    service = provider.create_service(acceptance_required=True)
    notification = deployment.enroll(service, name="payments-api")
    narrator.say(f"service {service.service_id} ({service.service_name})")
    narrator.say(f"connection notification {notification} -> {deployment.topic_arn}")
    narrator.say(
        f"the provider's account {provider.account_id} is the management account of"
        f" organization {organization.organization_id} (aws organizations create-organization)"
    )
    consumers = {a: provider.consumer(a) for a in (TEAM_A, PARTNER, STRANGER, LIMITED)}
    return World(provider, deployment, service, consumers, narrator, organization)


def registry_and_connects(world: World) -> dict[str, str]:
    n, svc = world.narrator, world.service.service_id
    n.title("Platform team fills the registry")
    registry = world.deployment.deps().registry
    now = datetime.now(UTC)
    for g in (
        grant(svc, TEAM_A, GrantStatus.ALLOW, owner="team-a@example.com", note="payments team"),
        grant(svc, PARTNER, GrantStatus.DENY, note="offboarded partner"),
        grant(svc, LIMITED, GrantStatus.ALLOW, max_endpoints=1, note="one endpoint only"),
    ):
        registry.put(g, by="demo", now=now)
        limit = f", max {g.max_endpoints} endpoint(s)" if g.max_endpoints else ""
        n.say(f"{g.status.value:<6} {g.consumer} on {g.service_id}{limit}  ({g.note})")
    n.say(f"(no grant for {STRANGER})")

    n.title("Consumers create interface endpoints; notifications flow SNS -> SQS -> handler")
    endpoints = {
        "team-a": world.consumers[TEAM_A].create_endpoint(world.service.service_name),
        "partner": world.consumers[PARTNER].create_endpoint(world.service.service_name),
        "stranger": world.consumers[STRANGER].create_endpoint(world.service.service_name),
        "limited-1": world.consumers[LIMITED].create_endpoint(world.service.service_name),
    }
    poller = world.deployment.poller()
    poller.drain()
    endpoints["limited-2"] = world.consumers[LIMITED].create_endpoint(world.service.service_name)
    poller.drain()
    n.say(f"{poller.received} notification(s) handled in {poller.invocations} invocation(s)")
    show(world, endpoints)
    return endpoints


def show(world: World, endpoints: dict[str, str]) -> None:
    rows: list[tuple[str, ...]] = []
    for label, vpce in endpoints.items():
        action, reason = world.last_decision(vpce)
        rows.append((label, vpce, world.state(vpce), action, reason))
    world.narrator.table(rows, ("who", "endpoint", "state", "decision", "reason"))
    open_escalations = [e.vpc_endpoint_id for e in EscalationItem.scan() if e.state == "open"]
    world.narrator.say(f"open escalations (waiting for a human): {len(open_escalations)}")


def slack_click(world: World, endpoints: dict[str, str]) -> None:
    """The over-limit escalation goes to Slack; an approver clicks Approve."""
    from .slack_local import demo_click

    n = world.narrator
    n.title("An approver clicks Approve in Slack (local Slack stand-in, signed request)")
    vpce = endpoints["limited-2"]

    def say(block: str) -> None:
        for line in block.rstrip().splitlines():
            n.say(line)

    result = demo_click(world.deployment, vpce, out=say)
    n.say(f"-> {vpce} is {world.state(vpce)} (escalation {result.outcome})")


def registry_grant(world: World, endpoints: dict[str, str]) -> None:
    from .registry_demo import registry_grant_step

    registry_grant_step(world, endpoints)


def sweep_recovers(world: World, endpoints: dict[str, str]) -> None:
    from .commands.sweep import demo_lost_notification

    world.narrator.title("A notification is lost; the scheduled sweep converges anyway")
    late = world.provider.consumer(LATE)
    if not demo_lost_notification(world.deployment, world.service, late, say=world.narrator.say):
        raise RuntimeError("the sweep did not recover the connection whose notification was lost")


def organization(world: World, endpoints: dict[str, str]) -> None:
    from .org_demo import organization_step

    organization_step(world, endpoints)


STEPS: list[Callable[[World, dict[str, str]], None]] = [
    registry_grant,
    slack_click,
    sweep_recovers,
    organization,
]


@contextmanager
def _quiet_logs() -> Iterator[None]:
    """The narration is the output: the handlers' structured logs would drown it."""
    import logging

    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def run(out: TextIO = sys.stdout) -> int:
    narrator = Narrator(out)
    print("vpce-approver demo: everything below runs on the local emulator", file=out)
    with emulated_aws(), _quiet_logs():
        world = setup(narrator)
        endpoints = registry_and_connects(world)
        for step in STEPS:
            step(world, endpoints)
        narrator.title("Audit trail (every decision: who, what, why, when)")
        for item in sorted(AuditItem.scan(), key=lambda i: i.sk):
            narrator.say(
                f"{item.at}  {item.actor:<14} {item.action:<18} {item.subject}  {item.reason}"
            )
    print("\ndemo complete", file=out)
    return 0
