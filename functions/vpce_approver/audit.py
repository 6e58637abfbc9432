"""The audit trail: every decision (who, what, why, when), written in batches."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .tables import AuditItem


def stamp(now: datetime) -> str:
    return now.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class AuditRecord:
    subject: str  # a vpce-… ID, or grant#<service>#<consumer> for registry changes
    action: str
    actor: str
    at: datetime
    code: str | None = None
    reason: str | None = None
    trigger: str | None = None
    outcome: str | None = None
    service_id: str | None = None
    vpc_endpoint_id: str | None = None
    consumer: str | None = None
    region: str | None = None
    old: Mapping[str, Any] | None = None
    new: Mapping[str, Any] | None = None
    decision_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    # A fixed sort key makes the record idempotent: writing it again overwrites, never duplicates.
    sort_key: str | None = None

    def to_item(self) -> AuditItem:
        at = stamp(self.at)
        return AuditItem(
            self.subject,
            self.sort_key or f"{at}#{self.decision_id}",
            decision_id=self.decision_id,
            at=at,
            action=self.action,
            code=self.code,
            reason=self.reason,
            actor=self.actor,
            trigger=self.trigger,
            outcome=self.outcome,
            service_id=self.service_id,
            vpc_endpoint_id=self.vpc_endpoint_id,
            consumer=self.consumer,
            region=self.region,
            old=_clean(self.old),
            new=_clean(self.new),
        )


def _clean(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """DynamoDB maps reject empty strings/sets in places and floats: keep plain JSON-ish values."""
    if value is None:
        return None
    out: dict[str, Any] = {}
    for key, item in value.items():
        if item is None or item in ("", [], {}):
            continue
        if isinstance(item, (set, frozenset, tuple)):
            item = sorted(item)
        elif isinstance(item, datetime):
            item = stamp(item)
        elif isinstance(item, float):
            item = str(item)
        out[str(key)] = item
    return out or None


class Audit:
    def write(self, records: Iterable[AuditRecord]) -> int:
        """BatchWriteItem, 25 items a call (pynamodb retries unprocessed items). Returns count."""
        records = list(records)
        if not records:
            return 0
        with AuditItem.batch_write() as batch:
            for record in records:
                batch.save(record.to_item())
        return len(records)

    def for_subject(self, subject: str) -> list[AuditItem]:
        return list(AuditItem.query(subject))

    def for_consumer(self, consumer: str, since: datetime | None = None) -> Iterator[AuditItem]:
        condition = AuditItem.sk >= stamp(since) if since else None
        return iter(AuditItem.by_consumer.query(consumer, range_key_condition=condition))

    def since(self, since: datetime | None = None) -> list[AuditItem]:
        condition = AuditItem.at >= stamp(since) if since else None
        items = list(AuditItem.scan(filter_condition=condition))
        return sorted(items, key=lambda i: i.sk)
