"""The audit trail: every decision (who, what, why, when), written in batches.

Reading it never scans the table: the GSI by_time (day, at) holds every record under the UTC day
of its decision, so the newest N are a Query of today's partition newest first, then yesterday's,
and so on until N are found (or `since`, or HORIZON_DAYS, is passed). A record written before the
index existed has no `day` and is invisible to those reads until `backfill()` gives it one."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from pynamodb.exceptions import UpdateError

from .tables import AuditItem

ACCEPTED_BY_GRANT = "accepted-by-grant"
# How far back `recent()` walks day partitions when no `since` bounds it (a quiet trail).
HORIZON_DAYS = 400


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
            day=at[:10],
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

    def for_consumer(
        self, consumer: str, since: datetime | None = None, limit: int | None = None
    ) -> Iterator[AuditItem]:
        """The consumer's records, newest first (by_consumer), at most `limit` of them."""
        condition = AuditItem.sk >= stamp(since) if since else None
        return iter(
            AuditItem.by_consumer.query(
                consumer,
                range_key_condition=condition,
                scan_index_forward=False,
                limit=limit,
                page_size=min(limit, 1000) if limit else None,
            )
        )

    def recent(
        self,
        *,
        limit: int | None = None,
        since: datetime | None = None,
        now: datetime | None = None,
        horizon_days: int = HORIZON_DAYS,
    ) -> list[AuditItem]:
        """Newest first by decision time, from the by_time index: at most `limit` records, none
        older than `since` (else none older than `horizon_days`). Reads one Query page per day
        partition it visits: what it returns, plus an empty read per quiet day."""
        now = now or datetime.now(UTC)
        first = (now + timedelta(days=1)).date()  # a writer's clock a little ahead of ours
        floor = (
            since.astimezone(UTC).date() if since else (now - timedelta(days=horizon_days)).date()
        )
        condition = AuditItem.at >= stamp(since) if since else None
        out: list[AuditItem] = []
        day = first
        while day >= floor and (limit is None or len(out) < limit):
            wanted = None if limit is None else limit - len(out)
            out.extend(
                AuditItem.by_time.query(
                    day.isoformat(),
                    range_key_condition=condition,
                    scan_index_forward=False,
                    limit=wanted,
                    page_size=min(wanted, 1000) if wanted else None,
                )
            )
            day -= timedelta(days=1)
        return out

    def accepted_by_grant(self, vpc_endpoint_id: str) -> AuditItem | None:
        """This deployment's newest accept of the connection by the policy (a registry grant),
        not by a person in Slack: one Query of the connection's own records."""
        for item in AuditItem.query(
            vpc_endpoint_id,
            scan_index_forward=False,
            filter_condition=AuditItem.action == "accept",
        ):
            if not str(item.actor).startswith("slack:") and item.outcome in ("requested", "done"):
                return item
        return None

    def label(self, outcome: str | None, vpc_endpoint_id: str) -> str | None:
        """An escalation's outcome as seen from the connection's state ("accepted-elsewhere"),
        made precise: "accepted-by-grant" when it was this deployment's policy that accepted it
        (a grant added while the escalation was open), so nobody goes looking for who did."""
        if outcome == "accepted-elsewhere" and self.accepted_by_grant(vpc_endpoint_id):
            return ACCEPTED_BY_GRANT
        return outcome

    def since(self, since: datetime | None = None) -> list[AuditItem]:
        """Every record since `since` (else within HORIZON_DAYS), oldest first, from by_time."""
        return sorted(self.recent(since=since), key=order)

    def settle(
        self,
        requested: Iterable[AuditRecord],
        succeeded: Iterable[str],
        failed: Mapping[str, str],
    ) -> int:
        """After the Accept/Reject call: rewrite each "requested" record (same key, same
        decision time) with what the call did, "done" or "failed:<code>" (see `settled`)."""
        return self.write(settled(requested, succeeded, failed))

    def backfill(self, progress: Callable[[int], None] | None = None) -> int:
        """One-off, for records written before the by_time index existed: give each record
        without a `day` its day (a conditional update, so a concurrent writer is never undone).
        Scans the table once; returns how many records it indexed."""
        done = 0
        for item in AuditItem.scan(filter_condition=AuditItem.day.does_not_exist()):
            if not item.at:
                continue
            try:
                item.update(
                    actions=[AuditItem.day.set(str(item.at)[:10])],
                    condition=AuditItem.subject.exists() & AuditItem.day.does_not_exist(),
                )
            except UpdateError as exc:
                if getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException":
                    continue  # written again meanwhile, with its day
                raise
            done += 1
            if progress is not None and done % 1000 == 0:
                progress(done)
        return done


def order(item: AuditItem) -> tuple[str, str]:
    """Chronological by decision time (`at`); the key breaks ties."""
    return (str(item.at), str(item.sk))


def settled(
    requested: Iterable[AuditRecord], succeeded: Iterable[str], failed: Mapping[str, str]
) -> list[AuditRecord]:
    """The "requested" records whose call has answered, with the answer as their outcome:
    "done" for the IDs in `succeeded`, "failed:<code>" for those in `failed` (ID -> code).
    Records of IDs in neither are left alone (still "requested": the call never answered)."""
    ok = set(succeeded)
    out = []
    for record in requested:
        if record.outcome != "requested" or record.vpc_endpoint_id is None:
            continue
        vpce_id = record.vpc_endpoint_id
        if vpce_id in ok:
            out.append(replace(record, outcome="done"))
        elif vpce_id in failed:
            out.append(replace(record, outcome=f"failed:{failed[vpce_id]}"))
    return out
