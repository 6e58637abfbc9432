"""Allow-list reconcile: every managed service's allowed principals converge on the registry, like
its connections do, whatever happened to the registry stream (a batch in its DLQ, a principal
removed by hand in the console).

The rule is the stream path's (`grants.wanted_principals`) applied to the whole service
(allowlist.py; with OU/organization grants, every member account of a granted OU counts):

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

from ..allowlist import AllowListDrift, inspect, reconcile
from ..converge import Deps

log = logging.getLogger("vpce_approver.sweep")

__all__ = ["AllowListDrift", "inspect", "reconcile_or_report", "reconcile_principals"]


def reconcile_principals(service_id: str, deps: Deps, *, act: bool) -> AllowListDrift:
    """allowlist.reconcile() as the sweep runs it (actor and trigger "sweep")."""
    return reconcile(service_id, deps, act=act, actor="sweep", trigger="sweep")


def reconcile_or_report(service_id: str, deps: Deps, *, act: bool) -> AllowListDrift:
    """reconcile_principals() for the sweep: a failure is reported as the outcome (and as a
    run error) and the service's connections are still converged."""
    try:
        return reconcile_principals(service_id, deps, act=act)
    except Exception as exc:
        log.exception("allowed principals of %s could not be reconciled", service_id)
        return AllowListDrift(service_id, outcome=f"failed:{type(exc).__name__}: {exc}")
