"""What a sweep run reports: per service, escalation maintenance, drift; and the optional
drift-summary extension of the escalation port."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ..membership import MembershipChange
    from .principals import AllowListDrift

MEMBERSHIP_LIMIT = 20  # accounts named per list in a summary


def _membership(change: MembershipChange | None) -> dict[str, Any] | None:
    if change is None:
        return None
    out: dict[str, Any] = {"epoch": change.epoch}
    for name in ("joined", "left", "moved"):
        accounts = getattr(change, name)
        out[name] = len(accounts)
        if accounts:
            out[f"{name}_accounts"] = list(accounts[:MEMBERSHIP_LIMIT])
    if change.error:
        out["error"] = change.error
    return out


Progress = Callable[[str], None]


@runtime_checkable
class DriftReporter(Protocol):
    """Optional: an EscalationPort that also implements this gets a drift summary per run
    (only when there is drift). It must not raise, and should rate-limit itself."""

    def drift(self, summary: DriftSummary) -> None: ...


# ------------------------------------------------------------------ report types
@dataclass(frozen=True, slots=True)
class Cursor:
    service_id: str
    next_token: str | None = None  # None: the service from its first page


# A live connection without a grant that a person approved in Slack (no registry change since):
# its own state, reported apart from drift, never revoked.
HUMAN_APPROVED = "approved-by-person"


@dataclass(frozen=True, slots=True)
class DriftItem:
    service_id: str
    vpc_endpoint_id: str
    consumer: str
    state: str
    code: str
    reason: str
    revoke: bool
    outcome: str  # reported | rejected | would-reject | failed:<code> | approved-by-person

    def as_dict(self) -> dict[str, str]:
        return {
            "service_id": self.service_id,
            "vpc_endpoint_id": self.vpc_endpoint_id,
            "consumer": self.consumer,
            "state": self.state,
            "code": self.code,
            "outcome": self.outcome,
        }


@dataclass(frozen=True, slots=True)
class DriftSummary:
    items: tuple[DriftItem, ...]

    @property
    def rejected(self) -> int:
        return sum(1 for i in self.items if i.outcome == "rejected")


@dataclass
class ServiceSweep:
    service_id: str
    fixes: list[str] = field(default_factory=list)  # what ensure fixed (or would fix)
    warnings: list[str] = field(default_factory=list)  # what ensure found and cannot fix
    pages: int = 0
    read: int = 0
    pending: int = 0
    results: dict[str, int] = field(default_factory=dict)  # "accept:done" -> n, as converge
    drift: list[DriftItem] = field(default_factory=list)
    allow_list: AllowListDrift | None = None  # allowed principals against the registry
    approved: list[DriftItem] = field(default_factory=list)  # HUMAN_APPROVED: not drift
    complete: bool = False
    error: str | None = None

    def add_results(self, summary: dict[str, object]) -> None:
        for key, value in summary.items():
            if ":" in key and isinstance(value, int):
                self.results[key] = self.results.get(key, 0) + value

    def summary(self) -> dict[str, object]:
        out: dict[str, object] = {
            "service_id": self.service_id,
            "pages": self.pages,
            "read": self.read,
            "pending": self.pending,
            "complete": self.complete,
            **dict(sorted(self.results.items())),
            "drift": len(self.drift),
            "approved_no_grant": len(self.approved),
        }
        if self.allow_list is not None:
            out["allow_list"] = self.allow_list.summary()
        if self.fixes:
            out["fixes"] = list(self.fixes)
        if self.warnings:
            out["warnings"] = list(self.warnings)
        if self.error:
            out["error"] = self.error
        return out


@dataclass
class EscalationSweep:
    closed: int = 0
    reposted: int = 0
    refreshed: int = 0
    would_close: int = 0
    would_post: int = 0
    would_refresh: int = 0
    error: str | None = None


@dataclass
class SweepReport:
    dry_run: bool = False
    services: list[ServiceSweep] = field(default_factory=list)
    escalations: EscalationSweep = field(default_factory=EscalationSweep)
    resumed_from: Cursor | None = None
    stopped_at: Cursor | None = None  # set when the run was cut off by the deadline
    membership: MembershipChange | None = None  # OU/organization grants on: the fresh read

    @property
    def cut_off(self) -> bool:
        return self.stopped_at is not None

    @property
    def errors(self) -> dict[str, str]:
        out = {s.service_id: s.error for s in self.services if s.error}
        for s in self.services:
            if s.allow_list is not None and s.allow_list.outcome.startswith("failed:"):
                out[f"{s.service_id} allowed principals"] = s.allow_list.outcome
        if self.escalations.error:
            out["escalations"] = self.escalations.error
        if self.membership is not None and self.membership.error:
            out["organization"] = self.membership.error
        return out

    @property
    def drift(self) -> list[DriftItem]:
        return [d for s in self.services for d in s.drift]

    @property
    def allow_lists(self) -> list[AllowListDrift]:
        return [s.allow_list for s in self.services if s.allow_list is not None]

    @property
    def approved(self) -> list[DriftItem]:
        """Live connections a person approved in Slack that no grant allows (not drift)."""
        return [d for s in self.services for d in s.approved]

    def total(self, key: str) -> int:
        return sum(s.results.get(key, 0) for s in self.services)

    def summary(self) -> dict[str, Any]:
        esc = self.escalations
        return {
            "dry_run": self.dry_run,
            "services": len(self.services),
            "complete": not self.cut_off,
            "resumed_from": dataclasses.asdict(self.resumed_from) if self.resumed_from else None,
            "stopped_at": dataclasses.asdict(self.stopped_at) if self.stopped_at else None,
            "read": sum(s.read for s in self.services),
            "pending": sum(s.pending for s in self.services),
            "accepted": self.total("accept:done"),
            "rejected": self.total("reject:done"),
            "escalated": self.total("escalate:escalated"),
            "shadow": sum(v for s in self.services for k, v in s.results.items() if "shadow" in k),
            "drift": len(self.drift),
            "drift_rejected": sum(1 for d in self.drift if d.outcome == "rejected"),
            "principals_missing": sum(len(a.missing) for a in self.allow_lists),
            "principals_extra": sum(len(a.extra) for a in self.allow_lists),
            "approved_no_grant": len(self.approved),
            "fixes": [f"{s.service_id}: {f}" for s in self.services for f in s.fixes],
            "warnings": [f"{s.service_id}: {w}" for s in self.services for w in s.warnings],
            "escalations": dataclasses.asdict(esc),
            "membership": _membership(self.membership),
            "errors": self.errors,
            "per_service": [s.summary() for s in self.services],
        }
