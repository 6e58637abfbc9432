"""The human decision, after the click was acknowledged (SQS -> SlackWorkerFunction -> here).

Never trust the button, nor the queue: the clicker's workspace and approver status are checked
again from the job (click_checks.recheck); the endpoint ID in the button only names an
escalation; the escalation record says which service and consumer it is about, the click must
come from that record's own posted message (channel + ts, both stored: click_checks), and the
connection's state is read again from EC2 before acting.

Exactly one action per escalation: the first click *claims* the record with a conditional write
(claimed_by = slack:<user>#<job>; open and not claimed by another live job). A second click finds
the claim and is told who is deciding; a click on a settled escalation is told the outcome (and the
message is repainted from the record). A redelivered job holds the same claim, so it can finish
what it started. A claim left by a job that died expires after CLAIM_LEASE.

Audit: the decision is written (actor slack:<user>, outcome "requested") before the EC2 call, and
failures after it, as converge() does. Refusals are audited too (action slack-refused)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from pynamodb.exceptions import UpdateError

from .. import validation
from ..audit import AuditRecord, stamp
from ..converge import Deps, outcome_for_state
from ..escalations import OPEN, SETTLED
from ..model import Action, Connection, Grant, GrantStatus
from ..policy import restrictions
from ..tables import EscalationItem
from . import registry_check
from .approvers import Approvers
from .click_checks import message_binding, recheck
from .client import SlackError
from .interactivity import Job
from .messages import APPROVE, APPROVE_REGISTER, REJECT, outcome_line
from .port import SlackPort, conditional_failed

log = logging.getLogger("vpce_approver.slack")

CLAIM_LEASE = timedelta(minutes=10)  # well beyond the worker's timeout
ATTEMPTS = 5
TRIGGER = "slack"


# (outcome follow() recorded, the click's action) -> the outcome that click really caused.
HUMAN_OUTCOME = {
    ("accepted-elsewhere", APPROVE): "approved",
    ("accepted-elsewhere", APPROVE_REGISTER): "approved",
    ("rejected-elsewhere", REJECT): "rejected",
}


class Worker:
    def __init__(self, deps: Deps, port: SlackPort, approvers: Approvers | None = None) -> None:
        self.deps = deps
        self.port = port
        self.approvers = approvers or Approvers(deps.settings, port.api)

    # ------------------------------------------------------------------ entry point
    def handle(self, job: Job) -> str:
        """Process one click. Returns what happened (for logs and tests). Raises on errors that
        a retry may fix (EC2, DynamoDB, Slack failing to show the outcome)."""
        if job.refusal:
            return self._refuse(job, job.refusal, job.refusal_message or "Not allowed.")
        refusal = recheck(job, self.approvers)  # the job may not come from our endpoint
        if refusal is not None:
            return self._refuse(job, refusal.code, refusal.message)
        item = self._escalation(job.value)
        if item is None:
            return self._refuse(
                job, "unknown-escalation", "This button names no escalation; nothing was done."
            )
        unbound = message_binding(item, job)
        if unbound is not None:
            return self._refuse(job, unbound.code, unbound.message)
        claim = f"slack:{job.user}#{job.job_id}"
        if item.state != OPEN:
            return self._already(item, job, claim)
        if self.deps.settings.shadow_mode:
            # Shadow mode acts on nothing, a click included (an escalation opened before the
            # switch can still be clicked): the human's intent is audited, the connection waits.
            return self._refuse(
                job,
                "shadow-mode",
                "This deployment runs in shadow mode and acts on nothing; nothing was done.",
            )
        claimed = self._claim(item.vpc_endpoint_id, claim)
        if claimed is None or claimed.state != OPEN:
            fresh = claimed or self._escalation(job.value)
            if fresh is not None and fresh.state != OPEN:
                return self._already(fresh, job, claim)
            other = (fresh.claimed_by or "someone") if fresh else "someone"
            who = other.split("#", 1)[0]
            self._ephemeral(
                job,
                f"{who_mention(who)} is deciding on this connection right now; see the message.",
            )
            return "busy"
        return self._decide(claimed, job, claim)

    # ------------------------------------------------------------------ the decision
    def _decide(self, item: EscalationItem, job: Job, claim: str) -> str:
        conn = self._connection(item)
        if conn is None or not conn.pending_acceptance:
            state = conn.state if conn is not None else "deleted"
            outcome = outcome_for_state(state) or "settled"
            settled = self._settle(item.vpc_endpoint_id, claim, outcome, by=TRIGGER)
            self._audit(
                item,
                job,
                action="escalation-closed",
                outcome=outcome,
                reason=f"connection is {state} at the time of the click",
            )
            self.port.show(item.vpc_endpoint_id)
            if settled is not None:
                self._ephemeral(job, f"Already settled: {outcome_line(settled)}. Nothing was done.")
            return "already-settled"

        refusal = registry_check.check(self.deps, conn, job.action)
        if refusal is not None:  # the registry's word, read now: a live deny, a restriction
            self._release(item.vpc_endpoint_id, claim)
            return self._refuse(job, refusal.code, refusal.message)

        action = Action.REJECT if job.action == REJECT else Action.ACCEPT
        verb = "rejected" if action is Action.REJECT else "approved"
        requested = self._audit(
            item,
            job,
            action=action.value,
            outcome="requested",
            reason=f"{verb} in Slack by <@{job.user}> ({job.action})",
        )
        call = self.deps.ec2.reject if action is Action.REJECT else self.deps.ec2.accept
        result = call(item.service_id, [item.vpc_endpoint_id])
        failed = {f.vpc_endpoint_id: f.code for f in result.failed}
        self.deps.audit.settle([requested], result.succeeded, failed)  # -> done | failed:<code>
        if result.failed:
            failure = result.failed[0]
            conn = self._connection(item)
            if conn is None or not conn.pending_acceptance:
                return self._decide(item, job, claim)  # settled meanwhile: say so
            self._release(item.vpc_endpoint_id, claim)
            self._ephemeral(
                job, f"{verb.capitalize()} failed ({failure.code}); nothing changed. Try again."
            )
            return f"failed:{failure.code}"

        outcome = "rejected" if action is Action.REJECT else "approved"
        by = f"slack:{job.user}"
        if action is Action.ACCEPT and self._denied_meanwhile(item, conn, job):
            outcome, by = "rejected", "policy"  # a deny written between the check and the Accept
        elif job.action == APPROVE_REGISTER and self._register(item, job):
            outcome = "approved-registered"
        self._settle(item.vpc_endpoint_id, claim, outcome, by=by)
        if not self.port.show(item.vpc_endpoint_id):
            # The decision is made and recorded; a retry of this job only repaints the message.
            raise SlackError("chat.update", "outcome not shown")
        return outcome

    def _denied_meanwhile(self, item: EscalationItem, conn: Connection, job: Job) -> bool:
        """Read the registry again right after the Accept (as converge does): a deny written
        since the check before it is never left accepted; the connection is rejected at once."""
        refusal = registry_check.check(self.deps, conn, APPROVE)
        if refusal is None or refusal.code != "denied":
            return False
        reason = f"a deny was written while the approval was acted on: {refusal.message}"
        record = AuditRecord(
            subject=item.vpc_endpoint_id,
            action="reject",
            actor="policy",
            at=self.deps.clock(),
            code="grant-changed",
            reason=reason,
            trigger=TRIGGER,
            outcome="requested",
            service_id=item.service_id,
            vpc_endpoint_id=item.vpc_endpoint_id,
            consumer=item.consumer,
            region=item.region,
        )
        self.deps.audit.write([record])
        result = self.deps.ec2.reject(item.service_id, [item.vpc_endpoint_id])
        failed = {f.vpc_endpoint_id: f.code for f in result.failed}
        self.deps.audit.settle([record], result.succeeded, failed)  # -> done | failed:<code>
        if result.failed:  # the sweep's drift check reports it (and revokes when asked to)
            log.error("rejecting %s after a late deny failed: %s", conn.vpc_endpoint_id, result)
        self._ephemeral(
            job,
            f"Approved, but account {item.consumer} was denied in the registry meanwhile: the"
            " connection was rejected at once.",
        )
        return not result.failed

    def _register(self, item: EscalationItem, job: Job) -> bool:
        """Approve & register: an allow grant for (service, consumer), keeping the owner, note
        and principals of an unrestricted allow grant already there. Written after the Accept,
        so the registry stream's converge finds nothing left to race for. A restriction that
        appeared since the check before the Accept is never lifted: the grant is not written."""
        now = self.deps.clock()
        registry = self.deps.registry
        member = registry_check.membership(self.deps, item.consumer)
        items = registry_check.entries(self.deps, item.service_id, item.consumer, member)
        lifted = restrictions(item.service_id, item.consumer, items, now, member)
        if lifted:
            log.warning(
                "approve & register of %s: not registered: %s", item.vpc_endpoint_id, lifted
            )
            self._ephemeral(
                job,
                "Approved this connection; the grant was not registered, it would lift: "
                + "; ".join(lifted),
            )
            return False
        existing = next(
            (g for g in items if isinstance(g, Grant) and g.service_id == item.service_id), None
        )
        principals = (existing.principals if existing else ()) or (
            f"arn:aws:iam::{item.consumer}:root",
        )
        grant = Grant(
            service_id=item.service_id,
            consumer=item.consumer,
            status=GrantStatus.ALLOW,
            principals=principals,
            owner=existing.owner if existing else None,
            note=(existing.note if existing and existing.note else None)
            or f"approved in Slack by {job.user} for {item.vpc_endpoint_id}",
            revoke=existing.revoke if existing else None,
        )
        try:
            registry.put(grant, by=f"slack:{job.user}", now=now)
        except validation.ValidationError as exc:
            log.error("approve & register of %s: grant refused: %s", item.vpc_endpoint_id, exc)
            self._ephemeral(job, f"Approved, but the grant could not be written: {exc}")
            return False
        return True

    # ------------------------------------------------------------------ escalation record
    def _escalation(self, value: str) -> EscalationItem | None:
        try:
            validation.endpoint_id(value)
        except validation.ValidationError:
            return None
        return self.deps.escalations.get(value)

    def _claim(self, vpc_endpoint_id: str, claim: str) -> EscalationItem | None:
        """Claim the open escalation for this job. Returns the record after the claim, the
        settled record, or None when another job holds it."""
        for _ in range(ATTEMPTS):
            item = self.deps.escalations.get(vpc_endpoint_id)
            if item is None:
                return None
            if item.state != OPEN:
                return item
            now = self.deps.clock()
            expired = EscalationItem.updated_at < stamp(now - CLAIM_LEASE)
            try:
                item.update(
                    actions=[
                        EscalationItem.claimed_by.set(claim),
                        EscalationItem.updated_at.set(stamp(now)),
                    ],
                    condition=(EscalationItem.state == OPEN)
                    & (
                        EscalationItem.claimed_by.does_not_exist()
                        | (EscalationItem.claimed_by == claim)
                        | expired
                    ),
                )
            except UpdateError as exc:
                if not conditional_failed(exc):
                    raise
                if self._held_by_other(vpc_endpoint_id, claim, now):
                    return None  # another live job is deciding
                continue  # the version moved (a post, a settle): read again
            return item
        return None

    def _held_by_other(self, vpc_endpoint_id: str, claim: str, now: datetime) -> bool:
        fresh = self.deps.escalations.get(vpc_endpoint_id)
        if fresh is None or fresh.state != OPEN or fresh.claimed_by in (None, claim):
            return False
        return bool(fresh.updated_at) and str(fresh.updated_at) >= stamp(now - CLAIM_LEASE)

    def _settle(
        self, vpc_endpoint_id: str, claim: str, outcome: str, *, by: str
    ) -> EscalationItem | None:
        for _ in range(ATTEMPTS):
            item = self.deps.escalations.get(vpc_endpoint_id)
            if item is None or item.claimed_by != claim:
                return None
            try:
                item.update(
                    actions=[
                        EscalationItem.state.set(SETTLED),
                        EscalationItem.outcome.set(outcome),
                        EscalationItem.decided_by.set(by),
                        EscalationItem.updated_at.set(stamp(self.deps.clock())),
                    ],
                    condition=EscalationItem.claimed_by == claim,
                )
            except UpdateError as exc:
                if conditional_failed(exc):
                    continue  # e.g. follow() settled it meanwhile: ours is the decision
                raise
            return item
        raise RuntimeError(f"could not settle escalation {vpc_endpoint_id}")

    def _release(self, vpc_endpoint_id: str, claim: str) -> None:
        for _ in range(ATTEMPTS):
            item = self.deps.escalations.get(vpc_endpoint_id)
            if item is None or item.claimed_by != claim:
                return
            try:
                item.update(
                    actions=[EscalationItem.claimed_by.remove()],
                    condition=EscalationItem.claimed_by == claim,
                )
            except UpdateError as exc:
                if conditional_failed(exc):
                    continue
                raise
            return

    def _connection(self, item: EscalationItem) -> Connection | None:
        """The connection as EC2 sees it now, under the *record's* service and consumer."""
        for conn in self.deps.ec2.connections(item.service_id, owners=[item.consumer]):
            if conn.vpc_endpoint_id == item.vpc_endpoint_id:
                return conn
        return None

    # ------------------------------------------------------------------ replies
    def _already(self, item: EscalationItem, job: Job, claim: str) -> str:
        if item.claimed_by == claim:
            # A redelivery of the job that decided. If it died between its Accept/Reject and
            # settling, follow() (the Accept/Reject notification) may have closed the record as
            # settled "elsewhere": the decision was this human's, so record it as theirs (the
            # sweep's drift check honours human approvals, not "accepted-elsewhere").
            human = HUMAN_OUTCOME.get((item.outcome or "", job.action))
            if human is not None:
                item = (
                    self._settle(item.vpc_endpoint_id, claim, human, by=f"slack:{job.user}") or item
                )
            if not self.port.show(item.vpc_endpoint_id):
                raise SlackError("chat.update", "outcome not shown")
            return item.outcome or "settled"
        self.port.show(item.vpc_endpoint_id)  # say so on the message (repaint from the record)
        self._ephemeral(job, f"Already settled: {outcome_line(item)}. Nothing was done.")
        return "already-settled"

    def _refuse(self, job: Job, code: str, message: str) -> str:
        try:
            subject = validation.endpoint_id(job.value)
        except validation.ValidationError:
            subject = "slack#invalid-button"
        record = AuditRecord(
            subject=subject,
            action="slack-refused",
            actor=f"slack:{job.user}",
            at=self.deps.clock(),
            code=code,
            reason=f"{message} (action {job.action}, team {job.team}, channel {job.channel})",
            trigger=TRIGGER,
            outcome=f"refused:{code}",
            vpc_endpoint_id=subject if subject.startswith("vpce-") else None,
        )
        self.deps.audit.write([record])
        if code != "wrong-team":  # our bot cannot talk to another workspace's users
            self._ephemeral(job, message)
        return f"refused:{code}"

    def _audit(
        self, item: EscalationItem, job: Job, *, action: str, outcome: str, reason: str
    ) -> AuditRecord:
        record = AuditRecord(
            subject=item.vpc_endpoint_id,
            action=action,
            actor=f"slack:{job.user}",
            at=self.deps.clock(),
            code="human",
            reason=reason,
            trigger=TRIGGER,
            outcome=outcome,
            service_id=item.service_id,
            vpc_endpoint_id=item.vpc_endpoint_id,
            consumer=item.consumer,
            region=item.region,
        )
        self.deps.audit.write([record])
        return record

    def _ephemeral(self, job: Job, text: str) -> None:
        if not job.channel:
            return
        try:
            self.port.api.post_ephemeral(job.channel, job.user, text)
        except SlackError as exc:
            log.warning("ephemeral reply to %s failed: %s", job.user, exc.code)


def who_mention(actor: str) -> str:
    return f"<@{actor.removeprefix('slack:')}>" if actor.startswith("slack:") else actor
