"""Allow-list reconcile: every managed service's allowed principals converge on the registry, like
its connections do, whatever happened to the registry stream (a batch in its DLQ, a principal
removed by hand in the console).

The rule is the stream path's (`grants.wanted_principals`) applied to the whole service:

- missing: a principal a live allow grant needs (its consumer's deciding grant; `*` grants
  included; the `*` principal only with ALLOW_WILDCARD_PRINCIPAL) that is not on the list: added;
- extra: a principal on the list that no live grant needs *and* that this deployment added
  (ownership.py): removed. Entries this deployment did not add (the provider's own) are never
  touched; they are only counted (`foreign`).

A malformed registry item is no grant (as on the stream path and in every decision): it adds
nothing, and a principal this deployment added only for it is removed. That only ever narrows who
may *request* a connection; removing a principal disconnects nobody.

Shadow mode and a dry run report the would-be changes (`would-principals-…` audit records) and
change nothing. Removing a principal disconnects nobody: revocation stays the drift check's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from .. import ownership
from ..converge import Deps
from ..grants import principal_records, service_grants, wanted_principals

log = logging.getLogger("vpce_approver.sweep")

LOG_LIMIT = 20  # principals named per list in a log line or a summary


@dataclass
class AllowListDrift:
    """One service's allow-list against the registry (and what the sweep did about it)."""

    service_id: str
    missing: tuple[str, ...] = ()  # a live grant needs them, not on the list
    extra: tuple[str, ...] = ()  # added by this deployment, no live grant needs them
    foreign: int = 0  # not needed, not added by this deployment: left alone
    listed: int = 0
    outcome: str = "in-sync"  # in-sync | fixed | would-fix | failed:<error>

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
        return out


def inspect(service_id: str, deps: Deps) -> AllowListDrift:
    """The service's allow-list drift, read only (registry, EC2, ownership records)."""
    grants = service_grants(service_id, deps)
    settings = deps.settings
    wanted = wanted_principals(
        service_id, grants, deps.clock(), allow_wildcard=settings.allow_wildcard_principal
    )
    listed = deps.ec2.allowed_principals(service_id)
    unneeded = listed - wanted
    mine = ownership.owned(service_id, unneeded) if unneeded else set()
    return AllowListDrift(
        service_id,
        missing=tuple(sorted(wanted - listed)),
        extra=tuple(sorted(mine)),
        foreign=len(unneeded - mine),
        listed=len(listed),
    )


def reconcile_principals(service_id: str, deps: Deps, *, act: bool) -> AllowListDrift:
    """Inspect, then (acting) add the missing principals and remove the extra ones, audited
    (subject service#<id>, actor sweep); not acting, audit `would-…` and change nothing."""
    drift = inspect(service_id, deps)
    if not drift.drifted:
        return drift
    now = deps.clock()
    if act:
        ownership.claim(service_id, drift.missing, by="sweep", now=now)
        deps.ec2.modify_principals(service_id, add=drift.missing, remove=drift.extra)
        ownership.release(service_id, drift.extra)
    drift.outcome = "fixed" if act else "would-fix"
    deps.audit.write(
        principal_records(
            service_id,
            subject=f"service#{service_id}",
            actor="sweep",
            trigger="sweep",
            at=now,
            added=drift.missing,
            removed=drift.extra,
            shadow=not act,
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


def reconcile_or_report(service_id: str, deps: Deps, *, act: bool) -> AllowListDrift:
    """reconcile_principals() for the sweep: a failure is reported as the outcome (and as a
    run error) and the service's connections are still converged."""
    try:
        return reconcile_principals(service_id, deps, act=act)
    except Exception as exc:
        log.exception("allowed principals of %s could not be reconciled", service_id)
        return AllowListDrift(service_id, outcome=f"failed:{type(exc).__name__}: {exc}")
