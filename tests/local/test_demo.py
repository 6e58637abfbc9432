"""`make demo` runs end to end and shows accept, reject and escalate with their reasons."""

from __future__ import annotations

import io
import re

import pytest

from vpce_tools import demo


@pytest.fixture(scope="module")
def text() -> str:
    """One run of the demo for every test here (it takes seconds)."""
    out = io.StringIO()
    assert demo.run(out) == 0
    return out.getvalue()


def test_demo_shows_each_decision_with_its_reason(text: str) -> None:
    rows = {
        m.group(1): m.group(0)
        for m in re.finditer(r"^\s+(team-a|partner|stranger|limited-\d)\s.*$", text, re.MULTILINE)
    }
    assert "available" in rows["team-a"]
    assert "is allowed by grant" in rows["team-a"]
    assert "rejected" in rows["partner"]
    assert "is denied by grant" in rows["partner"]
    assert "pendingAcceptance" in rows["stranger"]
    assert "has no grant" in rows["stranger"]
    assert "allows 1" in rows["limited-2"]
    # the registry step: a grant for the waiting stranger makes its connection available
    registry = text[text.index("A registry edit grants access") :]
    assert re.search(r"after:\s+vpce-\w+ is available", registry)
    assert re.search(r"allowed principals: no", registry)
    assert re.search(r"allowed principals: yes", registry)
    # the Slack step: the over-limit escalation approved by a click
    assert "clicks 'approve'" in text
    assert re.search(r"Approved by .*U0APPROVER", text)
    assert re.search(r"-> vpce-\w+ is available \(escalation approved\)", text)
    # the sweep step: a connection whose notification was lost is accepted by one sweep
    sweep = text[text.index("A notification is lost") :]
    assert "its notification was lost" in sweep
    assert re.search(r"one sweep: .*1 accepted -> vpce-\w+ is available", sweep)
    assert text.rstrip().endswith("demo complete")


def test_demo_onboards_a_new_account_by_its_ou_and_offboards_it_when_moved_out(text: str) -> None:
    """The organization step: an OU grant, a brand-new account moved into a child OU is on the
    allow-list and accepted with no registry edit for it; moved out, it is off the allow-list
    and its next connection is not accepted."""
    org = text[text.index("An OU grant onboards a brand-new account") :]
    org = org[: org.index("\n== ")]
    workloads = re.search(r"workloads (ou-[0-9a-z]+-[0-9a-z]+)", org)
    prod = re.search(r"prod (ou-[0-9a-z]+-[0-9a-z]+) \(inside workloads\)", org)
    account = re.search(r"create-account team-b\s+-> (\d{12})", org)
    assert workloads, org
    assert prod, org
    assert account, org
    ou, child, acct = workloads.group(1), prod.group(1), account.group(1)
    assert re.search(rf"registry add vpce-svc-\w+ {ou} ", org), org
    joined, moved_out = org.split(f"move-account {acct} -> sandbox")
    # in: the sweep the Organizations events start sees it join; its root is listed
    assert f"event: MoveAccount {acct}: r-" in joined
    assert f"1 joined ({acct})" in joined
    assert f"arn:aws:iam::{acct}:root on the allowed principals: yes" in joined
    assert re.search(rf"{acct} creates vpce-\w+ \(no registry edit for it\) -> available", joined)
    decision = re.search(r"decision: accept: (.*)", joined)
    assert decision, joined
    assert "is allowed by grant vpce-svc-" in decision.group(1)
    assert f"/{ou} (path o-" in decision.group(1)
    assert decision.group(1).endswith(f"/ {ou} / {child})")  # nested: the path that matched
    # out: the sweep sees the move, the allow-list entry goes, the next connection is not taken
    assert f"1 moved ({acct})" in moved_out
    assert f"arn:aws:iam::{acct}:root on the allowed principals: no" in moved_out
    next_one = re.search(r"creates another endpoint (.*)", moved_out)
    assert next_one, moved_out
    assert "available" not in next_one.group(1)
    assert "decision: accept" not in moved_out
    assert re.search(r"its first endpoint vpce-\w+ stays available", moved_out)
