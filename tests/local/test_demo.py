"""`make demo` runs end to end and shows accept, reject and escalate with their reasons."""

from __future__ import annotations

import io
import re

from vpce_tools import demo


def test_demo_shows_each_decision_with_its_reason() -> None:
    out = io.StringIO()
    assert demo.run(out) == 0
    text = out.getvalue()
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
