"""A whole service's allow-list against the registry: what it needs, and making it so.

`service_wanted()` is the rule: the principals of every account's deciding grant
(grants.wanted_principals), where the accounts are the grants' own consumers and, with
OU/organization grants on, the active member accounts of every OU/organization that an allow
grant names (Directory.members), each placed by its membership. When a member list or a
membership cannot be read, the answer is marked incomplete: callers then add what is known to be
needed and remove nothing (an unreadable dependency never strips an allow-list).

`reconcile()` adds the missing principals and removes the extra ones this deployment added
(ownership.py; the provider's own entries are never touched), audited; shadow/dry-run audits
`would-…` and changes nothing. The sweep (sweep/principals.py) and an OU/organization grant's
registry change (grants.py) both use it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from . import ownership
from . import validation as v
from .converge import Deps
from .grants import principal_records, service_grants, wanted_principals
from .model import GrantStatus, Membership, Scope, scope_of

log = logging.getLogger("vpce_approver.allowlist")

LOG_LIMIT = 20  # principals named per list in a log line or a summary


@dataclass
class Wanted:
    principals: set[str]
    incomplete: str | None = None  # why the set may miss principals (then: remove nothing)
    members: int = 0  # member accounts placed through OU/organization grants


def service_wanted(service_id: str, deps: Deps) -> Wanted:
    """The principals the service's allow-list needs now (see the module docstring)."""
    grants = service_grants(service_id, deps)
    directory = deps.registry.directory
    memberships: dict[str, Membership] = {}
    incomplete = None
    members: set[str] = set()
    if directory is not None:
        scopes = sorted(
            c
            for (_, c), grant in grants.items()
            if grant is not None
            and grant.status is GrantStatus.ALLOW
            and scope_of(c) is not Scope.ACCOUNT
        )
        for scope in scopes:
            found = directory.members(scope)
            if found is None:
                incomplete = f"the member accounts of {scope} could not be read"
                continue
            members |= found
        accounts = members | {c for _, c in grants if scope_of(c) is Scope.ACCOUNT}
        if accounts:
            memberships = directory.memberships(sorted(accounts))
        unknown = [m for m in memberships.values() if not m.known]
        if unknown and incomplete is None:
            incomplete = f"the membership of account {unknown[0].account} could not be read"
    wanted = wanted_principals(
        service_id,
        grants,
        deps.clock(),
        allow_wildcard=deps.settings.allow_wildcard_principal,
        memberships=memberships,
        partition=v.partition_of(deps.settings.region),
    )
    return Wanted(wanted, incomplete, len(members))


@dataclass
class AllowListDrift:
    """One service's allow-list against the registry (and what was done about it)."""

    service_id: str
    missing: tuple[str, ...] = ()  # a live grant needs them, not on the list
    extra: tuple[str, ...] = ()  # added by this deployment, no live grant needs them
    foreign: int = 0  # not needed, not added by this deployment: left alone
    listed: int = 0
    outcome: str = "in-sync"  # in-sync | fixed | would-fix | failed:<error>
    incomplete: str | None = None  # OU members/membership unreadable: nothing removed
    members: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def drifted(self) -> bool:
        return bool(self.missing or self.extra)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "listed": self.listed,
            "missing": len(self.missing),
            "extra": len(self.extra),
            "outcome": self.outcome,
        }
        if self.missing:
            out["missing_principals"] = list(self.missing[:LOG_LIMIT])
        if self.extra:
            out["extra_principals"] = list(self.extra[:LOG_LIMIT])
        if self.foreign:
            out["foreign"] = self.foreign
        if self.members:
            out["organization_members"] = self.members
        if self.incomplete:
            out["incomplete"] = self.incomplete
        return out


def inspect(service_id: str, deps: Deps) -> AllowListDrift:
    """The service's allow-list drift, read only (registry, organization, EC2, ownership)."""
    wanted = service_wanted(service_id, deps)
    listed = deps.ec2.allowed_principals(service_id)
    unneeded = listed - wanted.principals
    mine = ownership.owned(service_id, unneeded) if unneeded else set()
    if wanted.incomplete:
        log.warning("allow-list of %s: %s; nothing is removed", service_id, wanted.incomplete)
    return AllowListDrift(
        service_id,
        missing=tuple(sorted(wanted.principals - listed)),
        extra=() if wanted.incomplete else tuple(sorted(mine)),
        foreign=len(unneeded - mine),
        listed=len(listed),
        incomplete=wanted.incomplete,
        members=wanted.members,
    )


def reconcile(
    service_id: str,
    deps: Deps,
    *,
    act: bool,
    actor: str,
    trigger: str,
    subject: str | None = None,
    consumer: str | None = None,
) -> AllowListDrift:
    """Inspect, then (acting) add the missing principals and remove the extra ones, audited
    (subject `service#<id>` unless given); not acting, audit `would-…` and change nothing."""
    drift = inspect(service_id, deps)
    if not drift.drifted:
        return drift
    now = deps.clock()
    if act:
        ownership.claim(service_id, drift.missing, by=actor, now=now)
        deps.ec2.modify_principals(service_id, add=drift.missing, remove=drift.extra)
        ownership.release(service_id, drift.extra)
    drift.outcome = "fixed" if act else "would-fix"
    deps.audit.write(
        principal_records(
            service_id,
            subject=subject or f"service#{service_id}",
            actor=actor,
            trigger=trigger,
            at=now,
            added=drift.missing,
            removed=drift.extra,
            shadow=not act,
            consumer=consumer,
        )
    )
    if act:
        deps.metrics.add_metric("PrincipalsAdded", "Count", len(drift.missing))
        deps.metrics.add_metric("PrincipalsRemoved", "Count", len(drift.extra))
    deps.metrics.add_metric("AllowListDrift", "Count", len(drift.missing) + len(drift.extra))
    log.warning(
        "allow-list drift on %s: missing %s, extra %s (%s)",
        service_id,
        list(drift.missing[:LOG_LIMIT]),
        list(drift.extra[:LOG_LIMIT]),
        drift.outcome,
    )
    return drift
