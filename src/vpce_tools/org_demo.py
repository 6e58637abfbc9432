"""`make demo` step: an OU grant onboards a brand-new account; moved out, the account is off.

The provider account is the organization's management account. One registry item names an OU
(`vpce-approver registry add SERVICE ou-…`). A new account is created and moved into a child OU
of it; the Organizations event starts a sweep (as the deployed stack's optional
OrganizationEvents rule does, and the scheduled sweep would within its interval anyway), which
reads the organization and puts the account's root on the allow-list. The account's endpoint is
then accepted on the OU grant, with nobody editing the registry. Moved out to another OU, the next
sweep removes its allow-list entry and its next connection is not accepted (its live endpoint
stays: revoking live connections is opt-in, as for a removed account grant).

Registered with the demo in demo.STEPS."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from vpce_approver.model import Grant, GrantStatus

from .emulator import organizations
from .local_events import describe_organization_event
from .stream_poller import registry_poller

if TYPE_CHECKING:
    from vpce_approver.converge import Deps

    from .demo import World

STEP_TITLE = "An OU grant onboards a brand-new account (AWS Organizations)"


class OrganizationsEvents:
    """The Organizations events the emulator publishes, collected until the demo sweeps."""

    def __init__(self) -> None:
        self.pending: list[organizations.Event] = []

    def __call__(self, event: organizations.Event) -> None:
        self.pending.append(event)

    def sweep(self, deps: Deps, say: Callable[[str], None]) -> dict[str, Any]:
        """Say which events arrived and run the one sweep they start; its summary."""
        from vpce_approver.sweep import sweep

        for event in self.pending:
            say(f"event: {describe_organization_event(event)}")
        self.pending.clear()
        return dict(sweep(deps).summary())


def organization_step(world: World, endpoints: dict[str, str]) -> None:
    deps = world.deployment.deps()
    events = OrganizationsEvents()
    organizations.add_listener(events)
    try:
        _run(world, deps, events, endpoints)
    finally:
        organizations.remove_listener(events)


def _run(world: World, deps: Deps, events: OrganizationsEvents, endpoints: dict[str, str]) -> None:
    n, svc, provider = world.narrator, world.service, world.provider
    n.title(STEP_TITLE)
    org = world.organization
    n.say(f"organization {org.organization_id}, management account {provider.account_id}")
    workloads = org.create_ou("workloads")
    prod = org.create_ou("prod", workloads)
    sandbox = org.create_ou("sandbox")
    n.say(f"aws organizations create-organizational-unit -> workloads {workloads}")
    n.say(f"                                                prod {prod} (inside workloads)")
    n.say(f"                                                sandbox {sandbox}")

    stream = registry_poller(world.deployment, deps, start="LATEST")
    deps.registry.put(
        Grant(svc.service_id, workloads, GrantStatus.ALLOW, note="every workloads account"),
        by="platform-team",
        now=datetime.now(UTC),
    )
    stream.drain()
    n.say(f"vpce-approver registry add {svc.service_id} {workloads}  (nested OUs included)")
    n.say(_swept("the scheduled sweep reads the organization", events.sweep(deps, n.say)))

    account = org.create_account("team-b")
    org.move(account, prod)
    n.say(f"aws organizations create-account team-b       -> {account}")
    n.say(f"aws organizations move-account {account} -> prod")
    n.say(_swept("the sweep these events start", events.sweep(deps, n.say)))
    principal = f"arn:aws:iam::{account}:root"
    n.say(f"{principal} on the allowed principals: {_listed(deps, svc.service_id, principal)}")

    consumer = provider.consumer(account, role_name="OrganizationAccountAccessRole")
    vpce = consumer.create_endpoint(svc.service_name)
    endpoints["team-b"] = vpce
    world.deployment.poller(deps).drain()
    n.say(f"{account} creates {vpce} (no registry edit for it) -> {world.state(vpce)}")
    n.say("decision: {}: {}".format(*world.last_decision(vpce)))

    org.move(account, sandbox)
    n.say(f"aws organizations move-account {account} -> sandbox (outside the granted OU)")
    n.say(_swept("the sweep it starts", events.sweep(deps, n.say)))
    n.say(f"{principal} on the allowed principals: {_listed(deps, svc.service_id, principal)}")
    try:
        second = consumer.create_endpoint(svc.service_name)
    except ClientError as exc:
        code = exc.response["Error"]["Code"]
        n.say(f"{account} creates another endpoint -> refused ({code}): not accepted")
    else:  # the service lets anyone create one ('*' on its allow-list): the policy decides
        world.deployment.poller(deps).drain()
        endpoints["team-b-moved-out"] = second
        n.say(f"{account} creates another endpoint {second} -> {world.state(second)}")
        n.say("decision: {}: {}".format(*world.last_decision(second)))
    n.say(
        f"its first endpoint {vpce} stays {world.state(vpce)}"
        " (revoking live connections is opt-in, as for a removed account grant)"
    )


def _swept(what: str, summary: dict[str, Any]) -> str:
    """'one sweep: 1 joined (210987654321), epoch 2' from a sweep's summary."""
    membership = summary.get("membership")
    if not isinstance(membership, dict):
        return f"{what}: OU/organization grants are off (no membership read)"
    if membership.get("error"):
        return f"{what}: the organization could not be read: {membership['error']}"
    changes = [
        f"{membership[key]} {key} ({', '.join(membership.get(f'{key}_accounts', []))})"
        for key in ("joined", "left", "moved")
        if membership.get(key)
    ]
    return f"{what}: {', '.join(changes) or 'no membership change'}, epoch {membership['epoch']}"


def _listed(deps: Deps, service_id: str, principal: str) -> str:
    return "yes" if principal in deps.ec2.allowed_principals(service_id) else "no"
