"""Where accounts sit in the AWS Organization: the port the decision path and the sweep read it
through (organization.py is the AWS adapter; StaticDirectory serves tests and tools).

Contract of a Directory:
- `memberships(accounts)` never raises: an account it cannot place comes back UNKNOWN with the
  reason (throttled, access denied, Organizations not in use...), which the policy treats as
  "no OU/organization grant allows" (fail closed). Answers may come from a cache no older than
  the deployment's stated bound (MEMBERSHIP_MAX_AGE).
- `confirm()` says whether what it hands out is at least as new as the last membership change
  the deployment recorded (the sweep's `refresh`); False means it dropped its cache, and the
  caller asks `memberships()` again. A decision therefore never keeps using a membership the
  deployment already knows is stale.
- `members(scope)` the active accounts under an OU (nested OUs included) or the organization;
  None when that cannot be read (the caller then adds and removes nothing for that scope).
- `refresh(record=...)` reads the whole tree now (the sweep, an Organizations event), and, when
  it differs from the last recorded one and `record` is set, records the change (a new epoch).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from .model import Membership, MemberState, Scope, scope_of


@dataclass(frozen=True, slots=True)
class MembershipChange:
    """What a fresh read of the organization found against the last recorded one."""

    joined: tuple[str, ...] = ()  # accounts that are members now and were not
    left: tuple[str, ...] = ()  # members before, not now (removed, closed, suspended)
    moved: tuple[str, ...] = ()  # members before and now, on another path
    epoch: int = 0  # the recorded epoch after this refresh
    error: str | None = None  # the tree could not be read: nothing recorded

    @property
    def changed(self) -> bool:
        return bool(self.joined or self.left or self.moved)


class Directory(Protocol):
    def memberships(self, accounts: Iterable[str]) -> dict[str, Membership]: ...

    def confirm(self) -> bool: ...

    def members(self, scope: str) -> frozenset[str] | None: ...

    def refresh(self, *, record: bool = True) -> MembershipChange: ...


@dataclass
class StaticDirectory:
    """An organization held in memory: {account: path nearest-first}. For tests and tools.
    `unreadable` makes every read fail (the fail-closed path); `epoch`/`seen` model a
    recorded change that this copy has or has not seen yet."""

    organization: str
    paths: dict[str, tuple[str, ...]] = field(default_factory=dict)
    unreadable: str | None = None
    epoch: int = 0
    seen: int = 0
    calls: int = 0

    def memberships(self, accounts: Iterable[str]) -> dict[str, Membership]:
        out = {}
        for account in accounts:
            self.calls += 1
            if self.unreadable:
                out[account] = Membership.unknown(account, self.unreadable)
            elif account in self.paths:
                out[account] = Membership(
                    account, MemberState.MEMBER, self.organization, self.paths[account]
                )
            else:
                out[account] = Membership.outside(account, self.organization)
        return out

    def confirm(self) -> bool:
        fresh = self.seen >= self.epoch
        self.seen = self.epoch
        return fresh

    def members(self, scope: str) -> frozenset[str] | None:
        if self.unreadable:
            return None
        if scope_of(scope) is Scope.ORGANIZATION:
            return frozenset(self.paths) if scope == self.organization else frozenset()
        return frozenset(a for a, path in self.paths.items() if scope in path)

    def refresh(self, *, record: bool = True) -> MembershipChange:
        if self.unreadable:
            return MembershipChange(error=self.unreadable, epoch=self.epoch)
        self.seen = self.epoch
        return MembershipChange(epoch=self.epoch)

    def move(self, account: str, path: tuple[str, ...] | None) -> None:
        """Test helper: the account moves (None: leaves); the change is recorded (new epoch)
        but this copy's answers are stale until confirm() sees it."""
        if path is None:
            self.paths.pop(account, None)
        else:
            self.paths[account] = path
        self.epoch += 1


def memberships_or_none(
    directory: Directory | None, accounts: Iterable[str]
) -> Mapping[str, Membership]:
    """The accounts' memberships, or {} when the deployment reads no organization."""
    return directory.memberships(accounts) if directory is not None else {}
