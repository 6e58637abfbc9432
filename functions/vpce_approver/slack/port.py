"""SlackPort: the EscalationPort that posts one approval message per escalation and keeps it true.

Exactly one message per escalation, whatever the redeliveries: the post is *claimed* first with a
conditional update (slack_channel set, slack_ts absent, and no other claim younger than
POST_LEASE), then posted, then slack_channel + slack_ts are stored. A concurrent or redelivered
opened() finds the claim (or the ts) and does nothing. A failed post releases the claim, keeps
posted = false, counts post_attempts and records last_post_error; the sweep calls opened() again.

Residual risk (documented in docs/SLACK.md): a process that dies after Slack accepted the post but
before the ts is stored leaves a claim that expires after POST_LEASE, and the next opened() posts
again. Slack offers no idempotency key for chat.postMessage.

No method raises: Slack or DynamoDB trouble is logged and left for the next call."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from pynamodb.exceptions import UpdateError

from ..audit import stamp
from ..config import Settings
from ..escalations import OPEN, Escalations
from ..tables import SERVICE_MARKER, EscalationItem, RegistryItem
from .client import ClientConfig, SecretSource, SlackApi, SlackError
from .messages import Message, message_for

log = logging.getLogger("vpce_approver.slack")

POST_LEASE = timedelta(minutes=2)  # longer than a post with all its retries can take
STORE_ATTEMPTS = 5
MAX_ERROR_CHARS = 300


def conditional_failed(exc: Exception) -> bool:
    return getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException"


def utcnow() -> datetime:
    return datetime.now(UTC)


class SlackPort:
    def __init__(
        self,
        api: SlackApi,
        channel: str,
        *,
        escalations: Escalations | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.api = api
        self.channel = channel
        self.escalations = escalations or Escalations()
        self.clock = clock
        self._names: dict[str, str | None] = {}

    @classmethod
    def from_settings(cls, settings: Settings, *, config: ClientConfig | None = None) -> SlackPort:
        if not settings.slack_channel:
            raise ValueError("SLACK_CHANNEL is not set")
        api = SlackApi.from_settings(settings, SecretSource(settings), config)
        return cls(api, settings.slack_channel)

    # ------------------------------------------------------------------ EscalationPort
    def opened(self, escalation: EscalationItem) -> None:
        try:
            self._post_once(escalation.vpc_endpoint_id)
        except Exception:
            log.exception("posting escalation %s failed", escalation.vpc_endpoint_id)

    def settled(self, escalation: EscalationItem) -> None:
        try:
            self.show(escalation.vpc_endpoint_id)
        except Exception:
            log.exception("updating settled escalation %s failed", escalation.vpc_endpoint_id)

    def refresh(self, escalation: EscalationItem) -> None:
        try:
            self.show(escalation.vpc_endpoint_id)
        except Exception:
            log.exception("refreshing escalation %s failed", escalation.vpc_endpoint_id)

    # ------------------------------------------------------------------ rendering
    def service_name(self, service_id: str) -> str | None:
        if service_id not in self._names:
            try:
                item = RegistryItem.get(service_id, SERVICE_MARKER)
                self._names[service_id] = item.name
            except RegistryItem.DoesNotExist:
                self._names[service_id] = None
        return self._names[service_id]

    def render(self, item: EscalationItem) -> Message:
        return message_for(item, self.service_name(item.service_id), self.clock())

    def show(self, vpc_endpoint_id: str) -> bool:
        """chat.update the message from the *current* record (open: buttons; settled: outcome).
        Re-reading means a late caller can never paint an outdated outcome. False when there is
        no message (not posted) or Slack failed."""
        item = self.escalations.get(vpc_endpoint_id)
        if item is None or not item.slack_ts or not item.slack_channel:
            return False
        message = self.render(item)
        try:
            self.api.update_message(item.slack_channel, item.slack_ts, message.text, message.blocks)
        except SlackError as exc:
            log.warning("chat.update of %s failed: %s", vpc_endpoint_id, exc.code)
            return False
        return True

    # ------------------------------------------------------------------ posting exactly once
    def _post_once(self, vpc_endpoint_id: str) -> None:
        item = self.escalations.get(vpc_endpoint_id)
        if item is None or item.state != OPEN or item.slack_ts:
            return
        now = self.clock()
        if not self._claim(item, now):
            return
        message = self.render(item)
        try:
            posted = self.api.post_message(self.channel, message.text, message.blocks)
        except SlackError as exc:
            log.warning("chat.postMessage for %s failed: %s", vpc_endpoint_id, exc.code)
            self._release(vpc_endpoint_id, str(exc)[:MAX_ERROR_CHARS])
            return
        stored = self._store(vpc_endpoint_id, posted.channel, posted.ts)
        if stored is not None and stored.state != OPEN:
            self.show(vpc_endpoint_id)  # settled while we were posting: drop the buttons

    def _claim(self, item: EscalationItem, now: datetime) -> bool:
        lease_expired = EscalationItem.updated_at < stamp(now - POST_LEASE)
        try:
            item.update(
                actions=[
                    EscalationItem.slack_channel.set(self.channel),
                    EscalationItem.post_attempts.add(1),
                    EscalationItem.updated_at.set(stamp(now)),
                ],
                condition=(EscalationItem.state == OPEN)
                & EscalationItem.slack_ts.does_not_exist()
                & (EscalationItem.slack_channel.does_not_exist() | lease_expired),
            )
        except UpdateError as exc:
            if conditional_failed(exc):
                return False  # posted, being posted, settled, or changed under us: next call
            raise
        return True

    def _release(self, vpc_endpoint_id: str, error: str) -> None:
        for _ in range(STORE_ATTEMPTS):
            item = self.escalations.get(vpc_endpoint_id)
            if item is None or item.slack_ts or item.slack_channel != self.channel:
                return
            try:
                item.update(
                    actions=[
                        EscalationItem.slack_channel.remove(),
                        EscalationItem.posted.set(False),
                        EscalationItem.last_post_error.set(error),
                        EscalationItem.updated_at.set(stamp(self.clock())),
                    ],
                    condition=EscalationItem.slack_ts.does_not_exist(),
                )
            except UpdateError as exc:
                if conditional_failed(exc):
                    continue  # version moved (a settle): read again
                raise
            return

    def _store(self, vpc_endpoint_id: str, channel: str, ts: str) -> EscalationItem | None:
        """Record the message. Retried on version conflicts: losing the ts would mean a
        duplicate post later."""
        for _ in range(STORE_ATTEMPTS):
            item = self.escalations.get(vpc_endpoint_id)
            if item is None:
                return None
            if item.slack_ts:
                log.error("escalation %s already had a message: posted twice", vpc_endpoint_id)
                return item
            try:
                item.update(
                    actions=[
                        EscalationItem.slack_channel.set(channel),
                        EscalationItem.slack_ts.set(ts),
                        EscalationItem.posted.set(True),
                        EscalationItem.last_post_error.remove(),
                        EscalationItem.updated_at.set(stamp(self.clock())),
                    ],
                    condition=EscalationItem.slack_ts.does_not_exist(),
                )
            except UpdateError as exc:
                if conditional_failed(exc):
                    continue
                raise
            return item
        log.error("could not store the Slack ts of %s after %d tries", vpc_endpoint_id, 5)
        return None
