"""`make demo` step: a registry edit grants access to a waiting consumer.

The consumer with no grant (escalated, still pendingAcceptance) gets a grant written to the
registry; the registry's DynamoDB stream delivers the change to the registry stream handler,
which puts the consumer's principal on the service's allowed principals and converges its
waiting connection: pendingAcceptance -> available, with nobody touching the endpoint service.

Register it with the demo: `demo.STEPS.append(registry_grant_step)`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from vpce_approver.model import Grant, GrantStatus

from .stream_poller import registry_poller

if TYPE_CHECKING:
    from vpce_approver.converge import Deps

    from .demo import World

WAITING = "stranger"


def registry_grant_step(world: World, endpoints: dict[str, str]) -> None:
    from .demo import STRANGER

    n, svc = world.narrator, world.service.service_id
    vpce = endpoints[WAITING]
    consumer = world.consumers[STRANGER]
    principal = f"arn:aws:iam::{consumer.account_id}:root"
    deps = world.deployment.deps()
    stream = registry_poller(world.deployment, deps, start="LATEST")

    n.title("A registry edit grants access to the waiting consumer (registry stream)")
    n.say(f"before: {vpce} of {consumer.account_id} is {world.state(vpce)}")
    n.say(f"        {principal} on the allowed principals: {_listed(deps, svc, principal)}")
    grant = Grant(
        service_id=svc,
        consumer=consumer.account_id,
        status=GrantStatus.ALLOW,
        principals=(principal,),
        note="approved by the platform team",
    )
    deps.registry.put(grant, by="platform-team", now=datetime.now(UTC))
    n.say(f"vpce-approver registry add {svc} {consumer.account_id} --by platform-team")
    handled = stream.drain()
    world.deployment.poller(deps).drain()  # the Accept notification closes the escalation
    n.say(f"{handled} stream record(s) handled in {stream.invocations} invocation(s)")
    n.say(f"after:  {vpce} is {world.state(vpce)}")
    n.say(f"        {principal} on the allowed principals: {_listed(deps, svc, principal)}")
    escalation = deps.escalations.get(vpce)
    if escalation is not None:
        n.say(f"        escalation {escalation.state} ({escalation.outcome or '-'})")


def _listed(deps: Deps, service_id: str, principal: str) -> str:
    return "yes" if principal in deps.ec2.allowed_principals(service_id) else "no"
