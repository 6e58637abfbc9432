"""Who may click: Slack has no per-button permission, so every click is checked here.

Fail closed: with no workspace (team) ID configured, or no approvers at all, nobody may act; when
the approver group cannot be read, the click is refused (try again), never allowed."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..config import Settings
from .client import SlackApi, SlackError

log = logging.getLogger("vpce_approver.slack")

GROUP_CACHE_SECONDS = 60.0


@dataclass(frozen=True)
class Refusal:
    code: str  # wrong-team | not-an-approver | approvers-unavailable | not-configured
    message: str  # shown to the clicker (ephemeral) and kept in the audit trail


class Approvers:
    def __init__(
        self,
        settings: Settings,
        api: SlackApi | None = None,
        *,
        cache_seconds: float = GROUP_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.team_id = settings.slack_team_id
        self.users = frozenset(settings.slack_approvers)
        self.group = settings.slack_approver_group
        self.api = api
        self.cache_seconds = cache_seconds
        self.clock = clock
        self._members: frozenset[str] = frozenset()
        self._fetched_at: float | None = None

    def _group_members(self) -> frozenset[str]:
        now = self.clock()
        fresh = self._fetched_at is not None and now - self._fetched_at < self.cache_seconds
        if not fresh:
            if self.api is None or self.group is None:
                raise SlackError("usergroups.users.list", "not_configured")
            self._members = self.api.group_members(self.group)
            self._fetched_at = now
        return self._members

    def check(self, user_id: str, team_id: str | None) -> Refusal | None:
        """None when `user_id` of `team_id` may approve or reject; else why not."""
        if not self.team_id:
            return Refusal("not-configured", "vpce-approver has no Slack workspace configured.")
        if team_id != self.team_id:
            return Refusal("wrong-team", "This workspace may not decide on these connections.")
        if user_id in self.users:
            return None
        if self.group:
            try:
                if user_id in self._group_members():
                    return None
            except SlackError as exc:
                log.error("cannot read approver group %s: %s", self.group, exc.code)
                return Refusal(
                    "approvers-unavailable",
                    "The approver list could not be read just now; nothing was done. Try again.",
                )
        return Refusal("not-an-approver", "You are not an approver for these connections.")
