"""Drift: live connections whose consumer no longer has a live allow grant. Reported always,
rejected only when revocation is on for it. A connection a person approved in Slack, with no
registry change since, is not drift but its own state (HUMAN_APPROVED): reported apart, never
rejected."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from ..audit import AuditRecord, stamp
from ..converge import Deps
from ..grants import REVOKE_SKEW
from ..model import Action, Connection, DefaultDecision, Grant, Reason
from ..policy import decide
from .report import HUMAN_APPROVED, DriftItem


def _revoke_for(grant_revoke: bool | None, default: bool) -> bool:
    return default if grant_revoke is None else grant_revoke


def find_drift(service_id: str, live: Sequence[Connection], deps: Deps) -> list[DriftItem]:
    """Live connections whose consumer has no live allow grant (the policy would not accept them
    today, capacity limits aside): its own grant, its OUs' and its organization's, as placed by
    its current membership. One registry read for the chunk's consumers, and one escalations
    read when any of them would be revoked (to honour human approvals).

    A malformed item is no revocation: reported, never rejected on, unless a live deny applies
    as well (deny wins, as in every decision). An unknown membership is no revocation either."""
    if not live:
        return []
    found = deps.registry.read([service_id], {c.owner for c in live})
    now = deps.clock()
    default = deps.settings.revoke_default
    out: list[DriftItem] = []
    deciding: dict[str, Grant | None] = {}
    for conn in live:
        as_pending = dataclasses.replace(conn, state="pendingAcceptance")
        decision = decide(
            as_pending,
            found.entries(conn.owner),
            0,
            now,
            DefaultDecision.ESCALATE,
            found.membership(conn.owner),
        )
        if decision.action is Action.ACCEPT:
            continue
        grant = decision.grant
        reported_only = decision.code in {Reason.MALFORMED_GRANT, Reason.MEMBERSHIP_UNKNOWN} or (
            decision.code is Reason.DENIED and grant is None  # a malformed item read as a deny
        )
        if not reported_only:
            deciding[conn.vpc_endpoint_id] = grant
        out.append(
            DriftItem(
                service_id,
                conn.vpc_endpoint_id,
                conn.owner,
                conn.state,
                decision.code.value,
                decision.reason,
                False if reported_only else _revoke_for(grant.revoke if grant else None, default),
                "reported",
            )
        )
    return _honour_approvals(out, deciding, deps)


def _honour_approvals(
    drift: list[DriftItem], deciding: dict[str, Grant | None], deps: Deps
) -> list[DriftItem]:
    """A connection a human approved in Slack (and no grant allows) is its own state, not drift:
    "approved by a person, no grant", never revoked, unless its deciding grant was changed after
    the approval: a person's decision is undone only by a later, explicit registry change
    (docs/SWEEP.md, "Drift and human approvals"). One escalations read for the chunk's drift."""
    candidates = [d.vpc_endpoint_id for d in drift if d.vpc_endpoint_id in deciding]
    approved = deps.escalations.approvals(candidates) if candidates else {}
    if not approved:
        return drift
    out = []
    for item in drift:
        at = approved.get(item.vpc_endpoint_id)
        grant = deciding.get(item.vpc_endpoint_id)
        changed = grant.updated_at if grant is not None else None
        # Grant times are whole seconds: a change within the approval's second counts as later.
        if at is not None and (changed is None or changed + REVOKE_SKEW <= at):
            reason = f"approved by a person at {stamp(at)}, no grant ({item.reason})"
            item = dataclasses.replace(item, reason=reason, revoke=False, outcome=HUMAN_APPROVED)
        out.append(item)
    return out


def reject_drift(service_id: str, drift: list[DriftItem], deps: Deps, *, act: bool) -> None:
    """Reject the drifted connections whose revocation is on (audited before the call)."""
    targets = [d for d in drift if d.revoke]
    if not targets:
        return
    now = deps.clock()
    records = [
        AuditRecord(
            subject=d.vpc_endpoint_id,
            action="reject" if act else "would-reject",
            actor="sweep",
            at=now,
            code=d.code,
            reason=f"drift: {d.reason}; revocation is on",
            trigger="sweep",
            outcome="requested" if act else "shadow",
            service_id=service_id,
            vpc_endpoint_id=d.vpc_endpoint_id,
            consumer=d.consumer,
        )
        for d in targets
    ]
    deps.audit.write(records)
    index = {d.vpc_endpoint_id: i for i, d in enumerate(drift)}
    if not act:
        for d in targets:
            drift[index[d.vpc_endpoint_id]] = dataclasses.replace(d, outcome="would-reject")
        return
    result = deps.ec2.reject(service_id, [d.vpc_endpoint_id for d in targets])
    for vpce_id in result.succeeded:
        drift[index[vpce_id]] = dataclasses.replace(drift[index[vpce_id]], outcome="rejected")
    failures: dict[str, str] = {}
    for failure in result.failed:
        if failure.vpc_endpoint_id not in index:
            continue
        item = drift[index[failure.vpc_endpoint_id]]
        drift[index[failure.vpc_endpoint_id]] = dataclasses.replace(
            item, outcome=f"failed:{failure.code}"
        )
        failures[failure.vpc_endpoint_id] = failure.code
    deps.audit.settle(records, result.succeeded, failures)  # "requested" -> done | failed
