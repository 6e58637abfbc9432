"""What the worker checks about a click before acting, from the job and the escalation alone.

- `recheck`: the interactivity function's checks (workspace, approver) again, on the job the
  worker received: a message put on the work queue by anything else (a bug, a principal allowed
  sqs:SendMessage) cannot approve. The job's `refusal` only ever makes a click stricter.
- `message_binding`: a click acts only from the escalation's own posted message, the channel
  *and* ts stored when it was posted. With no stored message (the post failed, or is in flight)
  nothing matches, not even a click that carries no channel/ts either (a modal, a shortcut,
  another surface): "nothing == nothing" is not a match. The click is refused until the message
  exists."""

from __future__ import annotations

from ..tables import EscalationItem
from .approvers import Approvers, Refusal
from .interactivity import Job


def recheck(job: Job, approvers: Approvers) -> Refusal | None:
    return approvers.check(job.user, job.team)


def message_binding(item: EscalationItem, job: Job) -> Refusal | None:
    if not item.slack_channel or not item.slack_ts:
        return Refusal(
            "not-posted",
            "This escalation has no posted message yet; nothing was done. "
            "Use the buttons on its message once it is posted.",
        )
    if (item.slack_channel, item.slack_ts) != (job.channel, job.message_ts):
        return Refusal(
            "button-mismatch", "This button does not belong to this message; nothing was done."
        )
    return None
