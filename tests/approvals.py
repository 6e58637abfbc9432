"""A human approval through the real Slack path (interactivity handler + worker on the local Slack
stand-in), at a chosen time: for the paths that must honour it (drift, revocation)."""

from __future__ import annotations

from datetime import datetime

from vpce_tools import slack_local
from vpce_tools.stack import LocalDeployment


def approve_in_slack(deployment: LocalDeployment, vpce: str, at: datetime) -> str | None:
    """An approver clicks Approve on the escalation's message at `at`. Returns the escalation's
    outcome afterwards."""
    local = slack_local.start(deployment)
    try:
        deps = local.deps()
        deps.clock = lambda: at
        item = deps.escalations.get(vpce)
        assert item is not None, f"{vpce} has no escalation"
        local.services.port.opened(item)
        message = local.fake.message_for(vpce)
        assert message is not None, f"no Slack message for {vpce}"
        local.fake.click(message.channel, message.ts, "approve", user=slack_local.LOCAL_APPROVER)
        settled = deps.escalations.get(vpce)
        return settled.outcome if settled else None
    finally:
        local.stop()
