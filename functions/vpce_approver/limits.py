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

A Describe that still shows a connection accepted a moment ago as pendingAcceptance (EC2 reads are
eventually consistent) cannot over-admit either: the connection is then decided again, in creation
order, before any later one, so it takes its place under the limit.
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
from typing import Protocol

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import UpdateError
from pynamodb.models import Model

from .model import Connection, Grant, MalformedItem, Membership
from .policy import deciding_grant
from .tables import bound_like

log = logging.getLogger("vpce_approver.limits")

LEASE_TTL = timedelta(minutes=5)  # > the longest function timeout (the sweep's 280 s)
LEASE_WAIT = 10.0  # seconds a converge waits for another one's lease before deferring
POLL = 0.05


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
    updated_at = UnicodeAttribute(null=True)


def _model() -> type[LeaseItem]:
    return bound_like(LeaseItem)


class Found(Protocol):
    """What limited_consumers reads of a registry lookup (registry.Lookup)."""

    def entries(self, consumer: str) -> Sequence[Grant | MalformedItem]: ...

    def membership(self, consumer: str) -> Membership | None: ...


def limited_consumers(pending: Iterable[Connection], found: Found) -> set[str]:
    """Consumers whose deciding grant (the most specific that applies: their own, their OU's,
    their organization's; the service's before `*`) has a max_endpoints limit (per account)."""
    out = set()
    for conn in pending:
        grant = deciding_grant(conn, found.entries(conn.owner), found.membership(conn.owner))
        if grant is not None and grant.max_endpoints is not None:
            out.add(conn.owner)
    return out


@dataclass
class Held:
    """The leases one converge holds."""

    service_id: str
    holder: str
    consumers: set[str] = field(default_factory=set)


def live_counts(connections: Iterable[Connection], deciding: Iterable[str] = ()) -> Counter[str]:
    """Live (pending/available) connections per consumer, not counting those being decided."""
    skip = set(deciding)
    return Counter(c.owner for c in connections if c.live and c.vpc_endpoint_id not in skip)


class Leases:
    def __init__(
        self, *, wait: float | None = None, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.wait = LEASE_WAIT if wait is None else wait
        self.sleep = sleep

    def _try(self, service_id: str, consumer: str, holder: str, now: datetime) -> bool:
        """Take the lease; False when another live converge holds it."""
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
                return False
            raise
        return True

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
                if self._try(service_id, consumer, held.holder, now()):
                    held.consumers.add(consumer)
                else:
                    busy.append(consumer)
            wanted = busy
            if not wanted or time.monotonic() >= deadline:
                break
            self.sleep(POLL)
        if wanted:
            log.warning("limit lease busy for %s on %s: deferred", wanted, service_id)
        return held

    def release(self, held: Held) -> None:
        """Give every lease back (only if still ours: it may have expired and been taken)."""
        model = _model()
        for consumer in sorted(held.consumers):
            try:
                model(lease_key(held.service_id, consumer)).update(
                    actions=[model.holder.remove(), model.lease_until.remove()],
                    condition=model.holder == held.holder,
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
                self.release(held)
            except Exception:  # the lease then expires after LEASE_TTL; never mask the outcome
                log.exception("releasing the limit leases of %s failed", service_id)
