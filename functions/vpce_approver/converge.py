"""Converge: read state -> decide -> act -> record. The one routine behind every trigger
(notification, registry edit, Slack follow-up, sweep), so duplicates and reordering cannot do harm.

Cost of a registry-hit Connect: 1 DescribeVpcEndpointConnections, 1 BatchGetItem (grants and the
service's enrollment together), 1 BatchWriteItem (audit: "requested"),
1 AcceptVpcEndpointConnections, 1 BatchGetItem (the grants again: revalidate.py), 1 BatchWriteItem
(the same audit records: "done" / "failed:<code>").

Fail closed: anything that raises before the Accept call leaves every connection pending and
propagates, so the invocation is retried (then lands in its DLQ). Nothing is accepted on error.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Protocol

from .audit import Audit, AuditRecord, stamp
from .config import Settings
from .ec2 import BatchResult, Ec2
from .escalations import EscalationPort, Escalations
from .limits import Leases, limited_consumers, live_counts
from .model import Action, Connection, Decision, Grant, Reason
from .policy import decide
from .registry import Lookup, Registry
from .revalidate import revoked_after_accept
from .tables import EscalationItem

log = logging.getLogger("vpce_approver.converge")

# Unsuccessful codes that say the connection is gone or already settled: retrying cannot help.
SETTLED_CODES = frozenset(
    {
        "InvalidVpcEndpointId.NotFound",
        "InvalidVpcEndpoint.NotFound",
        "InvalidVpcEndpointId.Malformed",
        "InvalidVpcEndpointServiceId.NotFound",
        "InvalidState",
    }
)
ACCEPTED_OUTCOME = {"available": "accepted-elsewhere", "pending": "accepted-elsewhere"}


class MetricSink(Protocol):
    def add_metric(self, name: str, unit: str, value: float) -> None: ...


class NoMetrics:
    def add_metric(self, name: str, unit: str, value: float) -> None:
        return None


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Deps:
    ec2: Ec2
    registry: Registry
    audit: Audit
    escalations: Escalations
    port: EscalationPort
    settings: Settings
    metrics: MetricSink = field(default_factory=NoMetrics)
    clock: Callable[[], datetime] = utcnow
    leases: Leases = field(default_factory=Leases)


@dataclass(frozen=True, slots=True)
class Outcome:
    connection: Connection
    decision: Decision
    # done | shadow | escalated | already-escalated | settled-elsewhere | failed:<code> | ignored
    result: str


@dataclass
class Report:
    service_id: str
    managed: bool = True
    outcomes: list[Outcome] = field(default_factory=list)
    registry_errors: dict[str, str] = field(default_factory=dict)

    def count(self, action: Action, result: str | None = None) -> int:
        return sum(
            1
            for o in self.outcomes
            if o.decision.action is action and (result is None or o.result == result)
        )

    @property
    def accepted(self) -> list[str]:
        return [
            o.connection.vpc_endpoint_id
            for o in self.outcomes
            if o.decision.action is Action.ACCEPT and o.result == "done"
        ]

    @property
    def rejected(self) -> list[str]:
        return [
            o.connection.vpc_endpoint_id
            for o in self.outcomes
            if o.decision.action is Action.REJECT and o.result == "done"
        ]

    @property
    def escalated(self) -> list[str]:
        return [o.connection.vpc_endpoint_id for o in self.outcomes if o.result == "escalated"]

    @property
    def retryable(self) -> list[str]:
        """Endpoints whose Accept/Reject failed for a reason that may pass (throttling, an
        internal error), or deferred because another converge held the consumer's limit lease:
        the trigger should be retried rather than wait for the next sweep."""
        return [
            o.connection.vpc_endpoint_id
            for o in self.outcomes
            if o.result == "deferred"
            or (o.result.startswith("failed:") and o.result[len("failed:") :] not in SETTLED_CODES)
        ]

    def summary(self) -> dict[str, object]:
        results = Counter(f"{o.decision.action.value}:{o.result}" for o in self.outcomes)
        return {
            "service_id": self.service_id,
            "managed": self.managed,
            **dict(sorted(results.items())),
        }


def _decide_all(
    pending: Sequence[Connection],
    found: Lookup,
    counts: Counter[str],
    deps: Deps,
    now: datetime,
) -> list[tuple[Connection, Decision]]:
    """Decide in creation order, so a per-consumer limit admits the earliest connections.
    CreationTimestamp has whole seconds: connections created in the same second keep the order
    Describe returned them in (a stable sort), never the order of their random IDs."""
    decisions = []
    for conn in sorted(pending, key=lambda c: c.created or now):
        decision = decide(
            conn,
            found.entries(conn.owner),
            counts[conn.owner],
            now,
            deps.settings.default_decision,
            found.membership(conn.owner),
        )
        if decision.action is Action.ACCEPT:
            counts[conn.owner] += 1
        decisions.append((conn, decision))
    return decisions


def _limit_counts(
    service_id: str,
    pending: Sequence[Connection],
    found: Lookup,
    deps: Deps,
) -> Counter[str]:
    """Live (pending/available) connections per consumer, read only for consumers whose deciding
    grant has a max_endpoints limit (one extra Describe, none on the common path); converge
    holds their limit leases while it counts, decides and accepts."""
    limited = limited_consumers(pending, found)
    if not limited:
        return Counter()
    conns = deps.ec2.connections(service_id, states=["pending", "available"], owners=limited)
    return live_counts(conns, deciding={c.vpc_endpoint_id for c in pending})


def _record(
    conn: Connection,
    decision: Decision,
    *,
    action: str,
    outcome: str,
    trigger: str,
    actor: str,
    now: datetime,
) -> AuditRecord:
    return AuditRecord(
        subject=conn.vpc_endpoint_id,
        action=action,
        actor=actor,
        at=now,
        code=decision.code.value,
        reason=decision.reason,
        trigger=trigger,
        outcome=outcome,
        service_id=conn.service_id,
        vpc_endpoint_id=conn.vpc_endpoint_id,
        consumer=conn.owner,
        region=conn.region,
    )


def _settled_meanwhile(
    service_id: str, opened: Sequence[EscalationItem], deps: Deps, trigger: str
) -> set[str]:
    """Escalations just opened whose connection a concurrent converge settled meanwhile (it read
    the registry after us, accepted, and found no escalation to close yet): closed here, never
    posted. One Describe of the escalated consumers, on the escalation path only."""
    if not opened:
        return set()
    connections = deps.ec2.connections(service_id, owners={str(i.consumer) for i in opened})
    ids = [str(i.vpc_endpoint_id) for i in opened]
    return set(follow(service_id, ids, deps, trigger=trigger, connections=connections))


def converge(
    service_id: str,
    deps: Deps,
    *,
    endpoint_ids: Iterable[str] | None = None,
    consumers: Iterable[str] | None = None,
    trigger: str = "notification",
    actor: str = "policy",
    pending: Sequence[Connection] | None = None,
) -> Report:
    """Bring the service's pendingAcceptance connections (all, or those named) to their decision.

    `pending` lets a caller that already paged the connections (the sweep) skip the Describe."""
    report = Report(service_id)
    if pending is None:
        owners = sorted(set(consumers)) if consumers is not None else []
        pending = deps.ec2.connections(service_id, states=["pendingAcceptance"], owners=owners)
    wanted = set(endpoint_ids) if endpoint_ids is not None else None
    # Filter client-side as well: the vpc-endpoint-id filter is unreliable server-side, and
    # the state filter is re-checked so a stale page can never be accepted.
    waiting = [c for c in pending if c.pending_acceptance and c.service_id == service_id]
    pending = [c for c in waiting if wanted is None or c.vpc_endpoint_id in wanted]
    if not pending:
        return report

    found = deps.registry.read([service_id], {c.owner for c in pending})
    errors = found.errors
    if service_id not in found.managed:
        report.managed = False
        log.warning("service %s is not managed by this deployment: ignored", service_id)
        deps.metrics.add_metric("IgnoredService", "Count", 1)
        return report
    report.registry_errors = errors
    for error in errors.values():
        log.error("refusing malformed registry item: %s", error)
    if errors:
        deps.metrics.add_metric("MalformedGrants", "Count", len(errors))

    # A limit admits the earliest connections: a limited consumer's waiting connections are all
    # decided together, in creation order, under its limit lease (limits.py), not only those named.
    limited = limited_consumers(pending, found)
    if not limited:
        return _act(service_id, pending, found, deps, report, trigger=trigger, actor=actor)
    named = {c.vpc_endpoint_id for c in pending}
    pending = [c for c in waiting if c.vpc_endpoint_id in named or c.owner in limited]
    if deps.settings.shadow_mode:  # acts on nothing: nothing to guard
        return _act(service_id, pending, found, deps, report, trigger=trigger, actor=actor)
    with deps.leases.holding(service_id, limited, deps.clock) as held:
        for conn in pending:
            if conn.owner in limited and conn.owner not in held.consumers:
                busy = Decision(
                    Action.NONE,
                    Reason.LIMIT_BUSY,
                    f"another converge is deciding account {conn.owner}'s connections (limit"
                    " lease); left pending and retried",
                )
                report.outcomes.append(Outcome(conn, busy, "deferred"))
        pending = [c for c in pending if c.owner not in limited or c.owner in held.consumers]
        return _act(service_id, pending, found, deps, report, trigger=trigger, actor=actor)


def _act(
    service_id: str,
    pending: Sequence[Connection],
    found: Lookup,
    deps: Deps,
    report: Report,
    *,
    trigger: str,
    actor: str,
) -> Report:
    """Decide, record and act (under the limit leases converge holds, if any)."""
    now = deps.clock()
    counts = _limit_counts(service_id, pending, found, deps)
    decisions = _decide_all(pending, found, counts, deps, now)
    shadow = deps.settings.shadow_mode

    records: list[AuditRecord] = []
    to_accept: list[str] = []
    to_reject: list[str] = []
    to_escalate: list[tuple[Connection, Decision]] = []
    new_escalations = []
    escalate_ids = [c.vpc_endpoint_id for c, d in decisions if d.action is Action.ESCALATE]
    already = (
        {str(e.vpc_endpoint_id) for e in deps.escalations.get_many(escalate_ids)}
        if escalate_ids and not shadow
        else set()
    )
    for conn, decision in decisions:
        action = decision.action
        if action is Action.NONE:
            report.outcomes.append(Outcome(conn, decision, "ignored"))
            deps.metrics.add_metric("Ignored", "Count", 1)
            continue
        if shadow:
            # One record per connection and would-be action, however often it is converged
            # (every sweep sees it pending again): the fixed sort key makes the write idempotent.
            record = _record(
                conn,
                decision,
                action=f"would-{action.value}",
                outcome="shadow",
                trigger=trigger,
                actor=actor,
                now=now,
            )
            created = stamp(conn.created) if conn.created else "unknown"
            records.append(replace(record, sort_key=f"{created}#would-{action.value}"))
            report.outcomes.append(Outcome(conn, decision, "shadow"))
            continue
        if action is Action.ESCALATE:
            if conn.vpc_endpoint_id in already:
                report.outcomes.append(Outcome(conn, decision, "already-escalated"))
                continue
            # Audited before the escalation record is created (like accept/reject): a failure
            # in between is retried and cannot leave an escalation nobody audited. The fixed
            # sort key makes the retry (or a concurrent converge) rewrite the same audit item.
            record = _record(
                conn,
                decision,
                action="escalate",
                outcome="pending-human",
                trigger=trigger,
                actor=actor,
                now=now,
            )
            created = stamp(conn.created) if conn.created else "unknown"
            records.append(replace(record, sort_key=f"{created}#escalate"))
            to_escalate.append((conn, decision))
            continue
        # Accept/reject: the audit record is written *before* the call (outcome "requested"), so a
        # crash between the call and any later write still leaves the decision in the trail.
        records.append(
            _record(
                conn,
                decision,
                action=action.value,
                outcome="requested",
                trigger=trigger,
                actor=actor,
                now=now,
            )
        )
        (to_accept if action is Action.ACCEPT else to_reject).append(conn.vpc_endpoint_id)

    deps.audit.write(records)
    if shadow:
        return report

    opened = []
    for conn, decision in to_escalate:
        item = deps.escalations.open_once(conn, decision, now)
        if item is None:  # a concurrent converge opened it first
            report.outcomes.append(Outcome(conn, decision, "already-escalated"))
            continue
        opened.append((conn, decision, item))
    settled_meanwhile = _settled_meanwhile(service_id, [i for _, _, i in opened], deps, trigger)
    for conn, decision, item in opened:
        if conn.vpc_endpoint_id in settled_meanwhile:
            report.outcomes.append(Outcome(conn, decision, "settled-elsewhere"))
            continue
        new_escalations.append(item)
        report.outcomes.append(Outcome(conn, decision, "escalated"))

    by_id = {c.vpc_endpoint_id: (c, d) for c, d in decisions}
    failures: dict[str, str] = {}
    succeeded: list[str] = []
    undone: list[AuditRecord] = []
    for action, ids, call in (
        (Action.ACCEPT, to_accept, deps.ec2.accept),
        (Action.REJECT, to_reject, deps.ec2.reject),
    ):
        if not ids:
            continue
        result: BatchResult = call(service_id, ids)
        for failure in result.failed:
            if failure.vpc_endpoint_id not in by_id:
                continue
            conn, decision = by_id[failure.vpc_endpoint_id]
            log.warning(
                "%s of %s failed: %s %s",
                action.value,
                failure.vpc_endpoint_id,
                failure.code,
                failure.message,
            )
            report.outcomes.append(Outcome(conn, decision, f"failed:{failure.code}"))
            failures[failure.vpc_endpoint_id] = failure.code
        succeeded.extend(result.succeeded)
        for vpce_id in result.succeeded:
            conn, decision = by_id[vpce_id]
            report.outcomes.append(Outcome(conn, decision, "done"))
            if conn.created is not None:
                latency = (deps.clock() - conn.created).total_seconds() * 1000
                deps.metrics.add_metric("DecisionLatency", "Milliseconds", max(latency, 0.0))
        if action is Action.ACCEPT and result.succeeded:
            accepted = [by_id[v][0] for v in result.succeeded]
            revoked = _revalidate(service_id, accepted, deps)
            if revoked:
                undone = _undo(
                    revoked, report, to_reject, by_id, deps, trigger=trigger, actor=actor
                )
        if action is Action.REJECT and undone:  # the rejects of what an edit took away
            deps.audit.settle(
                undone, result.succeeded, {f.vpc_endpoint_id: f.code for f in result.failed}
            )
    deps.audit.settle(records, succeeded, failures)  # "requested" -> done | failed:<code>

    for item in new_escalations:
        deps.port.opened(item)

    for name, n in (
        ("Accepted", len(report.accepted)),
        ("Rejected", len(report.rejected)),
        ("Escalated", len(report.escalated)),
        ("Errors", len(failures)),
        (
            "MembershipUnknown",
            sum(o.decision.code is Reason.MEMBERSHIP_UNKNOWN for o in report.outcomes),
        ),
    ):
        if n:
            deps.metrics.add_metric(name, "Count", n)
    log.info("converged %s", service_id, extra={"converge": report.summary()})
    return report


def _revalidate(
    service_id: str, accepted: Sequence[Connection], deps: Deps
) -> list[tuple[Connection, Decision]]:
    """Read the registry again right after the Accept (revalidate.py): what an edit made
    meanwhile takes away. If that read fails, the rest of the converge still runs (escalations
    posted, failures audited): a retry could not re-check either, since the connections are no
    longer pending; the failure is logged and counted, and the sweep's drift check remains."""
    try:
        again = deps.registry.read([service_id], {c.owner for c in accepted})
    except Exception:
        log.exception("re-reading the registry after an Accept on %s failed", service_id)
        deps.metrics.add_metric("Errors", "Count", 1)
        return []
    return revoked_after_accept(accepted, again, deps.clock(), deps.settings.default_decision)


def _undo(
    revoked: Sequence[tuple[Connection, Decision]],
    report: Report,
    to_reject: list[str],
    by_id: dict[str, tuple[Connection, Decision]],
    deps: Deps,
    *,
    trigger: str,
    actor: str,
) -> list[AuditRecord]:
    """Accepted on a grant edited meanwhile: queue the reject (audited before the call, as
    "requested"; returned to be settled once the Reject answers)."""
    gone = {c.vpc_endpoint_id for c, _ in revoked}
    report.outcomes = [
        o
        for o in report.outcomes
        if o.decision.action is not Action.ACCEPT or o.connection.vpc_endpoint_id not in gone
    ]
    now = deps.clock()
    records = [
        _record(c, d, action="reject", outcome="requested", trigger=trigger, actor=actor, now=now)
        for c, d in revoked
    ]
    deps.audit.write(records)
    for conn, decision in revoked:
        log.warning("%s: %s", conn.vpc_endpoint_id, decision.reason)
        by_id[conn.vpc_endpoint_id] = (conn, decision)
        to_reject.append(conn.vpc_endpoint_id)
    deps.metrics.add_metric("Revoked", "Count", len(revoked))  # access taken away, like revocation
    return records


@dataclass(frozen=True, slots=True)
class Preview:
    """What converge() would decide, without acting (the CLI's explain/pending/doctor)."""

    managed: bool
    decisions: list[tuple[Connection, Decision]]
    grants: dict[tuple[str, str], Grant]
    registry_errors: dict[str, str]


def preview(service_id: str, connections: Sequence[Connection], deps: Deps) -> Preview:
    """The decision each connection would get now (a settled one is judged as if it were
    pendingAcceptance, so a caller can say what the registry says about it)."""
    conns = [c for c in connections if c.service_id == service_id]
    found = deps.registry.read([service_id], {c.owner for c in conns})
    grants, errors = found.grants, found.errors
    as_pending = [replace(c, state="pendingAcceptance") for c in conns]
    now = deps.clock()
    counts = _limit_counts(service_id, as_pending, found, deps)
    decisions = _decide_all(as_pending, found, counts, deps, now)
    real = {c.vpc_endpoint_id: c for c in conns}
    return Preview(
        managed=service_id in found.managed,
        decisions=[(real[c.vpc_endpoint_id], d) for c, d in decisions],
        grants=grants,
        registry_errors=errors,
    )


def outcome_for_state(state: str) -> str | None:
    """What a non-pending connection state means for an open escalation."""
    state = state.lower()
    if state in ACCEPTED_OUTCOME:
        return ACCEPTED_OUTCOME[state]
    if state in {"rejected", "failed", "expired"}:
        return "rejected-elsewhere" if state == "rejected" else state
    if state in {"deleted", "deleting"}:
        return "withdrawn"
    return None


def follow(
    service_id: str,
    endpoint_ids: Iterable[str],
    deps: Deps,
    *,
    trigger: str = "notification",
    connections: Sequence[Connection] | None = None,
) -> list[str]:
    """Close open escalations of connections that were settled by another path (console, registry
    edit, consumer withdrew it, sweep). Returns the endpoint IDs whose escalation was closed."""
    open_items = {
        e.vpc_endpoint_id: e for e in deps.escalations.get_many(endpoint_ids) if e.state == "open"
    }
    if not open_items:
        return []
    if connections is None:  # only the owners concerned: a busy service has many connections
        owners = {e.consumer for e in open_items.values()}
        connections = deps.ec2.connections(service_id, owners=owners)
    states: dict[str, str] = defaultdict(lambda: "deleted")  # gone from Describe: deleted
    for conn in connections:
        if conn.vpc_endpoint_id in open_items:
            states[conn.vpc_endpoint_id] = conn.state
    closed = []
    now = deps.clock()
    for vpce_id, item in open_items.items():
        outcome = deps.audit.label(outcome_for_state(states[vpce_id]), vpce_id)
        if outcome is None:  # still pendingAcceptance: the escalation stays open
            continue
        settled = deps.escalations.settle(vpce_id, outcome=outcome, by=trigger, now=now)
        if settled is None:
            continue
        deps.audit.write(
            [
                AuditRecord(
                    subject=vpce_id,
                    action="escalation-closed",
                    actor=trigger,
                    at=now,
                    code=item.code,
                    reason=f"connection is {states[vpce_id]}: {outcome}",
                    trigger=trigger,
                    outcome=outcome,
                    service_id=service_id,
                    vpc_endpoint_id=vpce_id,
                    consumer=item.consumer,
                    region=item.region,
                )
            ]
        )
        deps.port.settled(settled)
        closed.append(vpce_id)
    return closed
