"""Registry edits take effect: a grant's principals reach the endpoint services' allowed principals,
the consumer's waiting connections are converged, and lost access is revoked when asked to.

`apply_change()` handles one registry change (a DynamoDB stream record, parsed by
handlers/registry_stream.py into a `Change`). It is level-triggered like converge(): the images say
*which* grant changed; what the allow-list and the connections should be is decided from the
registry as it is now (consistent reads) and from EC2 as it is now. Replayed, reordered or
duplicated records therefore converge to the same state, and a replay changes nothing.

Per affected service (the grant's service, or every managed service for a `*` grant):
1. allowed principals: the consumer's principals that its deciding grant (deny wins, then the
   service's own grant, then the `*` grant; live allow only) names are added; the other principals
   of that consumer that any version of its grants named are removed, but only when this
   deployment added them (ownership.py) and no live grant still needs them: the provider's own
   entries are never touched. `*` is touched only with ALLOW_WILDCARD_PRINCIPAL.
   `wanted_principals()` is the one rule for "which principals should this service have"; the
   sweep (sweep/principals.py) applies the same rule to the whole service.
2. converge(service, consumers=[consumer], trigger="registry"): its pendingAcceptance connections
   get the decision the registry now gives (a new allow grant accepts them).
3. revocation: when the consumer had access before the change and has none after it, and the
   grant's `revoke` (or the deployment's REVOKE_DEFAULT) is on, its live (pending/available)
   connections that existed at the time of the change are rejected. Removing a principal alone
   disconnects nobody.

Every change is audited (subject grant#<service>#<consumer>) with the old and new values and who
made it (the item's `updated_by`, or "ttl" for a TTL deletion), under an ID derived from the
stream record, so a replay overwrites the same audit item with the same content.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from . import ownership, policy
from . import validation as v
from .audit import AuditRecord
from .converge import Deps, converge, follow
from .model import WILDCARD_SERVICE, Grant, GrantStatus, Membership, Scope, scope_of
from .registry import (
    RegistryError,
    Undecodable,
    grant_from_item,
    iso,
    query_items,
)
from .tables import SERVICE_MARKER

log = logging.getLogger("vpce_approver.grants")

WILDCARD_PRINCIPAL = "*"
TTL_PRINCIPAL_ID = "dynamodb.amazonaws.com"
# Stream record times are whole seconds: a connection created within the same second as the
# change still counts as existing at the time of the change.
REVOKE_SKEW = timedelta(seconds=1)
OWNER_FILTER_MAX = 100  # owners named in one vpc-endpoint-owner filter (else: filter here)
LIVE = ("pending", "available")
# Principals per `principals-added`/`-removed` audit record: a record names what changed, never the
# whole allow-list, and a large change is split, so every item stays a few KB (DynamoDB: 400 KB).
PRINCIPALS_PER_RECORD = 50
AUDIT_KEYS = (
    "status",
    "principals",
    "expires_at",
    "max_endpoints",
    "regions",
    "owner",
    "note",
    "revoke",
    "principal_role",
    "updated_by",
    "updated_at",
    "name",
    "notification_id",
)


@dataclass(frozen=True, slots=True)
class Change:
    """One change of a registry item, as a DynamoDB stream record reports it."""

    event_id: str
    event: str  # INSERT | MODIFY | REMOVE
    service_id: str
    consumer: str
    old: Mapping[str, Any] | None
    new: Mapping[str, Any] | None
    at: datetime
    by_ttl: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return (self.service_id, self.consumer)

    @property
    def enrollment(self) -> bool:
        return self.consumer == SERVICE_MARKER

    @property
    def actor(self) -> str:
        if self.by_ttl:
            return "ttl"
        who = (self.new or {}).get("updated_by") or (self.old or {}).get("updated_by")
        return f"registry:{_short(who)}" if who else "registry:unknown"


@dataclass
class ServiceEffect:
    service_id: str
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    accepted: tuple[str, ...] = ()
    revoked: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()  # "<vpce-id>: <code>"
    shadow: bool = False


@dataclass
class ChangeReport:
    change: Change
    action: str
    refused: str | None = None
    skipped: str | None = None  # why no service was touched
    services: list[ServiceEffect] = field(default_factory=list)


# ----------------------------------------------------------------------------- pure helpers


def allowing_grant(
    service_id: str,
    consumer: str,
    grants: Mapping[tuple[str, str], Grant | None],
    now: datetime | None,
    membership: Membership | None = None,
) -> Grant | None:
    """The grant that lets account `consumer` connect to `service_id`, as the policy ranks
    them (policy.allowing_grant): a live deny that applies at any level wins; else the most
    specific grant (its own, its nearest OU's, ..., its organization's; the service's before
    `*`), when it is a live allow. A malformed item (None here) is no grant. `now=None` ignores
    expiry (what the grant said, not whether it lapsed)."""
    entries = [g for g in grants.values() if g is not None]
    return policy.allowing_grant(service_id, consumer, entries, now, membership)


def wanted_principals(
    service_id: str,
    grants: Mapping[tuple[str, str], Grant | None],
    now: datetime,
    *,
    allow_wildcard: bool,
    memberships: Mapping[str, Membership] | None = None,
    partition: str = "aws",
) -> set[str]:
    """Which principals the service's allow-list needs for these grants: those every account's
    deciding grant gives it (`allowing_grant`: live allow only, deny wins; an OU/organization
    grant gives each member account its root or its `principal_role`). The accounts are the
    grants' own consumers and those `memberships` places (an OU/organization grant's members).
    `*` only when the deployment allows it. The stream path passes one consumer's grants, the
    sweep and an enrollment the whole service's (allowlist.service_wanted)."""
    memberships = memberships or {}
    accounts = {c for _, c in grants if scope_of(c) is Scope.ACCOUNT} | set(memberships)
    wanted: set[str] = set()
    for account in sorted(accounts):
        grant = allowing_grant(service_id, account, grants, now, memberships.get(account))
        if grant is not None:
            wanted.update(grant.principals_for(account, partition))
    if not allow_wildcard:
        wanted.discard(WILDCARD_PRINCIPAL)
    return wanted


def principal_records(
    service_id: str,
    *,
    subject: str,
    actor: str,
    trigger: str,
    at: datetime,
    added: Iterable[str] = (),
    removed: Iterable[str] = (),
    shadow: bool = False,
    consumer: str | None = None,
) -> list[AuditRecord]:
    """Audit records of an allow-list change: what changed (at most PRINCIPALS_PER_RECORD
    principals a record), never the list before and after."""
    records = []
    for action, key, principals in (
        ("principals-added", "added", sorted(set(added))),
        ("principals-removed", "removed", sorted(set(removed))),
    ):
        parts = range(0, len(principals), PRINCIPALS_PER_RECORD)
        for number, start in enumerate(parts, 1):
            chunk = principals[start : start + PRINCIPALS_PER_RECORD]
            part = (
                f" (part {number} of {len(parts)}, {len(principals)} in all)"
                if len(parts) > 1
                else ""
            )
            records.append(
                AuditRecord(
                    subject=subject,
                    action=f"would-{action}" if shadow else action,
                    actor=actor,
                    at=at,
                    reason=f"{service_id}: {_some(chunk)}{part}",
                    trigger=trigger,
                    outcome="shadow" if shadow else "done",
                    service_id=service_id,
                    consumer=consumer,
                    new={key: chunk},
                )
            )
    return records


def _some(principals: list[str], shown: int = 3) -> str:
    """The first few principals by name (the record's `new` has them all)."""
    more = len(principals) - shown
    return ", ".join(principals[:shown]) + (f" and {more} more" if more > 0 else "")


def plain(image: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A stream image as plain values for the audit trail (expiry as an ISO time)."""
    if image is None:
        return None
    out: dict[str, Any] = {}
    for key in AUDIT_KEYS:
        value = _plain_value(image.get(key))
        if key == "expires_at" and isinstance(value, int):
            value = iso(datetime.fromtimestamp(value, UTC))
        if value is not None:
            out[key] = value
    return out


def _plain_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else str(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_plain_value(i) for i in value]
        return sorted(str(i) for i in items) if isinstance(value, (set, frozenset)) else items
    if isinstance(value, (bytes, bytearray)):
        return "<binary>"
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return str(value)


def describe_diff(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> str:
    """'status: allow -> suspended; revoke: - -> True' (bookkeeping fields left out)."""
    old, new = old or {}, new or {}
    parts = []
    for key in AUDIT_KEYS:
        if key in {"updated_by", "updated_at"}:
            continue
        before, after = old.get(key), new.get(key)
        if before != after:
            parts.append(f"{key}: {_show(before)} -> {_show(after)}")
    return "; ".join(parts) or "no field changed"


def _show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(str(i) for i in value) or "-"
    return str(value)


def _short(value: Any, limit: int = 128) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def decision_id(change: Change, part: str) -> str:
    """Stable per stream record: a replay writes the same audit item again."""
    return hashlib.sha256(f"{change.event_id}#{part}".encode()).hexdigest()[:32]


def action_of(change: Change) -> str:
    if change.event == "REMOVE":
        return "grant-expired" if change.by_ttl else "grant-removed"
    return "grant-added" if change.event == "INSERT" else "grant-changed"


def candidate_principals(
    consumer: str, images: Iterable[Mapping[str, Any] | None], *, allow_wildcard: bool
) -> set[str]:
    """Principals any version of the consumer's grants named that this deployment may manage:
    well-formed, the consumer's own account (or `*` when the deployment allows it). Malformed
    entries are never turned into allow-list entries, nor removed."""
    out: set[str] = set()
    for image in images:
        raw = (image or {}).get("principals") or ()
        if isinstance(raw, (str, bytes)) or not isinstance(raw, Iterable):
            continue
        for principal in raw:
            try:
                v.principal(principal, allow_wildcard=allow_wildcard)
            except v.ValidationError:
                continue
            if principal == WILDCARD_PRINCIPAL or v.principal_account(principal) == consumer:
                out.add(str(principal))
    return out


# ----------------------------------------------------------------------------- registry reads


def _parse(image: Mapping[str, Any] | None, deps: Deps) -> tuple[Grant | None, str | None]:
    if image is None:
        return None, None
    try:
        grant = grant_from_item(
            image, allow_wildcard_principal=deps.settings.allow_wildcard_principal
        )
    except RegistryError as exc:
        return None, str(exc)
    return grant, None


def _current(
    service_id: str, consumer: str, deps: Deps
) -> tuple[dict[tuple[str, str], Grant | None], Membership | None]:
    """The consumer's grants that can decide on this service (its own, and with OU/organization
    grants on, its OUs' and organization's), read consistently (the stream record may arrive
    before an eventually consistent read would show the write), and its membership. A malformed
    item counts as no grant: it is never an allow."""
    found = deps.registry.read([service_id], [consumer])
    keys = [(service_id, consumer), (WILDCARD_SERVICE, consumer)]
    out: dict[tuple[str, str], Grant | None] = dict.fromkeys(keys)
    for entry in found.entries(consumer):
        out[entry.key] = entry if isinstance(entry, Grant) else None
    return out, found.membership(consumer)


def _partition(service_id: str, deps: Deps) -> dict[tuple[str, str], Grant | None]:
    orgs = deps.registry.directory is not None  # without, OU/organization items are inert
    out: dict[tuple[str, str], Grant | None] = {}
    for item in query_items(service_id, consistent_read=True):
        if item.consumer == SERVICE_MARKER or isinstance(item, Undecodable):
            continue
        if not orgs and scope_of(str(item.consumer)) is not Scope.ACCOUNT:
            continue
        grant, _ = _parse(item.attribute_values, deps)
        out[(str(item.service_id), str(item.consumer))] = grant
    return out


def service_grants(service_id: str, deps: Deps) -> dict[tuple[str, str], Grant | None]:
    """Every grant that can decide on the service: its partition and the `*` partition, read
    consistently. A malformed item counts as no grant (it is never an allow). OU/organization
    grants only when the deployment reads the organization."""
    return {**_partition(service_id, deps), **_partition(WILDCARD_SERVICE, deps)}


def _wildcard_needed(service_id: str, deps: Deps, now: datetime) -> bool:
    """Whether any consumer's deciding grant on the service names the `*` principal."""
    grants = service_grants(service_id, deps)
    return WILDCARD_PRINCIPAL in wanted_principals(service_id, grants, now, allow_wildcard=True)


def affected_services(service_id: str, deps: Deps) -> list[str]:
    """Managed services a grant applies to: its own service if managed, every one for `*`."""
    if service_id == WILDCARD_SERVICE:
        return [str(item.service_id) for item in deps.registry.managed_services()]
    return [service_id] if deps.registry.is_managed(service_id) else []


# ----------------------------------------------------------------------------- effects


def _sync_principals(
    service_id: str,
    change: Change,
    *,
    add: set[str],
    remove: set[str],
    deps: Deps,
    effect: ServiceEffect,
) -> None:
    """Add what `add` names and the list lacks (claimed first: ownership.py); remove what
    `remove` names only when this deployment added it (the provider's own entries stay)."""
    if not add and not remove:
        return
    current = deps.ec2.allowed_principals(service_id)
    to_add = sorted(add - current)
    unneeded = remove & current
    to_remove = sorted(ownership.owned(service_id, unneeded)) if unneeded else []
    shadow = deps.settings.shadow_mode
    now = deps.clock()
    if not shadow:
        # A claim without its principal (a crash after the claim, or a removal by hand that a
        # grant change then made unneeded) is stale: forget it, or a principal the provider
        # adds by hand later would be taken for ours.
        stale = remove - current - add
        if stale:
            ownership.release(service_id, stale)
    if not to_add and not to_remove:
        return
    if not shadow:
        ownership.claim(service_id, to_add, by=change.actor, now=now)
        deps.ec2.modify_principals(service_id, add=to_add, remove=to_remove)
        ownership.release(service_id, to_remove)
    effect.added, effect.removed, effect.shadow = tuple(to_add), tuple(to_remove), shadow
    subject = (
        f"service#{service_id}"
        if change.enrollment
        else f"grant#{change.service_id}#{change.consumer}"
    )
    deps.audit.write(
        principal_records(
            service_id,
            subject=subject,
            actor=change.actor,
            trigger="registry",
            at=now,
            added=to_add,
            removed=to_remove,
            shadow=shadow,
            consumer=None if change.enrollment else change.consumer,
        )
    )
    deps.metrics.add_metric("PrincipalsAdded", "Count", len(to_add))
    deps.metrics.add_metric("PrincipalsRemoved", "Count", len(to_remove))
    log.info(
        "allowed principals of %s: +%s -%s%s",
        service_id,
        to_add,
        to_remove,
        " (shadow)" if shadow else "",
    )


def _revoke(
    service_id: str,
    change: Change,
    grant_label: str,
    deps: Deps,
    effect: ServiceEffect,
    owners: Sequence[str] | None = None,
) -> None:
    """Reject the live connections of the consumer (or of `owners`: an OU/organization grant's
    member accounts that lost access) that existed when the change was made. A human's later
    decision stands, even when the record is processed late or replayed: a connection created
    after the change (accepted by hand) and one a human approved in Slack after it."""
    cutoff = change.at + REVOKE_SKEW
    who = set(owners) if owners is not None else {change.consumer}
    # The owner filter takes a bounded list: past that, one read of the live connections.
    asked = sorted(who) if len(who) <= OWNER_FILTER_MAX else []
    targets = [
        c
        for c in deps.ec2.connections(service_id, states=LIVE, owners=asked)
        if c.owner in who and c.live and (c.created is None or c.created <= cutoff)
    ]
    if not targets:
        return
    approved = deps.escalations.approvals(c.vpc_endpoint_id for c in targets)
    spared = {vpce for vpce, at in approved.items() if at > cutoff}
    if spared:
        log.info("revocation spares %s: approved by a human after the change", sorted(spared))
        targets = [c for c in targets if c.vpc_endpoint_id not in spared]
        if not targets:
            return
    shadow = deps.settings.shadow_mode
    now = deps.clock()
    why = f"access revoked: grant {grant_label} {action_of(change).removeprefix('grant-')}"

    conn_owner = {c.vpc_endpoint_id: c.owner for c in targets}

    def record(conn_id: str, region: str | None, outcome: str) -> AuditRecord:
        return AuditRecord(
            subject=conn_id,
            action="would-reject" if shadow else "reject",
            actor=change.actor,
            at=now,
            code="revoked",
            reason=why,
            trigger="registry",
            outcome=outcome,
            service_id=service_id,
            vpc_endpoint_id=conn_id,
            consumer=conn_owner[conn_id],
            region=region,
        )

    records = [
        record(c.vpc_endpoint_id, c.region, "shadow" if shadow else "requested") for c in targets
    ]
    deps.audit.write(records)
    if shadow:
        effect.revoked, effect.shadow = tuple(c.vpc_endpoint_id for c in targets), True
        return
    result = deps.ec2.reject(service_id, [c.vpc_endpoint_id for c in targets])
    deps.audit.settle(records, result.succeeded, {f.vpc_endpoint_id: f.code for f in result.failed})
    effect.revoked = result.succeeded
    effect.failed = tuple(f"{f.vpc_endpoint_id}: {f.code}" for f in result.failed)
    deps.metrics.add_metric("Revoked", "Count", len(result.succeeded))
    log.warning(
        "revoked %d connection(s) of %s on %s", len(result.succeeded), grant_label, service_id
    )


def _revoke_flag(change: Change, deps: Deps) -> bool:
    for image in (change.new, change.old):
        value = (image or {}).get("revoke")
        if isinstance(value, bool):
            return value
    return deps.settings.revoke_default


def _apply_on_service(
    service_id: str,
    change: Change,
    old: Grant | None,
    candidates: set[str],
    revocable: bool,
    deps: Deps,
) -> ServiceEffect:
    effect = ServiceEffect(service_id)
    consumer = change.consumer
    now = deps.clock()
    current, member = _current(service_id, consumer, deps)
    after = allowing_grant(service_id, consumer, current, now, member)
    partition = v.partition_of(deps.settings.region)
    names = candidates | {
        p for g in current.values() if g is not None for p in g.principals_for(consumer, partition)
    }
    allow_wildcard = deps.settings.allow_wildcard_principal
    if not allow_wildcard:
        names.discard(WILDCARD_PRINCIPAL)
    desired = wanted_principals(
        service_id,
        current,
        now,
        allow_wildcard=allow_wildcard,
        memberships={consumer: member} if member is not None else None,
        partition=partition,
    )
    if member is not None and not member.known:
        names -= names - desired  # membership unknown: remove nothing (an OU may still need it)
    wildcard_open = WILDCARD_PRINCIPAL in names and WILDCARD_PRINCIPAL not in desired
    if wildcard_open and _wildcard_needed(service_id, deps, now):
        desired.add(WILDCARD_PRINCIPAL)  # another consumer's grant still needs it
    _sync_principals(
        service_id,
        change,
        add=names & desired,
        remove=names - desired,
        deps=deps,
        effect=effect,
    )

    report = converge(
        service_id, deps, consumers=[consumer], trigger="registry", actor=change.actor
    )
    effect.accepted = tuple(report.accepted)
    settled = report.accepted + report.rejected
    if settled:
        follow(service_id, settled, deps, trigger="registry")

    before_grants = dict(current)
    before_grants[change.key] = old
    before = allowing_grant(service_id, consumer, before_grants, None, member)
    if before is not None and after is None and revocable and _revoke_flag(change, deps):
        _revoke(service_id, change, f"{change.service_id}/{consumer}", deps, effect)
    return effect


def _apply_org_on_service(
    service_id: str, change: Change, old: Grant | None, revocable: bool, deps: Deps
) -> ServiceEffect:
    """An OU/organization grant changed: its members are many, so the service is made whole
    rather than patched: its allow-list is reconciled (allowlist.py: every member of every
    granted OU), all its waiting connections are converged, and, when the grant allowed before
    and revocation is on for it, the live connections of members that lost access are
    rejected (as for an account grant)."""
    from .allowlist import reconcile  # allowlist builds on this module

    effect = ServiceEffect(service_id)
    shadow = deps.settings.shadow_mode
    drift = reconcile(
        service_id,
        deps,
        act=not shadow,
        actor=change.actor,
        trigger="registry",
        subject=f"grant#{change.service_id}#{change.consumer}",
    )
    effect.added, effect.removed, effect.shadow = drift.missing, drift.extra, shadow
    report = converge(service_id, deps, trigger="registry", actor=change.actor)
    effect.accepted = tuple(report.accepted)
    settled = report.accepted + report.rejected
    if settled:
        follow(service_id, settled, deps, trigger="registry")
    allowed = old is not None and old.status is GrantStatus.ALLOW
    if revocable and old is not None and allowed and _revoke_flag(change, deps):
        lost = _lost_members(service_id, change, old, deps)
        if lost:
            label = f"{change.service_id}/{change.consumer}"
            _revoke(service_id, change, label, deps, effect, owners=lost)
    return effect


def _lost_members(service_id: str, change: Change, old: Grant, deps: Deps) -> list[str]:
    """Member accounts of the changed OU/organization that the old grant let in (as the policy
    ranked it then) and that nothing lets in now. Unreadable members: none (nothing revoked)."""
    directory = deps.registry.directory
    members = directory.members(change.consumer) if directory is not None else None
    if not members:
        if members is None:
            log.warning("members of %s unreadable: nothing revoked", change.consumer)
        return []
    found = deps.registry.read([service_id], members)
    now = deps.clock()
    lost = []
    for account in sorted(members):
        member = found.membership(account)
        if member is None or not member.known:  # cannot tell: never revoke on a guess
            continue
        current: dict[tuple[str, str], Grant | None] = {
            e.key: e for e in found.entries(account) if isinstance(e, Grant)
        }
        before_grants = {**current, change.key: old}
        before = allowing_grant(service_id, account, before_grants, None, member)
        after = allowing_grant(service_id, account, current, now, member)
        if before is not None and after is None:
            lost.append(account)
    return lost


def _audit_change(report: ChangeReport, deps: Deps) -> None:
    change = report.change
    old, new = plain(change.old), plain(change.new)
    if report.refused:
        reason = f"refused: {report.refused}"
    elif change.event == "REMOVE":
        reason = "expired (TTL deletion)" if change.by_ttl else "deleted"
    else:
        reason = describe_diff(old, new)
    try:  # an account, an OU or an organization: `audit --consumer` finds its grant's history
        consumer: str | None = v.consumer(change.consumer)
    except v.ValidationError:
        consumer = None
    deps.audit.write(
        [
            AuditRecord(
                subject=_short(f"grant#{change.service_id}#{change.consumer}", 256),
                action=report.action,
                actor=change.actor,
                at=change.at,
                code="malformed-grant" if report.refused else None,
                reason=_short(reason, 1024),
                trigger="registry",
                outcome="refused" if report.refused else "recorded",
                service_id=_short(change.service_id),
                consumer=consumer,
                old=old,
                new=new,
                decision_id=decision_id(change, "change"),
            )
        ]
    )


# ----------------------------------------------------------------------------- entry points


def apply_change(change: Change, deps: Deps) -> ChangeReport:
    """Make one registry change take effect. Raises on AWS/DynamoDB errors (the stream record
    is retried); a malformed item is refused (audited, logged) and never raises."""
    if change.enrollment:
        return apply_enrollment(change, deps)
    old, _ = _parse(change.old, deps)
    _, new_error = _parse(change.new, deps)
    try:
        v.service_id(change.service_id, allow_wildcard=True)
        v.consumer(change.consumer)
    except v.ValidationError as exc:
        new_error = f"registry item key {change.service_id!r}/{change.consumer!r}: {exc}"
    report = ChangeReport(change, "grant-refused" if new_error else action_of(change))
    if new_error:
        report.refused = new_error
        log.error("refusing malformed registry item: %s", new_error)
        deps.metrics.add_metric("MalformedGrants", "Count", 1)
    _audit_change(report, deps)
    deps.metrics.add_metric("RegistryChanges", "Count", 1)
    if report.refused and "registry item key" in report.refused:
        report.skipped = "malformed key"
        return report

    services = affected_services(change.service_id, deps)
    if not services:
        report.skipped = f"{change.service_id} is not managed by this deployment"
        log.info("registry change for %s: %s", change.service_id, report.skipped)
        return report
    if scope_of(change.consumer) is not Scope.ACCOUNT:
        if deps.registry.directory is None:
            report.skipped = (
                "OU/organization grants are off in this deployment (ORGANIZATION_GRANTS):"
                " the grant decides nothing"
            )
            log.warning("registry change for %s: %s", change.consumer, report.skipped)
            return report
        revocable = new_error is None
        for service_id in services:
            report.services.append(_apply_org_on_service(service_id, change, old, revocable, deps))
        return report
    candidates = candidate_principals(
        change.consumer,
        (change.old, change.new),
        allow_wildcard=deps.settings.allow_wildcard_principal,
    )
    # A malformed new version never revokes: a typo must not disconnect a consumer.
    revocable = new_error is None
    for service_id in services:
        report.services.append(
            _apply_on_service(service_id, change, old, candidates, revocable, deps)
        )
    return report


def apply_enrollment(change: Change, deps: Deps) -> ChangeReport:
    """A service was enrolled (or its enrollment changed): put the principals of every grant
    that applies to it on its allow-list (adds only) and converge its waiting connections.
    An un-enrolled service is left as it is (the deployment no longer manages it)."""
    action = "service-unenrolled" if change.new is None else "service-enrolled"
    report = ChangeReport(change, action)
    try:
        v.service_id(change.service_id)
    except v.ValidationError as exc:
        report.refused = str(exc)
        report.action = "enrollment-refused"
    deps.audit.write(
        [
            AuditRecord(
                subject=_short(f"service#{change.service_id}", 256),
                action=report.action,
                actor=change.actor,
                at=change.at,
                reason=report.refused or describe_diff(plain(change.old), plain(change.new)),
                trigger="registry",
                outcome="refused" if report.refused else "recorded",
                service_id=_short(change.service_id),
                old=plain(change.old),
                new=plain(change.new),
                decision_id=decision_id(change, "enrollment"),
            )
        ]
    )
    if report.refused or change.new is None:
        return report
    report.services.append(sync_service(change.service_id, deps, actor=change.actor, change=change))
    return report


def sync_service(
    service_id: str, deps: Deps, *, actor: str, change: Change | None = None
) -> ServiceEffect:
    """Add the principals of every grant deciding on this service to its allow-list (never
    removes), then converge all its waiting connections."""
    from .allowlist import service_wanted  # allowlist builds on this module

    effect = ServiceEffect(service_id)
    now = deps.clock()
    wanted = service_wanted(service_id, deps).principals
    marker = change or Change(
        event_id=f"sync#{service_id}#{iso(now)}",
        event="MODIFY",
        service_id=service_id,
        consumer=SERVICE_MARKER,
        old=None,
        new={"updated_by": actor.removeprefix("registry:")},
        at=now,
    )
    _sync_principals(service_id, marker, add=wanted, remove=set(), deps=deps, effect=effect)
    report = converge(service_id, deps, trigger="registry", actor=actor)
    effect.accepted = tuple(report.accepted)
    settled = report.accepted + report.rejected
    if settled:
        follow(service_id, settled, deps, trigger="registry")
    return effect
