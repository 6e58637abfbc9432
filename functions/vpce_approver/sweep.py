"""The scheduled sweep: the backstop that makes the system converge when a hint was lost.

Notifications can be lost, Slack can be down, a Lambda can time out mid-batch. Every run:

1. escalations: close those whose connection was settled elsewhere (`converge.follow`), post the
   ones never posted (`port.opened`), refresh the stale ones (`port.refresh`); capped per run;
2. for every managed service (`Registry.managed_services()`, sorted; resuming at the cursor):
   - ensure (like a controller): `AcceptanceRequired` is on and the service's connection
     notification to the deployment's topic is in place; fix either and report the fix;
   - page through the service's pendingAcceptance/pending/available connections, 1,000 a page,
     `CHUNK_PAGES` pages per chunk; each chunk's pending connections go to one `converge()` (one
     registry read for the chunk's consumers, Accept/Reject with up to 1,000 IDs per call: a chunk
     of 10 pages needs at most 10 Accept calls, the throttle's burst), and its live connections to
     the drift check;
   - drift: a live connection whose consumer has no live allow grant is reported (metric, log,
     optional summary via the port) and rejected only when revocation is on for it.
3. stop cleanly when the Lambda's remaining time drops under the margin: the cursor (service +
   NextToken) is saved and the next run resumes there.

The cursor lives in the escalations table as the item `#sweep-cursor`: not in the registry, whose
stream drives the grant path (a cursor write every run would wake the registry-stream function and
mix bookkeeping into the grant history), and not in the audit trail, which is append-only. The item
has no `state`, so it never appears in the escalations' `by_state` index. It exists only while a run
was cut off: a run that finishes the rotation deletes it.

Dry run (the CLI's `--dry-run`) and SHADOW_MODE act on nothing: converge records "would-…",
ensure reports what it would fix, escalations are counted, not posted; a dry run ignores the cursor.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from botocore.exceptions import ClientError
from pynamodb.attributes import UnicodeAttribute
from pynamodb.exceptions import UpdateError
from pynamodb.models import Model

from .audit import AuditRecord, stamp
from .converge import Deps, converge, follow
from .grants import REVOKE_SKEW
from .model import Action, Connection, DefaultDecision, Grant, Reason
from .policy import decide
from .registry import iso
from .tables import EscalationItem, RegistryItem

log = logging.getLogger("vpce_approver.sweep")

CURSOR_KEY = "#sweep-cursor"
CHUNK_PAGES = 10  # 10 pages x 1,000 IDs = 10 Accept calls at most: the throttle's burst
SWEEP_STATES = ("pendingAcceptance", "pending", "available")
CONNECTION_EVENTS = ("Connect", "Accept", "Reject", "Delete")
MANAGED_TAG_KEY = "vpce-approver:managed"
DEFAULT_MARGIN_MS = 60_000  # room to finish the chunk in hand (registry read, audit, accepts)
PORT_CALLS_PER_RUN = 50  # per kind (post, refresh): Slack's chat.* tiers allow ~50 a minute
REFRESH_AFTER = timedelta(hours=1)
DRIFT_LOG_LIMIT = 100
BAD_TOKEN_CODES = frozenset({"InvalidPaginationToken", "InvalidNextToken"})

Progress = Callable[[str], None]


# ------------------------------------------------------------------ optional port extension
@runtime_checkable
class DriftReporter(Protocol):
    """Optional: an EscalationPort that also implements this gets a drift summary per run
    (only when there is drift). It must not raise, and should rate-limit itself."""

    def drift(self, summary: DriftSummary) -> None: ...


# ------------------------------------------------------------------ report types
@dataclass(frozen=True, slots=True)
class Cursor:
    service_id: str
    next_token: str | None = None  # None: the service from its first page


@dataclass(frozen=True, slots=True)
class DriftItem:
    service_id: str
    vpc_endpoint_id: str
    consumer: str
    state: str
    code: str
    reason: str
    revoke: bool
    outcome: str  # reported | rejected | would-reject | failed:<code>

    def as_dict(self) -> dict[str, str]:
        return {
            "service_id": self.service_id,
            "vpc_endpoint_id": self.vpc_endpoint_id,
            "consumer": self.consumer,
            "state": self.state,
            "code": self.code,
            "outcome": self.outcome,
        }


@dataclass(frozen=True, slots=True)
class DriftSummary:
    items: tuple[DriftItem, ...]

    @property
    def rejected(self) -> int:
        return sum(1 for i in self.items if i.outcome == "rejected")


@dataclass
class ServiceSweep:
    service_id: str
    fixes: list[str] = field(default_factory=list)  # what ensure fixed (or would fix)
    warnings: list[str] = field(default_factory=list)  # what ensure found and cannot fix
    pages: int = 0
    read: int = 0
    pending: int = 0
    results: dict[str, int] = field(default_factory=dict)  # "accept:done" -> n, as converge
    drift: list[DriftItem] = field(default_factory=list)
    complete: bool = False
    error: str | None = None

    def add_results(self, summary: dict[str, object]) -> None:
        for key, value in summary.items():
            if ":" in key and isinstance(value, int):
                self.results[key] = self.results.get(key, 0) + value

    def summary(self) -> dict[str, object]:
        out: dict[str, object] = {
            "service_id": self.service_id,
            "pages": self.pages,
            "read": self.read,
            "pending": self.pending,
            "complete": self.complete,
            **dict(sorted(self.results.items())),
            "drift": len(self.drift),
        }
        if self.fixes:
            out["fixes"] = list(self.fixes)
        if self.warnings:
            out["warnings"] = list(self.warnings)
        if self.error:
            out["error"] = self.error
        return out


@dataclass
class EscalationSweep:
    closed: int = 0
    reposted: int = 0
    refreshed: int = 0
    would_close: int = 0
    would_post: int = 0
    would_refresh: int = 0
    error: str | None = None


@dataclass
class SweepReport:
    dry_run: bool = False
    services: list[ServiceSweep] = field(default_factory=list)
    escalations: EscalationSweep = field(default_factory=EscalationSweep)
    resumed_from: Cursor | None = None
    stopped_at: Cursor | None = None  # set when the run was cut off by the deadline

    @property
    def cut_off(self) -> bool:
        return self.stopped_at is not None

    @property
    def errors(self) -> dict[str, str]:
        out = {s.service_id: s.error for s in self.services if s.error}
        if self.escalations.error:
            out["escalations"] = self.escalations.error
        return out

    @property
    def drift(self) -> list[DriftItem]:
        return [d for s in self.services for d in s.drift]

    def total(self, key: str) -> int:
        return sum(s.results.get(key, 0) for s in self.services)

    def summary(self) -> dict[str, Any]:
        esc = self.escalations
        return {
            "dry_run": self.dry_run,
            "services": len(self.services),
            "complete": not self.cut_off,
            "resumed_from": dataclasses.asdict(self.resumed_from) if self.resumed_from else None,
            "stopped_at": dataclasses.asdict(self.stopped_at) if self.stopped_at else None,
            "read": sum(s.read for s in self.services),
            "pending": sum(s.pending for s in self.services),
            "accepted": self.total("accept:done"),
            "rejected": self.total("reject:done"),
            "escalated": self.total("escalate:escalated"),
            "shadow": sum(v for s in self.services for k, v in s.results.items() if "shadow" in k),
            "drift": len(self.drift),
            "drift_rejected": sum(1 for d in self.drift if d.outcome == "rejected"),
            "fixes": [f"{s.service_id}: {f}" for s in self.services for f in s.fixes],
            "warnings": [f"{s.service_id}: {w}" for s in self.services for w in s.warnings],
            "escalations": dataclasses.asdict(esc),
            "errors": self.errors,
            "per_service": [s.summary() for s in self.services],
        }


# ------------------------------------------------------------------ deadline and cursor
class Deadline:
    """`remaining_ms` is the Lambda context's get_remaining_time_in_millis (None: no deadline)."""

    def __init__(self, remaining_ms: Callable[[], int] | None, margin_ms: int) -> None:
        self.remaining_ms = remaining_ms
        self.margin_ms = margin_ms

    def expired(self) -> bool:
        return self.remaining_ms is not None and self.remaining_ms() < self.margin_ms


class CursorItem(Model):
    """The sweep's resume point, stored in the escalations table (see the module docstring)."""

    class Meta:
        table_name = "vpce-approver-escalations"
        region = "us-east-1"

    vpc_endpoint_id = UnicodeAttribute(hash_key=True)  # always CURSOR_KEY
    service_id = UnicodeAttribute()
    next_token = UnicodeAttribute(null=True)
    updated_at = UnicodeAttribute()


class CursorStore:
    """Load/save/clear the cursor, bound to whatever table EscalationItem is bound to."""

    def _model(self) -> type[CursorItem]:
        src, dst = EscalationItem.Meta, CursorItem.Meta
        for name in ("table_name", "region", "host"):
            value = getattr(src, name, None)
            if getattr(dst, name, None) != value:
                setattr(dst, name, value)
                CursorItem._connection = None
        return CursorItem

    def load(self) -> Cursor | None:
        try:
            item = self._model().get(CURSOR_KEY, consistent_read=True)
        except CursorItem.DoesNotExist:
            return None
        return Cursor(str(item.service_id), item.next_token or None)

    def save(self, cursor: Cursor, now: datetime) -> None:
        self._model()(
            CURSOR_KEY,
            service_id=cursor.service_id,
            next_token=cursor.next_token,
            updated_at=stamp(now),
        ).save()

    def clear(self) -> None:
        self._model()(CURSOR_KEY, service_id="", updated_at="").delete()


def _rotation(
    services: Sequence[RegistryItem], cursor: Cursor | None
) -> tuple[list[RegistryItem], str | None]:
    """Services in sweep order, starting at the cursor's service (or the one after it, if it is
    no longer managed), and the NextToken to start the first one at."""
    ordered = sorted(services, key=lambda s: str(s.service_id))
    if cursor is None:
        return ordered, None
    ids = [str(s.service_id) for s in ordered]
    if cursor.service_id in ids:
        start = ids.index(cursor.service_id)
        return ordered[start:] + ordered[:start], cursor.next_token
    start = next((i for i, s in enumerate(ids) if s > cursor.service_id), 0)
    return ordered[start:] + ordered[:start], None


# ------------------------------------------------------------------ ensure
def _notifications(client: Any, service_id: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"Filters": [{"Name": "service-id", "Values": [service_id]}]}
    while True:
        response = client.describe_vpc_endpoint_connection_notifications(**kwargs)
        out += response.get("ConnectionNotificationSet", [])
        if not response.get("NextToken"):
            return out
        kwargs["NextToken"] = response["NextToken"]


def _set_notification_id(enrollment: RegistryItem, notification_id: str, now: datetime) -> None:
    enrollment.update(
        actions=[
            RegistryItem.notification_id.set(notification_id),
            RegistryItem.updated_by.set("sweep"),
            RegistryItem.updated_at.set(iso(now)),
        ]
    )


def ensure_service(
    enrollment: RegistryItem, deps: Deps, *, act: bool, result: ServiceSweep
) -> None:
    """Acceptance required on, the notification to the deployment's topic in place. Fixes go to
    result.fixes ("would …" when not acting); what cannot be fixed goes to result.warnings."""
    service_id = str(enrollment.service_id)
    client = deps.ec2.client
    configs = client.describe_vpc_endpoint_service_configurations(ServiceIds=[service_id])
    [config] = configs["ServiceConfigurations"]
    if not config.get("AcceptanceRequired"):
        if act:
            client.modify_vpc_endpoint_service_configuration(
                ServiceId=service_id, AcceptanceRequired=True
            )
        result.fixes.append(
            "acceptance_required turned back on" if act else "would turn acceptance_required on"
        )
    tags = {t.get("Key"): t.get("Value") for t in config.get("Tags", [])}
    # Not fixed here: ec2:CreateTags would let this function mark any service as managed.
    expected = deps.settings.deployment_name
    if MANAGED_TAG_KEY not in tags:
        result.warnings.append(
            f"tag {MANAGED_TAG_KEY} is missing: IAM will refuse Accept/Reject on this service"
        )
    elif expected and tags[MANAGED_TAG_KEY] != expected:
        result.warnings.append(
            f"tag {MANAGED_TAG_KEY}={tags[MANAGED_TAG_KEY]} names another deployment than"
            f" {expected}: IAM will refuse Accept/Reject on this service"
        )

    _ensure_notification(enrollment, deps, act=act, result=result)


def _complete(note: dict[str, Any]) -> bool:
    return set(CONNECTION_EVENTS) <= set(note.get("ConnectionEvents", []))


def _ensure_notification(
    enrollment: RegistryItem, deps: Deps, *, act: bool, result: ServiceSweep
) -> None:
    """A notification of all four events to the deployment's topic. One that lost events is not
    modified (ModifyVpcEndpointConnectionNotification cannot be scoped to managed services: it
    would let this function redirect any notification of the account); a complete one is
    created next to it instead (duplicate hints are harmless: converge is idempotent)."""
    service_id = str(enrollment.service_id)
    client = deps.ec2.client
    topic = deps.settings.notification_topic_arn
    notes = _notifications(client, service_id)
    if topic:
        mine = [n for n in notes if n.get("ConnectionNotificationArn") == topic]
    else:
        mine = [n for n in notes if n.get("ConnectionNotificationId") == enrollment.notification_id]
    complete = [n for n in mine if _complete(n)]
    if complete:
        note = complete[0]
        notification_id = str(note["ConnectionNotificationId"])
        state = str(note.get("ConnectionNotificationState", "Enabled"))
        if state.lower() != "enabled":
            result.warnings.append(
                f"connection notification {notification_id} is {state}"
                " (check the topic, its policy and its key)"
            )
        if enrollment.notification_id != notification_id:
            if act:
                _set_notification_id(enrollment, notification_id, deps.clock())
            verb = "set" if act else "would be set"
            result.fixes.append(f"enrollment notification_id {verb} to {notification_id}")
        return
    if mine:
        old = mine[0]
        lacks = [e for e in CONNECTION_EVENTS if e not in set(old.get("ConnectionEvents", []))]
        why = f" ({old['ConnectionNotificationId']} lacks {', '.join(lacks)})"
        would, done = "would create a complete connection notification", "created"
    else:
        why, would, done = "", "would recreate the connection notification", "recreated"
    if not topic:
        result.warnings.append(
            f"connection notification missing or incomplete{why}: cannot fix it,"
            " NOTIFICATION_TOPIC_ARN is not set"
        )
        return
    if not act:
        result.fixes.append(f"{would}{why}")
        return
    created = client.create_vpc_endpoint_connection_notification(
        ServiceId=service_id,
        ConnectionNotificationArn=topic,
        ConnectionEvents=list(CONNECTION_EVENTS),
    )["ConnectionNotification"]
    notification_id = str(created["ConnectionNotificationId"])
    _set_notification_id(enrollment, notification_id, deps.clock())
    result.fixes.append(f"connection notification {done} ({notification_id}){why}")


# ------------------------------------------------------------------ drift
def _revoke_for(grant_revoke: bool | None, default: bool) -> bool:
    return default if grant_revoke is None else grant_revoke


def find_drift(service_id: str, live: Sequence[Connection], deps: Deps) -> list[DriftItem]:
    """Live connections whose consumer has no live allow grant (the policy would not accept them
    today, capacity limits aside). One registry read for the chunk's consumers, and one
    escalations read when any of them would be revoked (to honour human approvals)."""
    if not live:
        return []
    _, grants, errors = deps.registry.lookup([service_id], {c.owner for c in live})
    by_owner: dict[str, list[Grant]] = defaultdict(list)
    for found in grants.values():
        by_owner[found.consumer].append(found)
    now = deps.clock()
    default = deps.settings.revoke_default
    out: list[DriftItem] = []
    deciding: dict[str, Grant | None] = {}
    for conn in live:
        if conn.owner in errors:
            # A corrupted item is no revocation: report it, never reject on it.
            out.append(
                DriftItem(
                    service_id,
                    conn.vpc_endpoint_id,
                    conn.owner,
                    conn.state,
                    Reason.MALFORMED_GRANT.value,
                    errors[conn.owner],
                    False,
                    "reported",
                )
            )
            continue
        as_pending = dataclasses.replace(conn, state="pendingAcceptance")
        decision = decide(as_pending, by_owner[conn.owner], 0, now, DefaultDecision.ESCALATE)
        if decision.action is Action.ACCEPT:
            continue
        grant = decision.grant
        deciding[conn.vpc_endpoint_id] = grant
        out.append(
            DriftItem(
                service_id,
                conn.vpc_endpoint_id,
                conn.owner,
                conn.state,
                decision.code.value,
                decision.reason,
                _revoke_for(grant.revoke if grant else None, default),
                "reported",
            )
        )
    return _honour_approvals(out, deciding, deps)


def _honour_approvals(
    drift: list[DriftItem], deciding: dict[str, Grant | None], deps: Deps
) -> list[DriftItem]:
    """A connection a human approved in Slack is kept (reported, not revoked) unless its deciding
    grant was changed after the approval: a person's decision is undone only by a later, explicit
    registry change (docs/SWEEP.md, "Drift and human approvals")."""
    revocable = [d.vpc_endpoint_id for d in drift if d.revoke]
    approved = deps.escalations.approvals(revocable) if revocable else {}
    if not approved:
        return drift
    out = []
    for item in drift:
        at = approved.get(item.vpc_endpoint_id)
        grant = deciding.get(item.vpc_endpoint_id)
        changed = grant.updated_at if grant is not None else None
        # Grant times are whole seconds: a change within the approval's second counts as later.
        if at is not None and (changed is None or changed + REVOKE_SKEW <= at):
            reason = f"{item.reason}; approved by a human at {stamp(at)}: kept"
            item = dataclasses.replace(item, reason=reason, revoke=False)
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
    failures = []
    for failure in result.failed:
        if failure.vpc_endpoint_id not in index:
            continue
        item = drift[index[failure.vpc_endpoint_id]]
        drift[index[failure.vpc_endpoint_id]] = dataclasses.replace(
            item, outcome=f"failed:{failure.code}"
        )
        failures.append(
            AuditRecord(
                subject=item.vpc_endpoint_id,
                action="reject",
                actor="sweep",
                at=deps.clock(),
                code=item.code,
                reason=f"drift: {failure.message}",
                trigger="sweep",
                outcome=f"failed:{failure.code}",
                service_id=service_id,
                vpc_endpoint_id=item.vpc_endpoint_id,
                consumer=item.consumer,
            )
        )
    deps.audit.write(failures)


# ------------------------------------------------------------------ escalations
def _age(item: EscalationItem, now: datetime) -> timedelta:
    raw = item.updated_at or item.created_at
    try:
        return now - datetime.fromisoformat(str(raw))
    except (TypeError, ValueError):
        return timedelta.max


def maintain_escalations(
    deps: Deps,
    deadline: Deadline,
    *,
    act: bool,
    refresh_after: timedelta = REFRESH_AFTER,
    limit: int = PORT_CALLS_PER_RUN,
) -> EscalationSweep:
    """Close escalations settled elsewhere, post the unposted, refresh the stale."""
    out = EscalationSweep()
    open_items = list(deps.escalations.open_items())
    if not open_items:
        return out
    by_service: dict[str, list[EscalationItem]] = defaultdict(list)
    for item in open_items:
        by_service[str(item.service_id)].append(item)
    closed: set[str] = set()
    for service_id, items in sorted(by_service.items()):
        if deadline.expired():
            return out
        # Only the escalated consumers' connections: one Describe, not the whole service.
        connections = deps.ec2.connections(service_id, owners={str(i.consumer) for i in items})
        ids = [str(i.vpc_endpoint_id) for i in items]
        if act:
            done = follow(service_id, ids, deps, trigger="sweep", connections=connections)
            closed.update(done)
            out.closed += len(done)
        else:
            pending = {c.vpc_endpoint_id for c in connections if c.pending_acceptance}
            out.would_close += sum(1 for i in ids if i not in pending)
            closed.update(i for i in ids if i not in pending)
    still_open = [i for i in open_items if str(i.vpc_endpoint_id) not in closed]
    now = deps.clock()
    for item in [i for i in still_open if not i.posted][:limit]:
        if deadline.expired():
            return out
        if not act:
            out.would_post += 1
            continue
        deps.port.opened(item)
        out.reposted += 1
    stale = [i for i in still_open if i.posted and _age(i, now) >= refresh_after][:limit]
    for item in stale:
        if deadline.expired():
            return out
        if not act:
            out.would_refresh += 1
            continue
        deps.port.refresh(item)
        out.refreshed += 1
        try:  # refreshed now: the next refresh is due refresh_after from here
            item.update(actions=[EscalationItem.updated_at.set(stamp(now))])
        except UpdateError:
            log.info("escalation %s changed while refreshing it", item.vpc_endpoint_id)
    if out.reposted or out.refreshed or out.closed:
        deps.metrics.add_metric("EscalationsReposted", "Count", out.reposted)
        deps.metrics.add_metric("EscalationsRefreshed", "Count", out.refreshed)
        deps.metrics.add_metric("EscalationsClosed", "Count", out.closed)
    return out


# ------------------------------------------------------------------ one service
def _pages(
    deps: Deps, service_id: str, start_token: str | None
) -> Iterator[tuple[list[Connection], str | None]]:
    """The service's pages from start_token; a token that no longer works restarts at page 1."""
    pages = deps.ec2.connection_pages(service_id, states=SWEEP_STATES, start_token=start_token)
    try:
        first = next(pages)
    except StopIteration:
        return
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if not start_token or code not in BAD_TOKEN_CODES:
            raise
        log.warning("sweep cursor for %s no longer valid (%s): from page 1", service_id, code)
        pages = deps.ec2.connection_pages(service_id, states=SWEEP_STATES)
        first = next(pages)
    yield first
    yield from pages


def _process_chunk(
    service_id: str,
    chunk: list[Connection],
    deps: Deps,
    result: ServiceSweep,
    *,
    act: bool,
) -> None:
    pending = [c for c in chunk if c.pending_acceptance]
    live = [c for c in chunk if c.live]
    result.pending += len(pending)
    if pending:
        report = converge(service_id, deps, pending=pending, trigger="sweep")
        result.add_results(report.summary())
    drift = find_drift(service_id, live, deps)
    if drift:
        reject_drift(service_id, drift, deps, act=act)
        result.drift.extend(drift)


def sweep_service(
    enrollment: RegistryItem,
    deps: Deps,
    deadline: Deadline,
    *,
    act: bool,
    start_token: str | None = None,
    chunk_pages: int = CHUNK_PAGES,
    progress: Progress | None = None,
) -> tuple[ServiceSweep, Cursor | None]:
    """Ensure, then converge and check drift chunk by chunk. Returns the service's result and,
    when the deadline cut it off, where to resume."""
    service_id = str(enrollment.service_id)
    result = ServiceSweep(service_id)
    ensure_service(enrollment, deps, act=act, result=result)
    for fix in result.fixes:
        log.warning("sweep fixed %s: %s", service_id, fix)
    for warning in result.warnings:
        log.warning("sweep found on %s: %s", service_id, warning)
    chunk: list[Connection] = []
    pages_in_chunk = 0
    token = start_token
    pages = _pages(deps, service_id, start_token)
    while True:
        if deadline.expired():
            if chunk:  # already read: the margin is sized to finish it
                _process_chunk(service_id, chunk, deps, result, act=act)
            return result, Cursor(service_id, token)
        try:
            page, token = next(pages)
        except StopIteration:
            token = None
            break
        chunk.extend(page)
        pages_in_chunk += 1
        result.pages += 1
        result.read += len(page)
        if progress:
            progress(f"{service_id}: page {result.pages}, {result.read} connections read")
        if token is None:
            break
        if pages_in_chunk >= chunk_pages:
            _process_chunk(service_id, chunk, deps, result, act=act)
            chunk, pages_in_chunk = [], 0
    if chunk:
        _process_chunk(service_id, chunk, deps, result, act=act)
    result.complete = True
    return result, None


# ------------------------------------------------------------------ the sweep
def sweep(
    deps: Deps,
    *,
    remaining_ms: Callable[[], int] | None = None,
    margin_ms: int = DEFAULT_MARGIN_MS,
    dry_run: bool = False,
    chunk_pages: int = CHUNK_PAGES,
    progress: Progress | None = None,
    cursors: CursorStore | None = None,
) -> SweepReport:
    """One sweep run over every managed service (see the module docstring)."""
    if chunk_pages < 1:
        raise ValueError("chunk_pages must be >= 1")
    act = not (dry_run or deps.settings.shadow_mode)
    if dry_run and not deps.settings.shadow_mode:
        deps = dataclasses.replace(
            deps, settings=dataclasses.replace(deps.settings, shadow_mode=True)
        )
    deadline = Deadline(remaining_ms, margin_ms)
    store = cursors or CursorStore()
    report = SweepReport(dry_run=dry_run or deps.settings.shadow_mode)

    try:
        report.escalations = maintain_escalations(deps, deadline, act=act)
    except Exception as exc:
        log.exception("sweep: escalation maintenance failed")
        report.escalations.error = f"{type(exc).__name__}: {exc}"

    cursor = None if dry_run else store.load()
    report.resumed_from = cursor
    services, token = _rotation(deps.registry.managed_services(), cursor)
    if progress:
        where = f" (resuming at {cursor.service_id})" if cursor else ""
        progress(f"{len(services)} managed service(s){where}")
    for position, enrollment in enumerate(services):
        service_id = str(enrollment.service_id)
        if deadline.expired():
            report.stopped_at = Cursor(service_id)
            break
        try:
            result, stopped = sweep_service(
                enrollment,
                deps,
                deadline,
                act=act,
                start_token=token if position == 0 else None,
                chunk_pages=chunk_pages,
                progress=progress,
            )
        except Exception as exc:
            log.exception("sweep of %s failed; the other services go on", service_id)
            result, stopped = ServiceSweep(service_id, error=f"{type(exc).__name__}: {exc}"), None
        report.services.append(result)
        if progress:
            progress(f"{service_id}: {_one_line(result)}")
        if stopped is not None:
            report.stopped_at = stopped
            break

    if not dry_run:
        if report.stopped_at is not None:
            store.save(report.stopped_at, deps.clock())
        elif cursor is not None:
            store.clear()
    _emit(report, deps)
    return report


def _one_line(result: ServiceSweep) -> str:
    if result.error:
        return f"error: {result.error}"
    parts = [f"{result.read} read", f"{result.pending} pending"]
    parts += [f"{k}={v}" for k, v in sorted(result.results.items())]
    if result.drift:
        parts.append(f"drift={len(result.drift)}")
    parts += result.fixes
    if not result.complete:
        parts.append("cut off")
    return ", ".join(parts)


def _emit(report: SweepReport, deps: Deps) -> None:
    metrics = deps.metrics
    metrics.add_metric("SweepServices", "Count", len(report.services))
    metrics.add_metric("SweepConnectionsRead", "Count", sum(s.read for s in report.services))
    drift = report.drift
    metrics.add_metric("Drift", "Count", len(drift))
    if any(d.outcome == "rejected" for d in drift):
        metrics.add_metric("DriftRejected", "Count", sum(d.outcome == "rejected" for d in drift))
    fixes = sum(len(s.fixes) for s in report.services)
    if fixes:
        metrics.add_metric("EnsureFixed", "Count", fixes)
    if report.cut_off:
        metrics.add_metric("SweepCutOff", "Count", 1)
    if report.errors:
        metrics.add_metric("SweepErrors", "Count", len(report.errors))
    if drift:
        log.warning(
            "drift: %d live connection(s) without a live allow grant",
            len(drift),
            extra={"drift": [d.as_dict() for d in drift[:DRIFT_LOG_LIMIT]]},
        )
        if isinstance(deps.port, DriftReporter):
            try:
                deps.port.drift(DriftSummary(tuple(drift)))
            except Exception:  # optional: never fail the sweep over a summary
                log.exception("drift summary could not be sent")
    log.info("sweep done", extra={"sweep": _compact(report)})


def _compact(report: SweepReport) -> dict[str, Any]:
    summary = report.summary()
    summary.pop("per_service", None)
    return summary
