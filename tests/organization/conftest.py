"""Fixtures of the AWS Organizations adapter tests: an organization in moto (the deployment's
account, 123456789012, is its management account), the deployment's tables bound, a fake clock
and directories whose Organizations calls are counted independently of the adapter."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from vpce_approver.config import Settings
from vpce_approver.organization import OrganizationsDirectory, organizations_client
from vpce_approver.organization_epoch import EpochStore
from vpce_approver.runtime import bind_tables
from vpce_tools.stack import LocalDeployment

from .orgkit import Calls, Clock, Factory, Org


@pytest.fixture
def settings(deployment: LocalDeployment) -> Settings:
    bind_tables(deployment.settings)
    return replace(deployment.settings, organization_grants=True)


@pytest.fixture
def org(settings: Settings) -> Org:
    return Org()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_directory(settings: Settings, clock: Clock) -> Factory:
    """A directory as runtime.build() would make one (another call: another container)."""

    def make(
        settings_: Settings | None = None, client: Any = None, **kwargs: Any
    ) -> tuple[OrganizationsDirectory, Calls]:
        client = client or organizations_client(settings_ or settings)
        kwargs.setdefault("max_age", (settings_ or settings).membership_max_age)
        kwargs.setdefault("epochs", EpochStore())
        kwargs.setdefault("clock", clock)
        kwargs.setdefault("now", clock.wall)
        return OrganizationsDirectory(client, **kwargs), Calls(client)

    return make
