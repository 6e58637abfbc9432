"""`vpce-approver local` with AWS Organizations: the provider account is the management account,
the Organizations calls work against the server, a created account connects as a consumer, and
each account-lifecycle call is one terminal line followed by a sweep."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from botocore.exceptions import ClientError

from vpce_approver.membership import MembershipChange
from vpce_tools import local
from vpce_tools.emulator import organizations
from vpce_tools.emulator.testing import fake_credentials
from vpce_tools.emulator.world import Organization, Provider
from vpce_tools.local_events import EventLog, describe_organization_event


def wait_for(predicate: Callable[[], object], attempts: int = 300) -> bool:
    for _ in range(attempts):  # bounded: 300 x 50 ms
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def watched() -> Iterator[tuple[local.LocalService, io.StringIO]]:
    out = io.StringIO()
    with fake_credentials():
        service = local.start(0, poll_interval=0.05, events=EventLog(out))  # no timed sweep
        try:
            yield service, out
        finally:
            service.stop()


def the_organization(provider: Provider) -> Organization:
    """The provider's organization: made here, or by an earlier test (the tests in one process
    share the emulator's state, as every server started in it does)."""
    try:
        return provider.create_organization()
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "AlreadyInOrganizationException":
            raise
    client = provider.client("organizations")
    organization = client.describe_organization()["Organization"]["Id"]
    return Organization(client, organization, client.list_roots()["Roots"][0]["Id"])


def lines(out: io.StringIO, kind: str) -> list[str]:
    return [line for line in out.getvalue().splitlines() if line[9:].startswith(kind)]


def test_local_runs_with_organization_grants_and_a_short_membership_max_age() -> None:
    with fake_credentials():
        running = local.start(0, poll_interval=0.05, events=EventLog(io.StringIO()))
        try:
            settings = running.deployment.settings
            deps = running.deployment.deps()  # what every handler here is built with
            banner = io.StringIO()
            local.banner(running, banner)
            org = local.organization_id(running.deployment.provider)
        finally:
            running.stop()
    assert settings.organization_grants is True
    assert deps.settings.organization_grants is True
    assert settings.membership_max_age == local.MEMBERSHIP_MAX_AGE
    assert local.MEMBERSHIP_MAX_AGE <= 10  # snappy: a move shows within seconds
    text = banner.getvalue()
    assert f"trusted {local.MEMBERSHIP_MAX_AGE} s (MEMBERSHIP_MAX_AGE)" in text
    assert f"export ORGANIZATION_GRANTS=true MEMBERSHIP_MAX_AGE={local.MEMBERSHIP_MAX_AGE}" in text
    assert "MoveAccount" in text
    assert org is not None  # made at start, as a deployment with OrganizationGrants has one
    assert re.search(rf"organization       {org} \(root r-[0-9a-z]+\): this account is its", text)
    # stopped, it no longer hears the emulator's Organizations events
    organizations._publish(organizations.event("123456789012", "CloseAccount"))
    assert not running._organization_changed.is_set()


def test_organizations_calls_work_and_a_created_account_connects(
    watched: tuple[local.LocalService, io.StringIO],
) -> None:
    running, out = watched
    provider = Provider(endpoint_url=running.url)
    org = the_organization(provider)
    described = org.client.describe_organization()["Organization"]
    assert described["MasterAccountId"] == provider.account_id == "123456789012"

    workloads = org.create_ou(f"workloads-{time.monotonic_ns()}")
    prod = org.create_ou("prod", workloads)
    account = org.create_account("team-b")
    org.move(account, prod)
    assert org.client.list_parents(ChildId=account)["Parents"][0]["Id"] == prod
    assert [a["Id"] for a in org.client.list_accounts_for_parent(ParentId=prod)["Accounts"]] == [
        account
    ]
    ous = org.client.list_organizational_units_for_parent(ParentId=workloads)
    assert [ou["Id"] for ou in ous["OrganizationalUnits"]] == [prod]

    # one line per lifecycle event, each followed by a sweep (the fixture has no timed sweep)
    created = f"CreateAccount {account}: SUCCEEDED, in the root (a sweep follows)"
    moved = f"MoveAccount {account}: {org.root_id} -> {prod} (a sweep follows)"
    assert wait_for(lambda: any(moved in x for x in lines(out, "org"))), out.getvalue()
    assert any(created in x for x in lines(out, "org")), out.getvalue()

    def swept_after_the_move() -> bool:
        text = out.getvalue()
        return " sweep " in text[text.index(moved) :]  # a sweep may also follow CreateAccount

    assert wait_for(swept_after_the_move), out.getvalue()

    # the brand-new account acts as a consumer (here allowed by hand; an OU grant does it too)
    consumer = provider.consumer(account, role_name="OrganizationAccountAccessRole")
    provider.allow(running.service.service_id, f"arn:aws:iam::{account}:root")
    vpce = consumer.create_endpoint(running.service.service_name)
    assert wait_for(lambda: any(vpce in x and account in x for x in lines(out, "decision")))
    [conn] = [c for c in provider.connections() if c["VpcEndpointId"] == vpce]
    assert conn["VpcEndpointOwner"] == account


def test_an_ou_grant_onboards_a_created_account_and_a_move_out_offboards_it(
    watched: tuple[local.LocalService, io.StringIO],
) -> None:
    """The README walkthrough's story through boto3: no registry edit for the new account, the
    Organizations events start the sweeps, the terminal says each step."""
    from vpce_approver.model import Grant, GrantStatus

    running, out = watched
    provider = Provider(endpoint_url=running.url)
    svc = running.service
    org = the_organization(provider)
    workloads = org.create_ou(f"workloads-{time.monotonic_ns()}")
    prod = org.create_ou("prod", workloads)
    running.deployment.deps().registry.put(
        Grant(svc.service_id, workloads, GrantStatus.ALLOW), by="test", now=datetime.now(UTC)
    )
    account = org.create_account("team-b")
    org.move(account, prod)
    principal = f"arn:aws:iam::{account}:root"
    assert wait_for(lambda: any(principal in x for x in lines(out, "allow-list"))), out.getvalue()
    joined = f"{account} joined"  # the sweep the events start (the grant's stream may list it)
    assert wait_for(lambda: any(joined in x for x in lines(out, "membership"))), out.getvalue()

    consumer = provider.consumer(account, role_name="OrganizationAccountAccessRole")
    vpce = consumer.create_endpoint(svc.service_name)

    def decided() -> list[str]:
        return [x for x in lines(out, "decision") if vpce in x]

    assert wait_for(decided), out.getvalue()
    [decision] = decided()
    assert "accept [allowed]" in decision
    assert f"allowed by grant {svc.service_id}/{workloads} (path o-" in decision
    assert decision.endswith(f" / {workloads} / {prod})")
    assert wait_for(lambda: consumer.endpoint_state(vpce) == "available")

    moved = out.getvalue().count(f"{account} moved")
    org.move(account, org.root_id)
    assert wait_for(lambda: out.getvalue().count(f"{account} moved") > moved), out.getvalue()
    assert wait_for(
        lambda: any("removed" in x and principal in x for x in lines(out, "allow-list"))
    ), out.getvalue()
    with pytest.raises(ClientError) as refused:
        consumer.create_endpoint(svc.service_name)
    assert refused.value.response["Error"]["Code"] == "InvalidServiceName"
    assert consumer.endpoint_state(vpce) == "available"  # revocation is opt-in


def test_event_lines_say_what_happened_to_which_account() -> None:
    management = "123456789012"
    create = organizations.event(
        management,
        "CreateAccountResult",
        service_details={
            "createAccountStatus": {"accountId": "210987654321", "state": "SUCCEEDED"}
        },
    )
    move = organizations.event(
        management,
        "MoveAccount",
        request={
            "accountId": "210987654321",
            "sourceParentId": "r-ab12",
            "destinationParentId": "ou-ab12-cdefghij",
        },
    )
    close = organizations.event(management, "CloseAccount", request={"accountId": "210987654321"})
    assert (
        describe_organization_event(create) == "CreateAccount 210987654321: SUCCEEDED, in the root"
    )
    assert (
        describe_organization_event(move) == "MoveAccount 210987654321: r-ab12 -> ou-ab12-cdefghij"
    )
    assert describe_organization_event(close) == "CloseAccount 210987654321"
    assert describe_organization_event({"detail": "garbage"}) == "event ?"

    out = io.StringIO()
    log = EventLog(out, clock=lambda: datetime(2026, 12, 1, 5, 0, 0, tzinfo=UTC))
    log.membership(
        MembershipChange(joined=("210987654321",), left=("111111111111",), moved=(), epoch=3)
    )
    log.membership(MembershipChange(error="TooManyRequestsException", epoch=3))
    log.organization(move)
    assert out.getvalue().splitlines() == [
        "05:00:00 membership  210987654321 joined (epoch 3)",
        "05:00:00 membership  111111111111 left (epoch 3)",
        "05:00:00 membership  organization not read: TooManyRequestsException (nothing changed)",
        "05:00:00 org         MoveAccount 210987654321: r-ab12 -> ou-ab12-cdefghij"
        " (a sweep follows)",
    ]


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return subprocess.run(
        [sys.executable, "-m", "vpce_tools.cli", "local", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def test_local_help_says_organization_grants_are_on_and_how_fresh_membership_is() -> None:
    result = _cli("--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "OU/organization grants are on" in text
    assert "management account" in text
    assert "--membership-max-age SECONDS" in text
    assert "(default: 5)" in text
    bad = _cli("--membership-max-age", "5000", "--port", "0", "--slack-port", "0")
    assert bad.returncode == 2
    assert "--membership-max-age must be 0..3600 seconds" in bad.stderr


def test_with_no_organization_the_banner_says_how_to_make_one_and_what_fails_meanwhile() -> None:
    """`--no-organization`: nothing made at start (a fresh emulator: no organization yet)."""
    from types import SimpleNamespace
    from typing import Any, cast

    from vpce_approver.config import Settings
    from vpce_tools.emulator.testing import emulated_aws

    with emulated_aws():
        provider = Provider()
        deployment = SimpleNamespace(
            provider=provider,
            topic_arn="arn:aws:sns:us-east-1:123456789012:t",
            settings=Settings(organization_grants=True, membership_max_age=5),
        )
        service = SimpleNamespace(service_id="vpce-svc-0123456789abcdef0", service_name="n")
        fake = SimpleNamespace(url="u", slack_url="s", service=service, deployment=deployment)
        out = io.StringIO()
        local.banner(cast(Any, fake), out)
    text = " ".join(out.getvalue().split())
    assert (
        "organization none yet (--no-organization): `aws organizations create-organization`" in text
    )
    assert "OU grants and Slack approvals fail closed" in text
