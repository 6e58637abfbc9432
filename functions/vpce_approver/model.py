"""Plain domain types shared by the policy, converge and the adapters. No I/O here."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

WILDCARD_SERVICE = "*"


class Action(enum.StrEnum):
    ACCEPT = "accept"
    REJECT = "reject"
    ESCALATE = "escalate"
    NONE = "none"


class GrantStatus(enum.StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    SUSPENDED = "suspended"


class DefaultDecision(enum.StrEnum):
    """What happens to a consumer that has no grant at all."""

    ESCALATE = "escalate"
    REJECT = "reject"
    IGNORE = "ignore"


# Connection states on the wire are camelCase; botocore's enum is PascalCase: normalise to lower.
PENDING_ACCEPTANCE = "pendingacceptance"
LIVE_STATES = frozenset({"pending", "available"})
SETTLED_STATES = frozenset(
    {"available", "pending", "rejected", "deleted", "deleting", "failed", "expired"}
)


def norm_state(state: str | None) -> str:
    return (state or "").strip().lower()


@dataclass(frozen=True, slots=True)
class Connection:
    """One row of DescribeVpcEndpointConnections, the truth we decide on."""

    service_id: str
    vpc_endpoint_id: str
    owner: str
    state: str
    region: str | None = None
    created: datetime | None = None

    @property
    def pending_acceptance(self) -> bool:
        return norm_state(self.state) == PENDING_ACCEPTANCE

    @property
    def live(self) -> bool:
        return norm_state(self.state) in LIVE_STATES


@dataclass(frozen=True, slots=True)
class Grant:
    """A registry entry: consumer account `consumer` may (or may not) connect to `service_id`."""

    service_id: str  # vpce-svc-… or "*"
    consumer: str
    status: GrantStatus
    principals: tuple[str, ...] = ()
    expires_at: datetime | None = None
    max_endpoints: int | None = None
    regions: frozenset[str] = field(default_factory=frozenset)
    owner: str | None = None
    note: str | None = None
    revoke: bool | None = None  # None: the deployment's default
    updated_by: str | None = None
    updated_at: datetime | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.service_id, self.consumer)

    @property
    def label(self) -> str:
        return f"{self.service_id}/{self.consumer}"

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    def live_allow(self, now: datetime) -> bool:
        return self.status is GrantStatus.ALLOW and not self.expired(now)


@dataclass(frozen=True, slots=True)
class MalformedItem:
    """A registry item that is not a usable grant (hand-edited, wrongly typed, corrupted): which
    key, which field, why. The policy sees it: it never allows; a live deny still rejects; one that
    reads as a deny (its status is readable) rejects too, since bad data only makes a decision
    stricter."""

    service_id: str
    consumer: str
    field: str  # the first bad field ("item" when the whole item is unreadable)
    error: str
    status: GrantStatus | None = None  # what its status reads as, when that much is readable
    expires_at: datetime | None = None  # idem; None: no expiry, or unreadable

    @property
    def key(self) -> tuple[str, str]:
        return (self.service_id, self.consumer)

    @property
    def label(self) -> str:
        return f"{self.service_id}/{self.consumer}"

    @property
    def message(self) -> str:
        return f"registry item {self.label} is malformed: {self.field}: {self.error}"

    def reads_as_live_deny(self, now: datetime) -> bool:
        return self.status is GrantStatus.DENY and not (
            self.expires_at is not None and self.expires_at <= now
        )


class Reason(enum.StrEnum):
    """Machine-readable reason codes (metrics dimensions, escalation records, Slack)."""

    ALLOWED = "allowed"
    DENIED = "denied"
    NO_GRANT = "no-grant"
    EXPIRED = "expired"
    SUSPENDED = "suspended"
    OVER_LIMIT = "over-limit"
    WRONG_REGION = "wrong-region"
    NOT_PENDING = "not-pending"
    MALFORMED_GRANT = "malformed-grant"
    GRANT_CHANGED = "grant-changed"  # edited between the decision and the Accept: rejected
    LIMIT_BUSY = "limit-busy"  # another converge holds the consumer's limit lease: deferred
    HUMAN = "human"


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    code: Reason
    reason: str  # for humans: the audit trail, logs and Slack
    grant: Grant | None = None  # the grant that decided, if any
