"""The registry's word on a click, read again when the click is acted on (issue 11 §2).

An escalation may be hours old; the registry may have changed since, and the escalation's reason
may even have been a malformed item next to a deny. So before an Approve or Approve & register
acts, the consumer's items that decide on the service (the service's own and `*`) are read again,
consistently, and judged by the pure policy:

- a live deny (or a malformed item that reads as one) refuses Approve and Approve & register: a
  denied consumer is never accepted from Slack;
- Approve & register refuses when the new allow grant would lift a restriction (a suspended, deny,
  expiring, endpoint-limited or region-restricted grant, or a malformed item): it never widens a
  grant silently. Approve alone still lets that one connection in (a human's decision).

With OU/organization grants on, the consumer's OUs and organization are read too (its membership
from the directory, then their items): a deny on an OU refuses like the account's own. When the
membership cannot be read, Approve is refused (an OU deny might apply; nothing is done).

Reject is never refused. Two GetItems, plus two per OU/organization on the consumer's path (the
worker's role has no BatchGetItem on the registry)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ..converge import Deps
from ..model import WILDCARD_SERVICE, Action, Connection, Grant, MalformedItem, Membership, Reason
from ..policy import decide, restrictions
from .messages import APPROVE_REGISTER, REJECT


@dataclass(frozen=True, slots=True)
class Refusal:
    code: str  # the audit record's code: denied | restricted-grant
    message: str  # the approver's ephemeral reply


def membership(deps: Deps, consumer: str) -> Membership | None:
    directory = deps.registry.directory
    return directory.memberships([consumer])[consumer] if directory is not None else None


def entries(
    deps: Deps, service_id: str, consumer: str, member: Membership | None = None
) -> list[Grant | MalformedItem]:
    """The consumer's items that decide on the service (its own, and those of its OUs and
    organization when `member` places it), read consistently (tolerant)."""
    scopes = [consumer, *(member.scopes() if member is not None else ())]
    found = (deps.registry.find(s, c) for c in scopes for s in (service_id, WILDCARD_SERVICE))
    return [e for e in found if e is not None]


def judge(
    connection: Connection,
    action: str,
    items: list[Grant | MalformedItem],
    now: datetime,
    member: Membership | None = None,
) -> Refusal | None:
    """Pure: why this click must not act, or None."""
    if action == REJECT:
        return None
    if member is not None and not member.known:
        return Refusal(
            "membership-unknown",
            f"Not approved: account {connection.owner}'s place in the AWS Organization could"
            f" not be read ({member.error}), so a deny on one of its OUs cannot be ruled out."
            " Nothing was done; try again in a minute, or click Reject.",
        )
    decision = decide(connection, items, 0, now, membership=member)
    if decision.action is Action.REJECT and decision.code is Reason.DENIED:
        return Refusal(
            "denied",
            f"Not approved: {decision.reason}. A denied consumer is never accepted from Slack;"
            " nothing was done. Lift the deny in the registry first, or click Reject.",
        )
    if action == APPROVE_REGISTER:
        lifted = restrictions(connection.service_id, connection.owner, items, now, member)
        if lifted:
            return Refusal(
                "restricted-grant",
                "Approve & register refused: an unrestricted allow grant would lift this: "
                + "; ".join(lifted)
                + ". Nothing was done. Click Approve to let only this connection in, or change"
                " the grant with `vpce-approver registry add --replace`.",
            )
    return None


def check(deps: Deps, connection: Connection, action: str) -> Refusal | None:
    if action == REJECT:
        return None
    member = membership(deps, connection.owner)
    items = entries(deps, connection.service_id, connection.owner, member)
    return judge(connection, action, items, deps.clock(), member)
