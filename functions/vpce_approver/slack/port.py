"""SlackPort: the EscalationPort that posts one approval message per escalation and keeps it true.

Exactly one message per escalation, whatever the redeliveries: the post is *claimed* first with a
conditional update (slack_channel set, slack_ts absent, and no other claim younger than
POST_LEASE), then posted, then slack_channel + slack_ts are stored. A concurrent or redelivered
opened() finds the claim (or the ts) and does nothing. A failed post releases the claim, keeps
posted = false, counts post_attempts and records last_post_error; the sweep calls opened() again.

Slack has no idempotency key for chat.postMessage, so a message may exist whose ts we never
stored: the process died between the post and the store (its claim expires after POST_LEASE), or
the post timed out / failed with a 5xx after Slack had posted it. Every message therefore carries
metadata naming its endpoint, and whenever an earlier attempt exists (post_attempts > 0 at claim
time) or the post failed ambiguously, the channel history since the escalation was created is
searched (conversations.history, bounded) and a message found there is *adopted* (its ts stored)
instead of posting another. When that search itself fails: a transient failure defers the post to
the next call (up to LOOKUP_GIVE_UP attempts); a permanent one (a missing scope) posts anyway,
since a possible duplicate, whose buttons are refused, is better than never asking a human.

No method raises: Slack or DynamoDB trouble is logged and left for the next call."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from pynamodb.exceptions import UpdateError

from ..audit import stamp
from ..config import Settings
from ..escalations import OPEN, Escalations
from ..registry import get_item
from ..tables import SERVICE_MARKER, EscalationItem, RegistryItem
from .client import ClientConfig, Posted, SecretSource, SlackApi, SlackError, ambiguous
from .messages import Message, escalation_metadata, message_for, names_endpoint, parse_stamp

log = logging.getLogger("vpce_approver.slack")

POST_LEASE = timedelta(minutes=2)  # longer than a post with all its retries can take
STORE_ATTEMPTS = 5
MAX_ERROR_CHARS = 300
LOOKUP_PAGES = 5  # conversations.history pages searched for an earlier message...
LOOKUP_PAGE_SIZE = 200  # ...of this many messages (Slack's recommended maximum)
LOOKUP_SKEW = timedelta(minutes=5)  # searched from created_at minus this (clock skew)
LOOKUP_GIVE_UP = 4  # after this many attempts a transiently failing search no longer defers


class LookupFailed(Exception):
    def __init__(self, error: SlackError) -> None:
        super().__init__(str(error))
        self.error = error


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
            # Tolerant read: a damaged enrollment item costs the message its friendly name only.
            item = get_item(service_id, SERVICE_MARKER, consistent_read=False)
            self._names[service_id] = item.name if isinstance(item, RegistryItem) else None
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
        earlier_attempt = int(item.post_attempts or 0) > 0
        now = self.clock()
        if not self._claim(item, now):
            return
        if earlier_attempt:
            # A crashed or ambiguous earlier attempt may have posted: look before posting.
            try:
                existing = self._find_posted(item)
            except LookupFailed as exc:
                if not self._post_despite(item, exc.error):
                    self._release(vpc_endpoint_id, f"lookup {exc}"[:MAX_ERROR_CHARS])
                    return
                existing = None
            if existing is not None:
                self._adopt(vpc_endpoint_id, existing)
                return
        message = self.render(item)
        try:
            posted = self.api.post_message(
                self.channel,
                message.text,
                message.blocks,
                metadata=escalation_metadata(vpc_endpoint_id),
            )
        except SlackError as exc:
            log.warning("chat.postMessage for %s failed: %s", vpc_endpoint_id, exc.code)
            if ambiguous(exc.code) and self._adopt_after_ambiguous(item):
                return
            self._release(vpc_endpoint_id, str(exc)[:MAX_ERROR_CHARS])
            return
        stored = self._store(vpc_endpoint_id, posted.channel, posted.ts)
        if stored is not None and stored.state != OPEN:
            self.show(vpc_endpoint_id)  # settled while we were posting: drop the buttons

    def _post_despite(self, item: EscalationItem, error: SlackError) -> bool:
        """The history search failed: post anyway (True) or defer to the next call (False)?
        Transient trouble defers, a few times; anything else (missing_scope, not_in_channel...)
        will not heal by waiting, and a possible duplicate beats an escalation nobody sees."""
        transient = ambiguous(error.code) or error.code in {"ratelimited", "unreachable"}
        if transient and int(item.post_attempts or 0) < LOOKUP_GIVE_UP:
            log.warning(
                "cannot search Slack for an earlier message of %s (%s): trying later",
                item.vpc_endpoint_id,
                error.code,
            )
            return False
        log.error(
            "cannot search Slack for an earlier message of %s (%s): posting anyway, which may "
            "duplicate one (check the app's channels:history / groups:history scope)",
            item.vpc_endpoint_id,
            error.code,
        )
        return True

    def _adopt_after_ambiguous(self, item: EscalationItem) -> bool:
        """The post timed out or failed with a 5xx: Slack may have posted it. Adopt the message
        if it is already in the history. Otherwise the claim is released and the next call
        searches again before posting: by then a post still in flight in Slack has landed."""
        try:
            existing = self._find_posted(item)
        except LookupFailed as exc:
            log.warning(
                "searching for %s after an ambiguous post failed: %s", item.vpc_endpoint_id, exc
            )
            return False
        if existing is None:
            return False
        self._adopt(item.vpc_endpoint_id, existing)
        return True

    def _find_posted(self, item: EscalationItem) -> Posted | None:
        """Our earlier message for this escalation in the channel, if any: a message posted by
        this bot, carrying our metadata for the endpoint, no older than the escalation (minus
        LOOKUP_SKEW). At most LOOKUP_PAGES pages. Several (duplicates from before): the oldest."""
        created = parse_stamp(item.created_at) or self.clock()
        oldest = f"{(created - LOOKUP_SKEW).timestamp():.6f}"
        found: list[str] = []
        cursor: str | None = None
        try:
            identity = self.api.bot_identity()
            for _ in range(LOOKUP_PAGES):
                page = self.api.history(
                    self.channel, oldest=oldest, limit=LOOKUP_PAGE_SIZE, cursor=cursor
                )
                found += [
                    str(m["ts"])
                    for m in page.messages
                    if m.get("ts") and identity.wrote(m) and names_endpoint(m, item.vpc_endpoint_id)
                ]
                cursor = page.next_cursor
                if cursor is None:
                    break
            else:
                log.warning(
                    "searched %d messages for %s without reaching its creation: not found",
                    LOOKUP_PAGES * LOOKUP_PAGE_SIZE,
                    item.vpc_endpoint_id,
                )
        except SlackError as exc:
            raise LookupFailed(exc) from exc
        if not found:
            return None
        found.sort(key=float)
        if len(found) > 1:
            log.error(
                "escalation %s has %d messages: keeping the first",
                item.vpc_endpoint_id,
                len(found),
            )
        return Posted(channel=self.channel, ts=found[0])

    def _adopt(self, vpc_endpoint_id: str, posted: Posted) -> None:
        log.info("escalation %s was already posted (ts %s): adopted", vpc_endpoint_id, posted.ts)
        if self._store(vpc_endpoint_id, posted.channel, posted.ts) is not None:
            self.show(vpc_endpoint_id)  # repaint from the current record (it may be settled)

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
