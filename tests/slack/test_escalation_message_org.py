"""Escalation messages for OU/organization grants (issue 15): the reason names the OU grant and
the account's path that matched, and a membership-unknown escalation says what it means for the
approver. Pure: a policy decision -> the record open_once writes -> the blocks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from vpce_approver.model import (
    Connection,
    Decision,
    Grant,
    GrantStatus,
    Membership,
    MemberState,
    Reason,
)
from vpce_approver.policy import decide
from vpce_approver.slack.messages import CODE_NOTES, message_for, why_text
from vpce_approver.tables import EscalationItem
from vpce_tools.fake_slack import render_text

SVC = "vpce-svc-0123456789abcdef0"
ACCOUNT = "111111111111"
ORG = "o-abcdefghij"
TOP = "ou-ab12-workload1"
CHILD = "ou-ab12-prod0001"
NOW = datetime(2026, 12, 1, 5, 0, tzinfo=UTC)
CONN = Connection(SVC, "vpce-0123456789abcdef0", ACCOUNT, "pendingAcceptance", "eu-west-1")
MEMBER = Membership(ACCOUNT, MemberState.MEMBER, ORG, (CHILD, TOP))


def record(decision: Decision) -> EscalationItem:
    """What Escalations.open_once stores for the decision."""
    grant = decision.grant
    return EscalationItem(
        CONN.vpc_endpoint_id,
        service_id=CONN.service_id,
        consumer=CONN.owner,
        region=CONN.region,
        code=decision.code.value,
        reason=decision.reason,
        state="open",
        created_at=(NOW - timedelta(minutes=5)).isoformat(),
        grant_owner=grant.owner if grant else None,
        grant_note=grant.note if grant else None,
    )


def test_an_ou_grant_escalation_names_the_grant_and_the_path() -> None:
    suspended = Grant(SVC, CHILD, GrantStatus.SUSPENDED, owner="platform", note="paused")
    decision = decide(CONN, [suspended], 0, NOW, membership=MEMBER)
    assert (decision.code, decision.via) == (Reason.SUSPENDED, f"{ORG} / {TOP} / {CHILD}")
    text = render_text(message_for(record(decision), "payments-api", NOW).blocks)
    assert (
        f"Why not auto-approved (suspended)\ngrant {SVC}/{CHILD} (path {ORG} / {TOP} / {CHILD})"
        " is suspended"
    ) in text
    assert "Registry: owner platform; note: paused" in text
    assert "AWS Organizations" not in text  # no membership note on other codes


def test_a_membership_unknown_escalation_reads_clearly() -> None:
    allow = Grant(SVC, TOP, GrantStatus.ALLOW)
    unknown = Membership.unknown(ACCOUNT, "TooManyRequestsException: rate exceeded")
    decision = decide(CONN, [allow], 0, NOW, membership=unknown)
    assert (decision.code, decision.grant) == (Reason.MEMBERSHIP_UNKNOWN, None)
    item = record(decision)
    text = render_text(message_for(item, "payments-api", NOW).blocks)
    assert "Why not auto-approved (membership-unknown)" in text
    assert "TooManyRequestsException: rate exceeded" in text
    assert CODE_NOTES["membership-unknown"] in text
    assert "[Approve] [Approve & register] [Reject]" in text
    # mrkdwn: the note is in italics, escaped like the reason
    assert why_text(item).endswith(f"\n_{CODE_NOTES['membership-unknown']}_")

    item.state, item.outcome, item.decided_by = "settled", "approved", "slack:U1"
    settled = render_text(message_for(item, "payments-api", NOW).blocks)
    assert CODE_NOTES["membership-unknown"] in settled
    assert "Approved" in settled
