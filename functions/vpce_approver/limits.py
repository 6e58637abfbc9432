"""`max_endpoints` holds under concurrency (issue 11 §3): a per-(service, consumer) lease.

Several converges can run at once (notifications at concurrency 2, the registry stream, the sweep):
each counts the consumer's live connections, decides and accepts. Without a guard, two of them can
both count N-1 and both accept, admitting N+1. So a converge that may accept a *limited* consumer's
connection (its deciding grant has `max_endpoints`) first takes that consumer's lease: a
conditional UpdateItem on the item `#limit#<service>#<consumer>` of the escalations table (held by
nobody, expired, or already ours). It counts, decides, accepts and re-checks under the lease and
releases it (conditional on still holding it). Another converge waits for it (LEASE_WAIT, polling);
if it is still held, that consumer's connections are deferred: left pending, reported retryable,
so the notification is redelivered and the sweep comes back to them. Nothing is decided twice.

Consumers without a limit take no lease: the common path costs nothing more. The lease expires
after LEASE_TTL (longer than any function's timeout), so a converge that died holding it blocks
that consumer for minutes, not forever. Like the sweep cursor, the item lives in the escalations
table (not the registry, whose stream drives grants; not the append-only audit trail), has no
`state` and so never appears in the `by_state` index; it needs no new table, index or permission
(UpdateItem on the escalations table, which every converging function already has).

The count under the lease reads every state of the consumer's connections: a connection this
deployment accepted a moment ago counts even if Describe still shows it pendingAcceptance (EC2 reads
are eventually consistent), because the lease remembers what its last holder accepted.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pynamodb.attributes import ListAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import UpdateError
from pynamodb.models import Model

from .model import Connection, Grant, MalformedItem
from .policy import matching_grants
from .tables import EscalationItem

log = logging.getLogger("vpce_approver.limits")

LEASE_TTL = timedelta(minutes=5)  # > the longest function timeout (the sweep's 280 s)
LEASE_WAIT = 10.0  # seconds a converge waits for another one's lease before deferring
POLL = 0.05
RECENT = timedelta(minutes=5)  # how long an accepted ID counts even if Describe lags


def lease_key(service_id: str, consumer: str) -> str:
    return f"#limit#{service_id}#{consumer}"


class LeaseItem(Model):
    """A consumer's limit lease, in the escalations table (bound like the sweep's cursor)."""

    class Meta:
        table_name = "vpce-approver-escalations"
        region = "us-east-1"

    vpc_endpoint_id = UnicodeAttribute(hash_key=True)  # lease_key(...)
    holder = UnicodeAttribute(null=True)
    lease_until = NumberAttribute(null=True)  # epoch seconds
    recent = ListAttribute[str](null=True)  # "<vpce-id> <epoch>": accepted lately
    updated_at = UnicodeAttribute(null=True)


def _model() -> type[LeaseItem]:
    src, dst = EscalationItem.Meta, LeaseItem.Meta
    for name in ("table_name", "region", "host"):
        value = getattr(src, name, None)
        if getattr(dst, name, None) != value:
            setattr(dst, name, value)
            LeaseItem._connection = None
    return LeaseItem


def limited_consumers(
    pending: Iterable[Connection], entries: Callable[[str], Sequence[Grant | MalformedItem]]
) -> set[str]:
    """Consumers whose deciding grant (the service's own, else `*`) has a max_endpoints limit."""
    out = set()
    for conn in pending:
        specific, wildcard = matching_grants(conn, entries(conn.owner))
        grant = specific or wildcard
        if grant is not None and grant.max_endpoints is not None:
            out.add(conn.owner)
    return out


@dataclass
class Held:
    """The leases one converge holds, and what was accepted under them lately (`recent`)."""

    service_id: str
    holder: str
    consumers: set[str] = field(default_factory=set)
    previous: dict[str, list[str]] = field(default_factory=dict)  # "<vpce-id> <epoch>" entries
    accepted: dict[str, list[str]] = field(default_factory=dict)  # accepted under this hold

    def recent(self, consumer: str) -> set[str]:
        """IDs accepted under this consumer's lease lately (by us or an earlier holder)."""
        return {e.partition(" ")[0] for e in self.previous.get(consumer, [])} | set(
            self.accepted.get(consumer, [])
        )

    def record_accepted(self, consumer: str, vpce_ids: Iterable[str]) -> None:
        if consumer in self.consumers:
            self.accepted.setdefault(consumer, []).extend(vpce_ids)


def live_counts(
    connections: Iterable[Connection], held: Held | None, deciding: Iterable[str] = ()
) -> Counter[str]:
    """Live (pending/available) connections per consumer, counting as live a connection accepted
    under the lease lately that Describe still shows pendingAcceptance (EC2 reads lag)."""
    skip = set(deciding)
    counts: Counter[str] = Counter()
    for conn in connections:
        if conn.vpc_endpoint_id in skip:
            continue
        stale = (
            held is not None
            and conn.pending_acceptance
            and (conn.vpc_endpoint_id in held.recent(conn.owner))
        )
        if conn.live or stale:
            counts[conn.owner] += 1
    return counts


class Leases:
    def __init__(
        self, *, wait: float | None = None, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.wait = LEASE_WAIT if wait is None else wait
        self.sleep = sleep

    def _try(self, service_id: str, consumer: str, holder: str, now: datetime) -> list[str] | None:
        """Take the lease: its `recent` entries still within the horizon, or None if held."""
        model = _model()
        until = int((now + LEASE_TTL).timestamp())
        item = model(lease_key(service_id, consumer))
        try:
            item.update(
                actions=[
                    model.holder.set(holder),
                    model.lease_until.set(until),
                    model.updated_at.set(now.isoformat()),
                ],
                condition=model.holder.does_not_exist()
                | (model.holder == holder)
                | (model.lease_until < int(now.timestamp())),
            )
        except UpdateError as exc:
            if getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException":
                return None
            raise
        horizon = (now - RECENT).timestamp()
        return [e for e in item.recent or [] if _entry_time(e) >= horizon]

    def acquire(
        self, service_id: str, consumers: Iterable[str], now: Callable[[], datetime]
    ) -> Held:
        """Take every consumer's lease, waiting up to `wait` seconds for busy ones. The held
        set may be smaller than asked: the rest are busy (their connections are deferred)."""
        held = Held(service_id, uuid.uuid4().hex)
        wanted = sorted(set(consumers))
        deadline = time.monotonic() + self.wait
        while wanted:
            busy = []
            for consumer in wanted:
                previous = self._try(service_id, consumer, held.holder, now())
                if previous is None:
                    busy.append(consumer)
                    continue
                held.consumers.add(consumer)
                held.previous[consumer] = previous
            wanted = busy
            if not wanted or time.monotonic() >= deadline:
                break
            self.sleep(POLL)
        if wanted:
            log.warning("limit lease busy for %s on %s: deferred", wanted, service_id)
        return held

    def release(self, held: Held, now: datetime) -> None:
        """Give every lease back, remembering what was accepted under it lately."""
        model = _model()
        stamp = int(now.timestamp())
        for consumer in sorted(held.consumers):
            entries = held.previous.get(consumer, []) + [
                f"{v} {stamp}" for v in held.accepted.get(consumer, [])
            ]
            actions: list[Any] = [model.holder.remove(), model.lease_until.remove()]
            actions.append(model.recent.set(entries) if entries else model.recent.remove())
            try:
                model(lease_key(held.service_id, consumer)).update(
                    actions=actions, condition=model.holder == held.holder
                )
            except UpdateError as exc:
                if getattr(exc, "cause_response_code", None) != "ConditionalCheckFailedException":
                    raise
                log.warning("limit lease of %s/%s expired while held", held.service_id, consumer)

    @contextmanager
    def holding(
        self, service_id: str, consumers: Iterable[str], now: Callable[[], datetime]
    ) -> Iterator[Held]:
        held = self.acquire(service_id, consumers, now)
        try:
            yield held
        finally:
            try:
                self.release(held, now())
            except Exception:  # the lease then expires after LEASE_TTL; never mask the outcome
                log.exception("releasing the limit leases of %s failed", service_id)


def _entry_time(entry: str) -> float:
    try:
        return float(entry.partition(" ")[2])
    except ValueError:
        return 0.0
