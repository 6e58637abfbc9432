"""The decision policy as tables: every branch of policy.decide."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from vpce_approver.model import (
    Action,
    Connection,
    DefaultDecision,
    Grant,
    GrantStatus,
    MalformedItem,
    Reason,
)
from vpce_approver.policy import decide

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
SVC = "vpce-svc-0123456789abcdef0"
OTHER_SVC = "vpce-svc-0fedcba987654321f"
ACCT = "111111111111"
PAST = NOW - timedelta(days=1)
FUTURE = NOW + timedelta(days=1)


def conn(
    state: str = "pendingAcceptance", region: str | None = "us-east-1", owner: str = ACCT
) -> Connection:
    return Connection(SVC, "vpce-0a1b2c3d4e5f60718", owner, state, region, NOW)


def g(service: str = SVC, status: GrantStatus = GrantStatus.ALLOW, **kw: object) -> Grant:
    return Grant(service_id=service, consumer=kw.pop("consumer", ACCT), status=status, **kw)  # type: ignore[arg-type]


def bad(
    service: str = SVC,
    status: GrantStatus | None = None,
    expires_at: datetime | None = None,
    consumer: str = ACCT,
) -> MalformedItem:
    """A malformed registry item (e.g. max_endpoints stored as a string)."""
    return MalformedItem(
        service, consumer, "max_endpoints", "'lots' must be a number", status, expires_at
    )


ALLOW, DENY, SUSP = GrantStatus.ALLOW, GrantStatus.DENY, GrantStatus.SUSPENDED

CASES = [
    # id, connection, grants, accepted_count, default, expected action, expected code
    ("allow-specific", conn(), [g()], 0, DefaultDecision.ESCALATE, Action.ACCEPT, Reason.ALLOWED),
    (
        "allow-wildcard",
        conn(),
        [g("*")],
        0,
        DefaultDecision.ESCALATE,
        Action.ACCEPT,
        Reason.ALLOWED,
    ),
    (
        "deny-specific",
        conn(),
        [g(status=DENY)],
        0,
        DefaultDecision.ESCALATE,
        Action.REJECT,
        Reason.DENIED,
    ),
    (
        "deny-wildcard-beats-specific-allow",
        conn(),
        [g(), g("*", DENY)],
        0,
        DefaultDecision.ESCALATE,
        Action.REJECT,
        Reason.DENIED,
    ),
    (
        "deny-specific-beats-wildcard-allow",
        conn(),
        [g(status=DENY), g("*")],
        0,
        DefaultDecision.ESCALATE,
        Action.REJECT,
        Reason.DENIED,
    ),
    (
        "specific-suspended-beats-wildcard-allow",
        conn(),
        [g(status=SUSP), g("*")],
        0,
        DefaultDecision.ESCALATE,
        Action.ESCALATE,
        Reason.SUSPENDED,
    ),
    (
        "specific-allow-beats-wildcard-suspended",
        conn(),
        [g(), g("*", SUSP)],
        0,
        DefaultDecision.ESCALATE,
        Action.ACCEPT,
        Reason.ALLOWED,
    ),
    (
        "suspended",
        conn(),
        [g(status=SUSP)],
        0,
        DefaultDecision.ESCALATE,
        Action.ESCALATE,
        Reason.SUSPENDED,
    ),
    (
        "expired-allow",
        conn(),
        [g(expires_at=PAST)],
        0,
        DefaultDecision.ESCALATE,
        Action.ESCALATE,
        Reason.EXPIRED,
    ),
    (
        "future-expiry-allow",
        conn(),
        [g(expires_at=FUTURE)],
        0,
        DefaultDecision.ESCALATE,
        Action.ACCEPT,
        Reason.ALLOWED,
    ),
    (
        "expired-deny-no-longer-rejects",
        conn(),
        [g(status=DENY, expires_at=PAST)],
        0,
        DefaultDecision.ESCALATE,
        Action.ESCALATE,
        Reason.EXPIRED,
    ),
    (
        "expired-deny-specific-wildcard-allow-still-escalates",
        conn(),
        [g(status=DENY, expires_at=PAST), g("*")],
        0,
        DefaultDecision.ESCALATE,
        Action.ESCALATE,
        Reason.EXPIRED,
    ),
    (
        "wrong-region",
        conn(region="eu-west-1"),
        [g(regions=frozenset({"us-east-1"}))],
        0,
        DefaultDecision.ESCALATE,
        Action.ESCALATE,
        Reason.WRONG_REGION,
    ),
    (
        "unknown-region-with-region-list",
        conn(region=None),
        [g(regions=frozenset({"us-east-1"}))],
        0,
        DefaultDecision.ESCALATE,
        Action.ESCALATE,
        Reason.WRONG_REGION,
    ),
    (
        "right-region",
        conn(region="us-east-1"),
        [g(regions=frozenset({"us-east-1", "eu-west-1"}))],
        0,
        DefaultDecision.ESCALATE,
        Action.ACCEPT,
        Reason.ALLOWED,
    ),
    (
        "under-limit",
        conn(),
        [g(max_endpoints=2)],
        1,
        DefaultDecision.ESCALATE,
        Action.ACCEPT,
        Reason.ALLOWED,
    ),
    (
        "at-limit",
        conn(),
        [g(max_endpoints=2)],
        2,
        DefaultDecision.ESCALATE,
        Action.ESCALATE,
        Reason.OVER_LIMIT,
    ),
    (
        "no-grant-escalate",
        conn(),
        [],
        0,
        DefaultDecision.ESCALATE,
        Action.ESCALATE,
        Reason.NO_GRANT,
    ),
    ("no-grant-reject", conn(), [], 0, DefaultDecision.REJECT, Action.REJECT, Reason.NO_GRANT),
    ("no-grant-ignore", conn(), [], 0, DefaultDecision.IGNORE, Action.NONE, Reason.NO_GRANT),
    (
        "grant-of-other-service-ignored",
        conn(),
        [g(OTHER_SVC)],
        0,
        DefaultDecision.ESCALATE,
        Action.ESCALATE,
        Reason.NO_GRANT,
    ),
    (
        "grant-of-other-consumer-ignored",
        conn(),
        [g(consumer="222222222222")],
        0,
        DefaultDecision.ESCALATE,
        Action.ESCALATE,
        Reason.NO_GRANT,
    ),
    (
        "already-available",
        conn("available"),
        [g()],
        0,
        DefaultDecision.ESCALATE,
        Action.NONE,
        Reason.NOT_PENDING,
    ),
    (
        "already-rejected-not-rejected-again",
        conn("rejected"),
        [g(status=DENY)],
        0,
        DefaultDecision.ESCALATE,
        Action.NONE,
        Reason.NOT_PENDING,
    ),
    # Bad data only makes a decision stricter: a malformed item never allows, never turns a
    # live deny into an escalation (which a Slack click could approve), and a malformed item
    # that reads as a live deny rejects.
    (
        "malformed-specific",
        conn(),
        [bad()],
        0,
        DefaultDecision.ESCALATE,
        Action.ESCALATE,
        Reason.MALFORMED_GRANT,
    ),
    (
        "malformed-wildcard",
        conn(),
        [bad("*")],
        0,
        DefaultDecision.ESCALATE,
        Action.ESCALATE,
        Reason.MALFORMED_GRANT,
    ),
    (
        "malformed-specific-beats-wildcard-allow",
        conn(),
        [bad(), g("*")],
        0,
        DefaultDecision.ESCALATE,
        Action.ESCALATE,
        Reason.MALFORMED_GRANT,
    ),
    (
        "malformed-wildcard-beats-specific-allow",
        conn(),
        [g(), bad("*")],
        0,
        DefaultDecision.ESCALATE,
        Action.ESCALATE,
        Reason.MALFORMED_GRANT,
    ),
    (
        "malformed-never-takes-the-default-reject-away",
        conn(),
        [bad()],
        0,
        DefaultDecision.REJECT,
        Action.ESCALATE,
        Reason.MALFORMED_GRANT,
    ),
    (
        "wildcard-deny-beats-malformed-specific",
        conn(),
        [bad(), g("*", DENY)],
        0,
        DefaultDecision.ESCALATE,
        Action.REJECT,
        Reason.DENIED,
    ),
    (
        "specific-deny-beats-malformed-wildcard",
        conn(),
        [g(status=DENY), bad("*")],
        0,
        DefaultDecision.ESCALATE,
        Action.REJECT,
        Reason.DENIED,
    ),
    (
        "malformed-that-reads-as-deny-rejects",
        conn(),
        [bad(status=DENY), g("*")],
        0,
        DefaultDecision.ESCALATE,
        Action.REJECT,
        Reason.DENIED,
    ),
    (
        "malformed-wildcard-that-reads-as-deny-rejects",
        conn(),
        [g(), bad("*", DENY)],
        0,
        DefaultDecision.ESCALATE,
        Action.REJECT,
        Reason.DENIED,
    ),
    (
        "malformed-expired-deny-escalates",
        conn(),
        [bad(status=DENY, expires_at=PAST), g("*")],
        0,
        DefaultDecision.ESCALATE,
        Action.ESCALATE,
        Reason.MALFORMED_GRANT,
    ),
    (
        "malformed-that-reads-as-allow-escalates",
        conn(),
        [bad(status=ALLOW)],
        0,
        DefaultDecision.ESCALATE,
        Action.ESCALATE,
        Reason.MALFORMED_GRANT,
    ),
    (
        "malformed-of-other-service-ignored",
        conn(),
        [bad(OTHER_SVC), g()],
        0,
        DefaultDecision.ESCALATE,
        Action.ACCEPT,
        Reason.ALLOWED,
    ),
    (
        "malformed-of-other-consumer-ignored",
        conn(),
        [bad(consumer="222222222222"), g()],
        0,
        DefaultDecision.ESCALATE,
        Action.ACCEPT,
        Reason.ALLOWED,
    ),
    (
        "malformed-settled-connection-no-decision",
        conn("available"),
        [bad()],
        0,
        DefaultDecision.ESCALATE,
        Action.NONE,
        Reason.NOT_PENDING,
    ),
    (
        "state-case-insensitive",
        conn("PendingAcceptance"),
        [g()],
        0,
        DefaultDecision.ESCALATE,
        Action.ACCEPT,
        Reason.ALLOWED,
    ),
]


@pytest.mark.parametrize(
    ("connection", "grants", "count", "default", "action", "code"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_decide(
    connection: Connection,
    grants: list[Grant],
    count: int,
    default: DefaultDecision,
    action: Action,
    code: Reason,
) -> None:
    decision = decide(connection, grants, count, NOW, default)
    assert (decision.action, decision.code) == (action, code)
    assert decision.reason  # every decision says why, for the audit trail and Slack


def test_reason_names_the_deciding_grant_and_limit() -> None:
    decision = decide(conn(), [g(max_endpoints=3)], 3, NOW)
    assert "3" in decision.reason
    assert f"{SVC}/{ACCT}" in decision.reason
    assert decision.grant is not None
    assert decision.grant.max_endpoints == 3


def test_policy_is_pure_same_input_same_output() -> None:
    grants = [g(), g("*", SUSP)]
    assert decide(conn(), grants, 0, NOW) == decide(conn(), grants, 0, NOW)


def test_malformed_reason_names_the_key_and_field() -> None:
    decision = decide(conn(), [bad("*")], 0, NOW)
    assert f"*/{ACCT}" in decision.reason
    assert "max_endpoints" in decision.reason
    assert decision.grant is None  # a malformed item is never the grant that decided
