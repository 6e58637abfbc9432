"""The run's deadline and its resume point.

The cursor lives in the escalations table as the item `#sweep-cursor`: not in the registry, whose
stream drives the grant path (a cursor write every run would wake the registry-stream function and
mix bookkeeping into the grant history), and not in the audit trail, which is append-only. The item
has no `state`, so it never appears in the escalations' `by_state` index. It exists only while a run
was cut off: a run that finishes the rotation deletes it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from pynamodb.attributes import UnicodeAttribute
from pynamodb.models import Model

from ..audit import stamp
from ..tables import RegistryItem, bound_like
from .report import Cursor

CURSOR_KEY = "#sweep-cursor"


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
        return bound_like(CursorItem)

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
