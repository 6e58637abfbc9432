"""Helpers of the AWS Organizations adapter tests (fixtures: conftest.py)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3

from vpce_approver.organization import OrganizationsDirectory

MANAGEMENT = "123456789012"  # the deployment's account: the organization's management account


class Org:
    """The organization, driven the way an operator would (boto3, as `aws organizations`)."""

    def __init__(self) -> None:
        self.api = boto3.client("organizations", region_name="us-east-1")
        self.id = self.api.create_organization(FeatureSet="ALL")["Organization"]["Id"]
        self.root = self.api.list_roots()["Roots"][0]["Id"]
        self._n = 0

    def ou(self, name: str, parent: str | None = None) -> str:
        created = self.api.create_organizational_unit(ParentId=parent or self.root, Name=name)
        return str(created["OrganizationalUnit"]["Id"])

    def account(self, parent: str | None = None) -> str:
        self._n += 1
        status = self.api.create_account(AccountName=f"acct{self._n}", Email=f"a{self._n}@x.test")
        account = str(status["CreateAccountStatus"]["AccountId"])
        if parent is not None:
            self.move(account, parent)
        return account

    def parent(self, account: str) -> str:
        return str(self.api.list_parents(ChildId=account)["Parents"][0]["Id"])

    def move(self, account: str, to: str) -> None:
        self.api.move_account(
            AccountId=account, SourceParentId=self.parent(account), DestinationParentId=to
        )


class Clock:
    """A fake clock: `clock()` is the monotonic one, `wall()` the wall clock, moving together
    (every container of a test shares them, as containers share real time)."""

    EPOCH = datetime(2026, 12, 1, 5, 0, tzinfo=UTC)

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def wall(self) -> datetime:
        return self.EPOCH + timedelta(seconds=self.t)

    def advance(self, seconds: float) -> None:
        self.t += seconds


class Calls:
    """Organizations operations and HTTP sends (retries included) seen on one client."""

    def __init__(self, client: Any) -> None:
        self.operations: Counter[str] = Counter()
        self.sends = 0
        client.meta.events.register("before-call.organizations", self._call)
        client.meta.events.register("before-send.organizations", self._send)

    def _call(self, model: Any, **_: Any) -> None:
        self.operations[model.name] += 1

    def _send(self, **_: Any) -> None:
        self.sends += 1

    @property
    def total(self) -> int:
        return sum(self.operations.values())

    def reset(self) -> None:
        self.operations.clear()
        self.sends = 0


Factory = Callable[..., tuple[OrganizationsDirectory, "Calls"]]
