"""Escalations: connections waiting for a human. One record per connection, created by a
conditional write, so redeliveries and concurrent converges escalate (and post) exactly once.

The EscalationPort is where a new escalation goes (Slack, see slack/); until one is configured the
record alone is the escalation ("pending-human": posted = false)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Protocol

from pynamodb.exceptions import PutError, UpdateError

from .audit import stamp
from .model import Connection, Decision
from .tables import EscalationItem

OPEN = "open"
SETTLED = "settled"
# Outcomes of an escalation a human approved (slack/worker.py): the connection was accepted by a
# person, not by a grant, so drift and revocation must not undo it on their own (docs/SWEEP.md).
APPROVED_OUTCOMES = frozenset({"approved", "approved-registered"})


class EscalationPort(Protocol):
    """Tells humans about escalations. Failures must not raise past it: a port that cannot post
    leaves the record unposted (posted = false) for the sweep to retry. Every method is safe to
    call again for the same escalation (redeliveries, the sweep)."""

    def opened(self, escalation: EscalationItem) -> None:
        """Post the escalation unless it is already posted."""

    def settled(self, escalation: EscalationItem) -> None:
        """Replace the message's buttons with the outcome."""

    def refresh(self, escalation: EscalationItem) -> None:
        """Update a still-open message (how long it has been pending)."""


class RecordOnly:
    """No notifier configured: the escalation record is the whole escalation."""

    def opened(self, escalation: EscalationItem) -> None:
        return None

    def settled(self, escalation: EscalationItem) -> None:
        return None

    def refresh(self, escalation: EscalationItem) -> None:
        return None


def _conditional_failed(exc: Exception) -> bool:
    cause = getattr(exc, "cause_response_code", None)
    return cause == "ConditionalCheckFailedException"


class Escalations:
    def get(self, vpc_endpoint_id: str) -> EscalationItem | None:
        try:
            return EscalationItem.get(vpc_endpoint_id, consistent_read=True)
        except EscalationItem.DoesNotExist:
            return None

    def get_many(self, vpc_endpoint_ids: Iterable[str]) -> list[EscalationItem]:
        """Consistent BatchGetItem (100 keys a call) of the escalations that exist."""
        ids = list(dict.fromkeys(vpc_endpoint_ids))
        if not ids:
            return []
        return list(EscalationItem.batch_get(ids, consistent_read=True))

    def approvals(self, vpc_endpoint_ids: Iterable[str]) -> dict[str, datetime]:
        """When a human approved each of these connections, for those a human approved (the
        settled record's `updated_at`: nothing writes a record after the worker settles it)."""
        out = {}
        for item in self.get_many(vpc_endpoint_ids):
            if item.state != SETTLED or item.outcome not in APPROVED_OUTCOMES:
                continue
            try:
                at = datetime.fromisoformat(str(item.updated_at))
            except ValueError:
                continue  # no readable time: no approval we could weigh against a later change
            out[str(item.vpc_endpoint_id)] = at if at.tzinfo else at.replace(tzinfo=UTC)
        return out

    def open_once(
        self, connection: Connection, decision: Decision, now: datetime
    ) -> EscalationItem | None:
        """Create the escalation unless one exists. Returns the new record, or None."""
        grant = decision.grant
        item = EscalationItem(
            connection.vpc_endpoint_id,
            service_id=connection.service_id,
            consumer=connection.owner,
            region=connection.region,
            code=decision.code.value,
            reason=decision.reason,
            state=OPEN,
            created_at=stamp(now),
            connection_created_at=stamp(connection.created) if connection.created else None,
            updated_at=stamp(now),
            grant_owner=grant.owner if grant else None,
            grant_note=grant.note if grant else None,
        )
        try:
            item.save(condition=EscalationItem.vpc_endpoint_id.does_not_exist())
        except PutError as exc:
            if _conditional_failed(exc):
                return None
            raise
        return item

    def settle(
        self, vpc_endpoint_id: str, *, outcome: str, by: str, now: datetime
    ) -> EscalationItem | None:
        """Close an open escalation. Returns the updated record if this call closed it."""
        item = self.get(vpc_endpoint_id)
        if item is None or item.state != OPEN:
            return None
        try:
            item.update(
                actions=[
                    EscalationItem.state.set(SETTLED),
                    EscalationItem.outcome.set(outcome),
                    EscalationItem.decided_by.set(by),
                    EscalationItem.updated_at.set(stamp(now)),
                ],
                condition=EscalationItem.state == OPEN,
            )
        except UpdateError as exc:
            if _conditional_failed(exc):
                return None
            raise
        return item

    def open_items(self) -> Iterator[EscalationItem]:
        return iter(EscalationItem.by_state.query(OPEN))
