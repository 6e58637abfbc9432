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


class Scope(enum.StrEnum):
    """What a grant's consumer names: one account, an AWS Organizations OU (its nested OUs
    included), or the whole organization."""

    ACCOUNT = "account"
    OU = "ou"
    ORGANIZATION = "organization"


def scope_of(consumer: str) -> Scope:
    """By the ID's prefix (validation.consumer checks the whole ID)."""
    if consumer.startswith("ou-"):
        return Scope.OU
    if consumer.startswith("o-"):
        return Scope.ORGANIZATION
    return Scope.ACCOUNT


class MemberState(enum.StrEnum):
    MEMBER = "member"  # an active account of the organization; `path` is where it sits
    OUTSIDE = "outside"  # not an (active) account of the organization: no OU/org grant applies
    UNKNOWN = "unknown"  # Organizations could not be read: OU/org grants never allow


@dataclass(frozen=True, slots=True)
class Membership:
    """Where an account sits in the AWS Organization, as the deployment last read it.

    `path` holds the OU IDs from the account's parent up to (not including) the root: nearest
    first, which is also the precedence of OU grants (child before parent)."""

    account: str
    state: MemberState
    organization: str | None = None
    path: tuple[str, ...] = ()
    error: str | None = None  # UNKNOWN: why membership could not be read

    @classmethod
    def unknown(cls, account: str, error: str) -> Membership:
        return cls(account, MemberState.UNKNOWN, error=error)

    @classmethod
    def outside(cls, account: str, organization: str | None = None) -> Membership:
        return cls(account, MemberState.OUTSIDE, organization=organization)

    @property
    def known(self) -> bool:
        return self.state is not MemberState.UNKNOWN

    def level(self, consumer: str) -> int | None:
        """How specific a grant for `consumer` is for this account: 0 its own grant, 1 its
        parent OU, 2 the OU above ..., len(path)+1 the organization; None when it does not
        apply (another OU, another organization, an account outside the organization)."""
        if consumer == self.account:
            return 0
        if self.state is not MemberState.MEMBER:
            return None
        if consumer in self.path:
            return self.path.index(consumer) + 1
        if consumer == self.organization:
            return len(self.path) + 1
        return None

    def scopes(self) -> tuple[str, ...]:
        """The OU and organization IDs whose grants can apply (nearest first)."""
        if self.state is not MemberState.MEMBER:
            return ()
        return self.path + ((self.organization,) if self.organization else ())

    def describe(self) -> str:
        """'o-… / ou-parent / ou-child' (root side first), or why there is no path."""
        if self.state is MemberState.UNKNOWN:
            return f"membership unknown ({self.error})"
        if self.state is MemberState.OUTSIDE:
            return "outside the organization"
        return " / ".join([self.organization or "organization", *reversed(self.path)])


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
    """A registry entry: consumer `consumer` (an account, an OU or the organization: see Scope)
    may (or may not) connect to `service_id`. For an OU/organization grant, `max_endpoints` and
    `regions` apply to each member account, and its allow-list entries are every member
    account's root, or its role `principal_role` (principals is empty: they are per account)."""

    service_id: str  # vpce-svc-… or "*"
    consumer: str  # 12-digit account, ou-… or o-…
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
    principal_role: str | None = None  # OU/organization grants: role/<name> in each member

    @property
    def key(self) -> tuple[str, str]:
        return (self.service_id, self.consumer)

    @property
    def label(self) -> str:
        return f"{self.service_id}/{self.consumer}"

    @property
    def scope(self) -> Scope:
        return scope_of(self.consumer)

    def principals_for(self, account: str, partition: str = "aws") -> tuple[str, ...]:
        """The allow-list entries this grant gives `account`: an account grant's own list; for
        an OU/organization grant, the member's role `principal_role`, else its root."""
        if self.scope is Scope.ACCOUNT:
            return self.principals
        tail = f"role/{self.principal_role}" if self.principal_role else "root"
        return (f"arn:{partition}:iam::{account}:{tail}",)

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
    MEMBERSHIP_UNKNOWN = "membership-unknown"  # OU/org grants may apply; Organizations unreadable
    GRANT_CHANGED = "grant-changed"  # edited between the decision and the Accept: rejected
    LIMIT_BUSY = "limit-busy"  # another converge holds the consumer's limit lease: deferred
    HUMAN = "human"


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    code: Reason
    reason: str  # for humans: the audit trail, logs and Slack
    grant: Grant | None = None  # the grant that decided, if any
    # For an OU/organization grant: the account's path that matched ('o-… / ou-… / ou-…').
    via: str | None = None
