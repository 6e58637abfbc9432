"""Placeholder until the Slack adapter lands: escalations stay recorded, unposted."""

from __future__ import annotations

from ..config import Settings
from ..escalations import RecordOnly


class SlackPort(RecordOnly):
    @classmethod
    def from_settings(cls, settings: Settings) -> SlackPort:
        return cls()
