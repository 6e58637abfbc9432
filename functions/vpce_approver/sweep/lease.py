"""One sweeper at a time, without reserved concurrency.

Accept/Reject share one token bucket per account and region (10 burst, 1/s) with the notification
path: two sweepers would spend it twice. `ReservedConcurrentExecutions: 1` used to guarantee one
sweeper, but a reservation fails in accounts whose concurrency quota is low (new accounts: 10, and
Lambda must keep 100 unreserved). So a run holds a lease instead: the item `#sweep-lease` in the
escalations table (beside the cursor, for the same reasons: see cursor.py), written with a
conditional PutItem that succeeds only when no lease exists or the existing one has expired.

The lease lasts as long as the run itself can (the Lambda's remaining time plus a margin): a run
that crashes or times out never blocks the next one for longer than its own lifetime. A run that
finishes deletes the lease, conditionally on still owning it. A run that finds the lease held does
nothing and says so (`LeaseHeld`). The item has no `state`, so it never appears in `by_state`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import DeleteError, PutError
from pynamodb.models import Model

from ..audit import stamp
from ..tables import bound_like

LEASE_KEY = "#sweep-lease"
MARGIN = timedelta(seconds=15)  # clock skew between containers, and the handler's own epilogue
CONDITION_FAILED = "ConditionalCheckFailedException"


class LeaseItem(Model):
    """The sweep's lease, stored in the escalations table (see the module docstring)."""

    class Meta:
        table_name = "vpce-approver-escalations"
        region = "us-east-1"

    vpc_endpoint_id = UnicodeAttribute(hash_key=True)  # always LEASE_KEY
    owner = UnicodeAttribute()
    lease_until = NumberAttribute()  # epoch seconds
    acquired_at = UnicodeAttribute()


@dataclass(frozen=True)
class LeaseHeld:
    """Another run holds the lease: who, and until when (epoch seconds)."""

    owner: str
    until: float

    def as_dict(self) -> dict[str, object]:
        return {
            "skipped": "another sweep holds the lease",
            "holder": self.owner,
            "until": self.until,
        }


class SweepLease:
    """Acquire/release the lease, bound to whatever table EscalationItem is bound to."""

    def __init__(self, owner: str | None = None) -> None:
        self.owner = owner or uuid.uuid4().hex

    def _model(self) -> type[LeaseItem]:
        return bound_like(LeaseItem)

    def acquire(self, now: datetime, duration: timedelta) -> LeaseHeld | None:
        """Take the lease until now + duration + MARGIN. None when taken; LeaseHeld when another
        run holds an unexpired lease."""
        model = self._model()
        until = (now + duration + MARGIN).timestamp()
        item = model(LEASE_KEY, owner=self.owner, lease_until=until, acquired_at=stamp(now))
        try:
            item.save(
                condition=model.vpc_endpoint_id.does_not_exist()
                | (model.lease_until < now.timestamp())
            )
        except PutError as exc:
            if exc.cause_response_code != CONDITION_FAILED:
                raise
            return self.holder() or LeaseHeld("unknown", now.timestamp())
        return None

    def holder(self) -> LeaseHeld | None:
        try:
            item = self._model().get(LEASE_KEY, consistent_read=True)
        except LeaseItem.DoesNotExist:
            return None
        return LeaseHeld(str(item.owner), float(item.lease_until))

    def release(self) -> bool:
        """Delete the lease if this run still owns it (an expired lease taken over by another run
        is left to that run). True when deleted."""
        model = self._model()
        try:
            model(LEASE_KEY, owner=self.owner, lease_until=0, acquired_at="").delete(
                condition=model.owner == self.owner
            )
        except DeleteError as exc:
            if exc.cause_response_code != CONDITION_FAILED:
                raise
            return False
        return True
