"""The decision policy: pure, no I/O.

    decide(connection, grants, accepted_count, now, default, membership) -> Decision

A grant names one account, an AWS Organizations OU (nested OUs included) or the whole
organization (model.Scope), for one service or `*`. `membership` says where the connection's
owner sits in the organization (model.Membership, as the deployment last read it).

Rules, in order (README "Decision rules", docs/ORGANIZATIONS.md):
1. A connection that is not pendingAcceptance gets no decision (already settled).
2. A live deny that applies, at any level (the account's, any OU on its path, the organization;
   the service's or `*`), rejects: deny wins over any allow and over a malformed item. A
   malformed item that applies and reads as a live deny rejects too.
3. When the owner's membership could not be read (or was not read), OU/organization items cannot
   be placed: one that is (or may be) a deny, or is malformed, escalates (membership-unknown);
   only the account's own grant can still decide, and no OU/organization grant ever allows.
4. Any other malformed item that applies escalates: bad data never allows, and never turns a
   deny into an escalation.
5. Otherwise the most specific grant decides: the account's own, then the nearest OU on its path
   (child before parent), then the organization; within each level the service's own grant
   before the `*` grant. Accounts outside the organization never match an OU/organization grant.
   - suspended -> escalate; expired -> escalate; consumer region not allowed -> escalate;
     at or over `max_endpoints` (per account) -> escalate; else accept.
6. No grant: the deployment default (escalate, reject, or ignore = no decision), except that an
   OU/organization grant that may apply but cannot be placed escalates (membership-unknown).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from .model import (
    WILDCARD_SERVICE,
    Action,
    Connection,
    Decision,
    DefaultDecision,
    Grant,
    GrantStatus,
    MalformedItem,
    Membership,
    Reason,
    Scope,
    scope_of,
)

Entry = Grant | MalformedItem
Rank = tuple[int, int]  # (level: 0 account, 1 parent OU, ..., organization; 0 service, 1 `*`)


def _applies(entry: Entry, connection: Connection) -> bool:
    return entry.consumer == connection.owner and entry.service_id in (
        connection.service_id,
        WILDCARD_SERVICE,
    )


def _for_service(entry: Entry, connection: Connection) -> bool:
    return entry.service_id in (connection.service_id, WILDCARD_SERVICE)


def _org_scoped(entry: Entry) -> bool:
    return scope_of(entry.consumer) is not Scope.ACCOUNT


def _rank(entry: Entry, connection: Connection, membership: Membership | None) -> Rank | None:
    """Where the entry stands for this connection (lower decides first), None if it does not
    apply. OU/organization entries need a known membership (see _unplaced)."""
    if not _for_service(entry, connection):
        return None
    wildcard = int(entry.service_id == WILDCARD_SERVICE)
    if entry.consumer == connection.owner:
        return (0, wildcard)
    if not _org_scoped(entry) or membership is None or membership.account != connection.owner:
        return None
    level = membership.level(entry.consumer)
    return None if level is None else (level, wildcard)


def _placed(
    connection: Connection, entries: Iterable[Entry], membership: Membership | None
) -> list[tuple[Rank, Entry]]:
    ranked = []
    for entry in entries:
        rank = _rank(entry, connection, membership)
        if rank is not None:
            ranked.append((rank, entry))
    ranked.sort(key=lambda pair: pair[0])
    return ranked


def _unplaced(
    connection: Connection, entries: Iterable[Entry], membership: Membership | None
) -> list[Entry]:
    """OU/organization entries for the service that may apply but cannot be placed, because
    the owner's membership is unknown (or was not read)."""
    if membership is not None and membership.known and membership.account == connection.owner:
        return []
    return [e for e in entries if _org_scoped(e) and _for_service(e, connection)]


def matching_grants(
    connection: Connection, grants: Iterable[Entry]
) -> tuple[Grant | None, Grant | None]:
    """(service-specific grant, `*` grant) of the connection's own account (malformed items are
    not grants: see matching_malformed). OU/organization grants: deciding_grant()."""
    specific = wildcard = None
    for grant in grants:
        if not isinstance(grant, Grant) or not _applies(grant, connection):
            continue
        if grant.service_id == connection.service_id:
            specific = grant
        else:
            wildcard = grant
    return specific, wildcard


def matching_malformed(connection: Connection, entries: Iterable[Entry]) -> list[MalformedItem]:
    """The malformed items (the service's, then `*`) of this connection's own account."""
    found = [e for e in entries if isinstance(e, MalformedItem) and _applies(e, connection)]
    return sorted(found, key=lambda e: e.service_id == WILDCARD_SERVICE)


def deciding_grant(
    connection: Connection, entries: Iterable[Entry], membership: Membership | None = None
) -> Grant | None:
    """The most specific grant that applies (deny, malformed items and expiry aside): the one
    whose limits count (limits.py) and that explain names."""
    for _, entry in _placed(connection, entries, membership):
        if isinstance(entry, Grant):
            return entry
    return None


def allowing_grant(
    service_id: str,
    account: str,
    entries: Iterable[Entry],
    now: datetime | None,
    membership: Membership | None = None,
) -> Grant | None:
    """The grant that lets `account` connect to `service_id`, as decide() ranks them, for the
    allow-list: a live deny that applies at any level (or a malformed item that reads as one),
    or an OU/organization deny or malformed item that may apply to an account whose membership
    is unknown, means none; else the most specific grant, when it is a live allow. Regions and
    limits are per connection and do not matter here. `now=None` ignores expiry (what the grants
    said, not whether they lapsed)."""
    probe = Connection(service_id, "", account, "pendingAcceptance")
    entries = list(entries)

    def live(entry: Grant | MalformedItem) -> bool:
        expires = entry.expires_at
        return now is None or expires is None or expires > now

    placed = _placed(probe, entries, membership)
    for _, entry in placed:
        if entry.status is GrantStatus.DENY and live(entry):
            return None
    for entry in _unplaced(probe, entries, membership):
        if isinstance(entry, MalformedItem) or (entry.status is GrantStatus.DENY and live(entry)):
            return None
    grant = next((e for _, e in placed if isinstance(e, Grant)), None)
    if grant is None or grant.status is not GrantStatus.ALLOW or not live(grant):
        return None
    return grant


def via(grant: Grant | None, membership: Membership | None) -> str | None:
    """For an OU/organization grant: the account's path that matched."""
    if grant is None or grant.scope is Scope.ACCOUNT or membership is None:
        return None
    return membership.describe()


def _label(grant: Grant, membership: Membership | None) -> str:
    path = via(grant, membership)
    return f"{grant.label} (path {path})" if path else grant.label


def decide(
    connection: Connection,
    grants: Iterable[Entry],
    accepted_count: int,
    now: datetime,
    default: DefaultDecision = DefaultDecision.ESCALATE,
    membership: Membership | None = None,
) -> Decision:
    """Decide one connection. `grants` = the registry entries (grants, and malformed items) that
    can apply to its consumer (its own, its OUs', its organization's); `accepted_count` = the
    consumer's live (pending/available) connections on this service, not counting this one;
    `membership` = where the consumer sits in the organization (None: not read, so no
    OU/organization entry can be placed)."""
    who = f"account {connection.owner}"
    if not connection.pending_acceptance:
        return Decision(
            Action.NONE, Reason.NOT_PENDING, f"connection is already {connection.state}"
        )

    entries = list(grants)
    placed = _placed(connection, entries, membership)
    for _, entry in placed:
        if isinstance(entry, Grant) and entry.status is GrantStatus.DENY and not entry.expired(now):
            return Decision(
                Action.REJECT,
                Reason.DENIED,
                f"{who} is denied by grant {_label(entry, membership)}",
                entry,
                via(entry, membership),
            )
    malformed = [e for _, e in placed if isinstance(e, MalformedItem)]
    for item in malformed:
        if item.reads_as_live_deny(now):
            return Decision(
                Action.REJECT,
                Reason.DENIED,
                f"{who} is denied by registry item {item.label}, which reads as a deny although"
                f" it is malformed ({item.field}: {item.error})",
            )
    unplaced = _unplaced(connection, entries, membership)
    why = (
        membership.error
        if membership is not None and membership.error
        else "this deployment does not read AWS Organizations"
    )
    risky = [
        e
        for e in unplaced
        if isinstance(e, MalformedItem) or (e.status is GrantStatus.DENY and not e.expired(now))
    ]
    if risky:
        return Decision(
            Action.ESCALATE,
            Reason.MEMBERSHIP_UNKNOWN,
            f"{who}'s place in the organization could not be read ({why}); registry item"
            f" {risky[0].label} may apply and is a deny or malformed: a human must decide",
        )
    if malformed:
        item = malformed[0]
        return Decision(
            Action.ESCALATE,
            Reason.MALFORMED_GRANT,
            f"{who} has a malformed registry item ({item.message}); a human must decide",
        )

    grant = next((e for _, e in placed if isinstance(e, Grant)), None)
    if grant is None and unplaced:
        return Decision(
            Action.ESCALATE,
            Reason.MEMBERSHIP_UNKNOWN,
            f"{who}'s place in the organization could not be read ({why}); grant"
            f" {unplaced[0].label} may apply but allows nothing it cannot place: a human must"
            " decide",
        )
    if grant is None:
        text = f"{who} has no grant for {connection.service_id} and no all-services grant"
        if default is DefaultDecision.REJECT:
            return Decision(Action.REJECT, Reason.NO_GRANT, f"{text} (default: reject)")
        if default is DefaultDecision.IGNORE:
            return Decision(Action.NONE, Reason.NO_GRANT, f"{text} (default: ignore)")
        return Decision(Action.ESCALATE, Reason.NO_GRANT, text)

    label, path = _label(grant, membership), via(grant, membership)
    if grant.status is GrantStatus.SUSPENDED:
        return Decision(
            Action.ESCALATE, Reason.SUSPENDED, f"grant {label} is suspended", grant, path
        )
    if grant.status is GrantStatus.DENY:  # an expired deny: it no longer decides anything
        return Decision(
            Action.ESCALATE,
            Reason.EXPIRED,
            f"deny grant {label} expired; needs a human",
            grant,
            path,
        )
    if grant.expired(now):
        assert grant.expires_at is not None
        return Decision(
            Action.ESCALATE,
            Reason.EXPIRED,
            f"grant {label} expired at {grant.expires_at.isoformat()}",
            grant,
            path,
        )
    if grant.regions and (connection.region or "") not in grant.regions:
        allowed = ", ".join(sorted(grant.regions))
        return Decision(
            Action.ESCALATE,
            Reason.WRONG_REGION,
            f"consumer region {connection.region or 'unknown'} is not in grant {label}'s"
            f" regions ({allowed})",
            grant,
            path,
        )
    if grant.max_endpoints is not None and accepted_count >= grant.max_endpoints:
        return Decision(
            Action.ESCALATE,
            Reason.OVER_LIMIT,
            f"{who} already has {accepted_count} endpoint(s) on {connection.service_id};"
            f" grant {label} allows {grant.max_endpoints}",
            grant,
            path,
        )
    return Decision(
        Action.ACCEPT, Reason.ALLOWED, f"{who} is allowed by grant {label}", grant, path
    )


def restrictions(
    service_id: str,
    consumer: str,
    entries: Iterable[Entry],
    now: datetime,
    membership: Membership | None = None,
) -> list[str]:
    """What an unrestricted allow grant written at (service_id, consumer) would lift: Slack's
    Approve & register must never do that silently. The service's own item is what the new
    grant replaces; without one, the most specific item it would override for this service
    (the account's `*` grant, else its nearest OU's, ..., its organization's)."""
    probe = Connection(service_id, "", consumer, "pendingAcceptance")
    entries = list(entries)
    if _unplaced(probe, entries, membership) and membership is not None:
        # OU/organization items exist that cannot be placed: what they say is unknown.
        return [f"account {consumer}'s place in the organization is unknown ({membership.error})"]
    placed = _placed(probe, entries, membership)
    entry = placed[0][1] if placed else None
    if entry is None:
        return []
    if isinstance(entry, MalformedItem):
        return [f"registry item {entry.label} is malformed ({entry.field})"]
    found = []
    if entry.status is GrantStatus.DENY:
        lapsed = " (expired)" if entry.expired(now) else ""
        found.append(f"grant {entry.label} is a deny{lapsed}")
    elif entry.status is GrantStatus.SUSPENDED:
        found.append(f"grant {entry.label} is suspended")
    if entry.expires_at is not None:
        found.append(f"grant {entry.label} expires at {entry.expires_at.isoformat()}")
    if entry.max_endpoints is not None:
        found.append(f"grant {entry.label} allows at most {entry.max_endpoints} endpoint(s)")
    if entry.regions:
        found.append(f"grant {entry.label} allows only {', '.join(sorted(entry.regions))}")
    return found
