"""The decision policy: pure, no I/O.

    decide(connection, grants, accepted_count, now, default) -> Decision

Rules, in order (README "Decision rules"):
1. A connection that is not pendingAcceptance gets no decision (already settled).
2. A live deny grant, service-specific or `*`, rejects: deny wins over any allow, and over a
   malformed item of the same consumer. A malformed item that reads as a live deny rejects too.
3. Any other malformed item (the service's or `*`) escalates: bad data never allows, and never
   turns a deny into an escalation.
4. Otherwise the most specific grant decides: the service's own grant, else the `*` grant.
   - suspended -> escalate; expired -> escalate; consumer region not allowed -> escalate;
     at or over `max_endpoints` -> escalate; else accept.
5. No grant: the deployment default (escalate, reject, or ignore = no decision).
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
    Reason,
)

Entry = Grant | MalformedItem


def _applies(entry: Entry, connection: Connection) -> bool:
    return entry.consumer == connection.owner and entry.service_id in (
        connection.service_id,
        WILDCARD_SERVICE,
    )


def matching_grants(
    connection: Connection, grants: Iterable[Entry]
) -> tuple[Grant | None, Grant | None]:
    """(service-specific grant, `*` grant) for this connection's consumer (malformed items are
    not grants: see matching_malformed)."""
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
    """The malformed items (the service's, then `*`) of this connection's consumer."""
    found = [e for e in entries if isinstance(e, MalformedItem) and _applies(e, connection)]
    return sorted(found, key=lambda e: e.service_id == WILDCARD_SERVICE)


def decide(
    connection: Connection,
    grants: Iterable[Entry],
    accepted_count: int,
    now: datetime,
    default: DefaultDecision = DefaultDecision.ESCALATE,
) -> Decision:
    """Decide one connection. `grants` = the registry entries (grants, and malformed items) of
    its consumer; `accepted_count` = the consumer's live (pending/available) connections on this
    service, not counting this one."""
    who = f"account {connection.owner}"
    if not connection.pending_acceptance:
        return Decision(
            Action.NONE, Reason.NOT_PENDING, f"connection is already {connection.state}"
        )

    entries = list(grants)
    specific, wildcard = matching_grants(connection, entries)
    for grant in (specific, wildcard):
        if grant is not None and grant.status is GrantStatus.DENY and not grant.expired(now):
            return Decision(
                Action.REJECT, Reason.DENIED, f"{who} is denied by grant {grant.label}", grant
            )
    malformed = matching_malformed(connection, entries)
    for item in malformed:
        if item.reads_as_live_deny(now):
            return Decision(
                Action.REJECT,
                Reason.DENIED,
                f"{who} is denied by registry item {item.label}, which reads as a deny although"
                f" it is malformed ({item.field}: {item.error})",
            )
    if malformed:
        item = malformed[0]
        return Decision(
            Action.ESCALATE,
            Reason.MALFORMED_GRANT,
            f"{who} has a malformed registry item ({item.message}); a human must decide",
        )

    grant = specific or wildcard
    if grant is None:
        text = f"{who} has no grant for {connection.service_id} and no all-services grant"
        if default is DefaultDecision.REJECT:
            return Decision(Action.REJECT, Reason.NO_GRANT, f"{text} (default: reject)")
        if default is DefaultDecision.IGNORE:
            return Decision(Action.NONE, Reason.NO_GRANT, f"{text} (default: ignore)")
        return Decision(Action.ESCALATE, Reason.NO_GRANT, text)

    if grant.status is GrantStatus.SUSPENDED:
        return Decision(
            Action.ESCALATE, Reason.SUSPENDED, f"grant {grant.label} is suspended", grant
        )
    if grant.status is GrantStatus.DENY:  # an expired deny: it no longer decides anything
        return Decision(
            Action.ESCALATE,
            Reason.EXPIRED,
            f"deny grant {grant.label} expired; needs a human",
            grant,
        )
    if grant.expired(now):
        assert grant.expires_at is not None
        return Decision(
            Action.ESCALATE,
            Reason.EXPIRED,
            f"grant {grant.label} expired at {grant.expires_at.isoformat()}",
            grant,
        )
    if grant.regions and (connection.region or "") not in grant.regions:
        allowed = ", ".join(sorted(grant.regions))
        return Decision(
            Action.ESCALATE,
            Reason.WRONG_REGION,
            f"consumer region {connection.region or 'unknown'} is not in grant {grant.label}'s"
            f" regions ({allowed})",
            grant,
        )
    if grant.max_endpoints is not None and accepted_count >= grant.max_endpoints:
        return Decision(
            Action.ESCALATE,
            Reason.OVER_LIMIT,
            f"{who} already has {accepted_count} endpoint(s) on {connection.service_id};"
            f" grant {grant.label} allows {grant.max_endpoints}",
            grant,
        )
    return Decision(
        Action.ACCEPT, Reason.ALLOWED, f"{who} is allowed by grant {grant.label}", grant
    )


def restrictions(
    service_id: str, consumer: str, entries: Iterable[Entry], now: datetime
) -> list[str]:
    """What an unrestricted allow grant written at (service_id, consumer) would lift: Slack's
    Approve & register must never do that silently. The service's own item is what the new
    grant replaces; without one, the `*` grant is what it would override for this service."""
    mine = [e for e in entries if e.consumer == consumer]
    specific = next((e for e in mine if e.service_id == service_id), None)
    wildcard = next((e for e in mine if e.service_id == WILDCARD_SERVICE), None)
    entry = specific if specific is not None else wildcard
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
