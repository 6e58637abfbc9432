"""What `vpce-approver local` prints while it runs: one line per event.

The hook is the deployment's Deps, not prints in the domain code: `EventLog.observe(deps)` returns
the same Deps whose audit trail also tells the terminal every record it writes (decisions and
their reasons, accept/reject outcomes, Slack clicks, grants applied, allow-list changes) and whose
escalation port says when an escalation reached Slack; `seeing(process)` wraps the notification
handler to say which connection it was told about; the sweep's summary is `sweep(report)`; an
Organizations account-lifecycle event is `organization(event)` and what a sweep's membership
refresh found is `membership(change)`, one line per account."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from vpce_approver.audit import Audit, AuditRecord
from vpce_approver.converge import Deps
from vpce_approver.escalations import EscalationPort
from vpce_approver.membership import MembershipChange
from vpce_approver.notifications import NotificationError, parse_record
from vpce_approver.tables import EscalationItem

Process = Callable[[Sequence[Mapping[str, Any]]], list[str]]


class EventLog:
    """Lines to a terminal, one per event, each with the time (UTC). Thread-safe."""

    def __init__(self, out: TextIO, clock: Callable[[], datetime] | None = None) -> None:
        self.out = out
        self.clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()
        self._posted: set[str] = set()

    def line(self, kind: str, text: str) -> None:
        stamp = self.clock().strftime("%H:%M:%S")
        with self._lock:
            print(f"{stamp} {kind:<11} {text}", file=self.out, flush=True)

    # -- hooks ------------------------------------------------------------------------------
    def observe(self, deps: Deps) -> Deps:
        return dataclasses.replace(
            deps, audit=EchoAudit(self), port=EchoPort(deps.port, deps, self)
        )

    def seeing(self, process: Process) -> Process:
        def wrapped(records: Sequence[Mapping[str, Any]]) -> list[str]:
            for record in records:
                try:
                    hint = parse_record(record)
                except NotificationError:
                    self.line("notified", "a malformed notification (dropped)")
                    continue
                what = hint.endpoint_id or "every connection"
                self.line("notified", f"{hint.event or 'event'}: {what} on {hint.service_id}")
            return process(records)

        return wrapped

    def record(self, r: AuditRecord) -> None:
        kind, text = describe(r)
        self.line(kind, text)

    def posted(self, escalation: EscalationItem) -> None:
        if escalation.vpc_endpoint_id in self._posted:
            return
        self._posted.add(escalation.vpc_endpoint_id)
        self.line("escalation", f"{escalation.vpc_endpoint_id}: posted to Slack (click to decide)")

    def sweep(self, summary: Mapping[str, Any]) -> None:
        def n(key: str) -> int:
            value = summary.get(key, 0)
            return value if isinstance(value, int) and not isinstance(value, bool) else 0

        counts = ", ".join(
            f"{n(key)} {key.replace('_', ' ')}"
            for key in ("accepted", "rejected", "escalated", "drift", "drift_rejected")
            if key in summary
        )
        self.line(
            "sweep",
            f"{n('services')} service(s), {n('read')} connection(s) read, {n('pending')}"
            f" pending: {counts}" + ("" if summary.get("complete", True) else " (cut off)"),
        )

    def organization(self, event: Mapping[str, Any]) -> None:
        """An Organizations account-lifecycle event (as EventBridge delivers it)."""
        self.line("org", describe_organization_event(event) + " (a sweep follows)")

    def membership(self, change: MembershipChange) -> None:
        """What a membership refresh found: one line per account, or why it read nothing."""
        if change.error:
            self.line("membership", f"organization not read: {change.error} (nothing changed)")
            return
        for what, accounts in (
            ("joined", change.joined),
            ("left", change.left),
            ("moved", change.moved),
        ):
            for account in accounts:
                self.line("membership", f"{account} {what} (epoch {change.epoch})")


def describe_organization_event(event: Mapping[str, Any]) -> str:
    """'MoveAccount 111111111111: r-ab12 -> ou-ab12-cdefghij' and the like."""
    detail = event.get("detail")
    detail = detail if isinstance(detail, Mapping) else {}
    name = str(detail.get("eventName") or "event")
    request = detail.get("requestParameters")
    request = request if isinstance(request, Mapping) else {}
    if name == "CreateAccountResult":
        service = detail.get("serviceEventDetails")
        status = service.get("createAccountStatus") if isinstance(service, Mapping) else None
        status = status if isinstance(status, Mapping) else {}
        return (
            f"CreateAccount {status.get('accountId', '?')}: {status.get('state', '?')}, in the root"
        )
    account = request.get("accountId", "?")
    if name == "MoveAccount":
        source, destination = request.get("sourceParentId"), request.get("destinationParentId")
        return f"MoveAccount {account}: {source} -> {destination}"
    return f"{name} {account}"


def describe(r: AuditRecord) -> tuple[str, str]:
    """(kind, text) of one audit record, as an operator reads it."""
    who = f" ({r.consumer})" if r.consumer else ""
    why = f": {r.reason}" if r.reason else ""
    outcome = f" -> {r.outcome}" if r.outcome else ""
    action = r.action
    if r.actor.startswith("slack:"):
        return "slack", f"{r.actor} clicked: {action} {r.subject}{who}{outcome}{why}"
    if action.startswith("grant-"):
        return "registry", f"{action.removeprefix('grant-')} {_grant(r.subject)} by {r.actor}{why}"
    if action.startswith("principals-"):
        return "allow-list", f"{action.removeprefix('principals-')}: {r.reason or r.service_id}"
    if r.subject.startswith("service#"):
        return "registry", f"{action} {r.subject.removeprefix('service#')} by {r.actor}"
    if action.startswith("escalation-"):
        return "escalation", f"{r.subject}: {action.removeprefix('escalation-')}{why}"
    if action in ("accept", "reject") and (r.outcome == "done" or _failed(r.outcome)):
        # the same record settled after its call (Audit.settle): what the call did
        return "result", f"{r.subject}{who}: {action}{outcome}"
    code = f" [{r.code}]" if r.code else ""
    trigger = f" via {r.trigger}" if r.trigger else ""
    return "decision", f"{r.subject}{who}: {action}{code}{outcome}{trigger}{why}"


def _failed(outcome: str | None) -> bool:
    return bool(outcome) and str(outcome).startswith("failed:")


def _grant(subject: str) -> str:
    parts = subject.split("#")
    return "/".join(parts[1:]) if parts[0] == "grant" and len(parts) == 3 else subject


class EchoAudit(Audit):
    """The audit trail, unchanged, that also tells the event log what it wrote."""

    def __init__(self, log: EventLog) -> None:
        super().__init__()
        self.log = log

    def write(self, records: Iterable[AuditRecord]) -> int:
        records = list(records)
        written = super().write(records)
        for record in records:
            self.log.record(record)
        return written


class EchoPort:
    """The escalation port, unchanged, that says when an escalation reached Slack."""

    def __init__(self, inner: EscalationPort, deps: Deps, log: EventLog) -> None:
        self.inner, self.deps, self.log = inner, deps, log

    def opened(self, escalation: EscalationItem) -> None:
        self.inner.opened(escalation)
        current = self.deps.escalations.get(escalation.vpc_endpoint_id)
        if current is not None and current.slack_ts:
            self.log.posted(current)

    def settled(self, escalation: EscalationItem) -> None:
        self.inner.settled(escalation)

    def refresh(self, escalation: EscalationItem) -> None:
        self.inner.refresh(escalation)

    def __getattr__(self, name: str) -> Any:  # anything else a caller expects of the real port
        return getattr(self.inner, name)
