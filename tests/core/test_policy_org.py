"""OU / organization grants in the pure policy, as tables (issue 15, "Precedence").

Deny wins at any level. Otherwise the most specific grant decides: the account's own, then the
nearest OU on its path (child before parent), then the organization; within each level the
service's own grant before the `*` grant. Accounts outside the organization never match an OU or
organization grant. An unknown membership never allows on an OU/organization grant."""

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
    Membership,
    MemberState,
    Reason,
)
from vpce_approver.policy import decide, deciding_grant, restrictions

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SVC = "vpce-svc-0123456789abcdef0"
OTHER = "vpce-svc-0fedcba987654321f"
ACCT = "111111111111"
ORG = "o-abcdefghij"
OTHER_ORG = "o-zzzzzzzzzz"
PROD = "ou-ab12-prod0001"  # the account's parent
WORKLOADS = "ou-ab12-work0001"  # PROD's parent
SANDBOX = "ou-ab12-sand0001"  # elsewhere in the tree
PAST = NOW - timedelta(days=1)

MEMBER = Membership(ACCT, MemberState.MEMBER, ORG, (PROD, WORKLOADS))
OUTSIDE = Membership.outside(ACCT, ORG)
UNKNOWN = Membership.unknown(ACCT, "TooManyRequestsException after 5 attempts")
ALLOW, DENY, SUSP = GrantStatus.ALLOW, GrantStatus.DENY, GrantStatus.SUSPENDED


def conn(region: str = "us-east-1") -> Connection:
    return Connection(SVC, "vpce-0a1b2c3d4e5f60718", ACCT, "pendingAcceptance", region, NOW)


def g(consumer: str, service: str = SVC, status: GrantStatus = ALLOW, **kw: object) -> Grant:
    return Grant(service_id=service, consumer=consumer, status=status, **kw)  # type: ignore[arg-type]


def bad(consumer: str, service: str = SVC, status: GrantStatus | None = None) -> MalformedItem:
    return MalformedItem(service, consumer, "max_endpoints", "'lots' must be a number", status)


# id, grants, membership, expected action, expected code, label of the deciding grant (or None)
CASES = [
    # --- the most specific grant decides
    ("ou-allows-member", [g(PROD)], MEMBER, Action.ACCEPT, Reason.ALLOWED, f"{SVC}/{PROD}"),
    ("parent-ou-allows", [g(WORKLOADS)], MEMBER, Action.ACCEPT, Reason.ALLOWED, WORKLOADS),
    ("org-allows", [g(ORG)], MEMBER, Action.ACCEPT, Reason.ALLOWED, ORG),
    ("org-star-allows", [g(ORG, "*")], MEMBER, Action.ACCEPT, Reason.ALLOWED, f"*/{ORG}"),
    (
        "account-before-ou",
        [g(ACCT, status=SUSP), g(PROD)],
        MEMBER,
        Action.ESCALATE,
        Reason.SUSPENDED,
        f"{SVC}/{ACCT}",
    ),
    (
        "account-star-before-ou",
        [g(ACCT, "*", status=SUSP), g(PROD)],
        MEMBER,
        Action.ESCALATE,
        Reason.SUSPENDED,
        f"*/{ACCT}",
    ),
    (
        "child-before-parent",
        [g(WORKLOADS), g(PROD, status=SUSP)],
        MEMBER,
        Action.ESCALATE,
        Reason.SUSPENDED,
        PROD,
    ),
    (
        "parent-before-org",
        [g(ORG), g(WORKLOADS, status=SUSP)],
        MEMBER,
        Action.ESCALATE,
        Reason.SUSPENDED,
        WORKLOADS,
    ),
    (
        "service-before-star-within-ou",
        [g(PROD, "*", status=SUSP), g(PROD)],
        MEMBER,
        Action.ACCEPT,
        Reason.ALLOWED,
        f"{SVC}/{PROD}",
    ),
    (
        "star-at-child-before-service-at-parent",
        [g(PROD, "*"), g(WORKLOADS, status=SUSP)],
        MEMBER,
        Action.ACCEPT,
        Reason.ALLOWED,
        f"*/{PROD}",
    ),
    ("other-service-ou-grant", [g(PROD, OTHER)], MEMBER, Action.ESCALATE, Reason.NO_GRANT, None),
    # --- deny wins at any level
    (
        "org-deny-beats-account-allow",
        [g(ACCT), g(ORG, status=DENY)],
        MEMBER,
        Action.REJECT,
        Reason.DENIED,
        ORG,
    ),
    (
        "parent-deny-beats-child-allow",
        [g(PROD), g(WORKLOADS, status=DENY)],
        MEMBER,
        Action.REJECT,
        Reason.DENIED,
        WORKLOADS,
    ),
    (
        "star-ou-deny-beats-service-allow",
        [g(ACCT), g(PROD, "*", status=DENY)],
        MEMBER,
        Action.REJECT,
        Reason.DENIED,
        PROD,
    ),
    (
        "account-deny-beats-ou-allow",
        [g(ACCT, status=DENY), g(PROD)],
        MEMBER,
        Action.REJECT,
        Reason.DENIED,
        ACCT,
    ),
    (
        "expired-ou-deny-decides-nothing",
        [g(PROD, status=DENY, expires_at=PAST), g(ORG)],
        MEMBER,
        Action.ESCALATE,
        Reason.EXPIRED,
        PROD,
    ),
    (
        "malformed-ou-read-as-deny",
        [g(ACCT), bad(WORKLOADS, status=DENY)],
        MEMBER,
        Action.REJECT,
        Reason.DENIED,
        None,
    ),
    # --- bad data only makes a decision stricter
    (
        "malformed-ou-escalates",
        [g(ACCT), bad(PROD)],
        MEMBER,
        Action.ESCALATE,
        Reason.MALFORMED_GRANT,
        None,
    ),
    (
        "malformed-elsewhere-ignored",
        [g(PROD), bad(SANDBOX)],
        MEMBER,
        Action.ACCEPT,
        Reason.ALLOWED,
        PROD,
    ),
    # --- where the account sits
    ("other-ou-never-matches", [g(SANDBOX)], MEMBER, Action.ESCALATE, Reason.NO_GRANT, None),
    ("other-org-never-matches", [g(OTHER_ORG)], MEMBER, Action.ESCALATE, Reason.NO_GRANT, None),
    ("outside-never-matches-org", [g(ORG)], OUTSIDE, Action.ESCALATE, Reason.NO_GRANT, None),
    (
        "outside-never-matches-ou-deny",
        [g(ACCT), g(ORG, status=DENY)],
        OUTSIDE,
        Action.ACCEPT,
        Reason.ALLOWED,
        ACCT,
    ),
    ("outside-own-grant-decides", [g(ACCT)], OUTSIDE, Action.ACCEPT, Reason.ALLOWED, ACCT),
    # --- fail closed when membership cannot be read
    (
        "unknown-ou-allow-escalates",
        [g(PROD)],
        UNKNOWN,
        Action.ESCALATE,
        Reason.MEMBERSHIP_UNKNOWN,
        None,
    ),
    (
        "unknown-account-grant-still-decides",
        [g(ACCT), g(PROD)],
        UNKNOWN,
        Action.ACCEPT,
        Reason.ALLOWED,
        ACCT,
    ),
    (
        "unknown-possible-ou-deny-escalates",
        [g(ACCT), g(SANDBOX, status=DENY)],
        UNKNOWN,
        Action.ESCALATE,
        Reason.MEMBERSHIP_UNKNOWN,
        None,
    ),
    (
        "unknown-possible-malformed-escalates",
        [g(ACCT), bad(PROD)],
        UNKNOWN,
        Action.ESCALATE,
        Reason.MEMBERSHIP_UNKNOWN,
        None,
    ),
    (
        "unknown-account-deny-still-rejects",
        [g(ACCT, status=DENY), g(PROD)],
        UNKNOWN,
        Action.REJECT,
        Reason.DENIED,
        ACCT,
    ),
    (
        "not-read-ou-allow-escalates",
        [g(PROD)],
        None,
        Action.ESCALATE,
        Reason.MEMBERSHIP_UNKNOWN,
        None,
    ),
    ("not-read-no-org-items", [g(ACCT)], None, Action.ACCEPT, Reason.ALLOWED, ACCT),
]


@pytest.mark.parametrize(
    ("grants", "membership", "action", "code", "label"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_precedence(
    grants: list[Grant | MalformedItem],
    membership: Membership | None,
    action: Action,
    code: Reason,
    label: str | None,
) -> None:
    decision = decide(conn(), grants, 0, NOW, DefaultDecision.ESCALATE, membership)
    assert (decision.action, decision.code) == (action, code), decision.reason
    if label is None:
        assert decision.grant is None
    else:
        assert decision.grant is not None
        assert decision.grant.label.endswith(label), decision.grant.label


def test_order_of_entries_does_not_matter() -> None:
    grants: list[Grant | MalformedItem] = [g(ORG), g(WORKLOADS, status=SUSP), g(PROD)]
    for order in (grants, list(reversed(grants)), [grants[1], grants[2], grants[0]]):
        decision = decide(conn(), order, 0, NOW, membership=MEMBER)
        assert decision.action is Action.ACCEPT
        assert decision.grant is not None
        assert decision.grant.consumer == PROD


def test_ou_grant_decision_names_the_path_that_matched() -> None:
    decision = decide(conn(), [g(WORKLOADS)], 0, NOW, membership=MEMBER)
    assert decision.via == f"{ORG} / {WORKLOADS} / {PROD}"
    assert decision.via in decision.reason
    own = decide(conn(), [g(ACCT)], 0, NOW, membership=MEMBER)
    assert own.via is None


def test_limit_and_regions_of_an_ou_grant_apply_per_account() -> None:
    grant = g(PROD, max_endpoints=2, regions=frozenset({"eu-west-1"}))
    assert decide(conn("eu-west-1"), [grant], 1, NOW, membership=MEMBER).action is Action.ACCEPT
    over = decide(conn("eu-west-1"), [grant], 2, NOW, membership=MEMBER)
    assert (over.action, over.code) == (Action.ESCALATE, Reason.OVER_LIMIT)
    wrong = decide(conn("us-east-1"), [grant], 0, NOW, membership=MEMBER)
    assert (wrong.action, wrong.code) == (Action.ESCALATE, Reason.WRONG_REGION)


def test_unknown_membership_reason_says_why() -> None:
    decision = decide(conn(), [g(PROD)], 0, NOW, membership=UNKNOWN)
    assert "TooManyRequestsException" in decision.reason


def test_membership_of_another_account_places_nothing() -> None:
    someone = Membership("222222222222", MemberState.MEMBER, ORG, (PROD,))
    decision = decide(conn(), [g(PROD)], 0, NOW, membership=someone)
    assert decision.code is Reason.MEMBERSHIP_UNKNOWN


def test_deciding_grant_is_the_most_specific() -> None:
    grants: list[Grant | MalformedItem] = [g(ORG, max_endpoints=5), g(PROD, max_endpoints=1)]
    found = deciding_grant(conn(), grants, MEMBER)
    assert found is not None
    assert found.consumer == PROD
    assert deciding_grant(conn(), grants, OUTSIDE) is None


def test_principals_of_an_ou_grant_are_per_member() -> None:
    assert g(PROD).principals_for(ACCT) == (f"arn:aws:iam::{ACCT}:root",)
    role = g(PROD, principal_role="workload-api")
    assert role.principals_for(ACCT, "aws-cn") == (f"arn:aws-cn:iam::{ACCT}:role/workload-api",)
    account = g(ACCT, principals=(f"arn:aws:iam::{ACCT}:role/x",))
    assert account.principals_for(ACCT) == (f"arn:aws:iam::{ACCT}:role/x",)


@pytest.mark.parametrize(
    ("grants", "membership", "expected"),
    [
        ([g(PROD, max_endpoints=2)], MEMBER, "allows at most 2"),
        ([g(WORKLOADS, status=SUSP)], MEMBER, "is suspended"),
        ([g(ORG, regions=frozenset({"eu-west-1"}))], MEMBER, "allows only eu-west-1"),
        ([g(PROD)], UNKNOWN, "place in the organization is unknown"),
        ([g(PROD, max_endpoints=2)], OUTSIDE, None),
        ([g(ACCT), g(PROD, max_endpoints=2)], MEMBER, None),
    ],
    ids=["ou-limit", "parent-suspended", "org-regions", "unknown", "outside", "own-grant-first"],
)
def test_approve_and_register_never_lifts_an_ou_restriction(
    grants: list[Grant | MalformedItem], membership: Membership, expected: str | None
) -> None:
    lifted = restrictions(SVC, ACCT, grants, NOW, membership)
    if expected is None:
        assert lifted == []
    else:
        assert any(expected in text for text in lifted), lifted
