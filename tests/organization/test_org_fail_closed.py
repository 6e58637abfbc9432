"""Fail closed: whatever keeps Organizations from being read (throttled after retries, access
denied, Organizations not in use, the endpoint unreachable, a malformed answer), the directory
never raises: every asked account is UNKNOWN with a clear reason, members() is None and
refresh() reports the error. The role is assumed with session name 'vpce-approver' and
refreshed before it expires; credentials never reach the logs."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import boto3
import botocore.credentials
import botocore.endpoint
import pytest
from botocore.awsrequest import AWSResponse
from moto.core import enable_iam_authentication

from vpce_approver.config import Settings
from vpce_approver.model import MemberState
from vpce_approver.organization import (
    organizations_client,
    organizations_region,
)

from .orgkit import MANAGEMENT, Clock, Factory, Org

STRANGER = "999999999999"


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


class Throttle:
    """Answers the chosen Organizations operations with HTTP 400 TooManyRequestsException, the
    way Organizations does, below botocore's retry handler (so its retries are exercised)."""

    def __init__(self, client: Any, operations: set[str] | None = None) -> None:
        self.operations = operations
        self.on = True
        self.sends = 0
        client.meta.events.register("before-send.organizations", self._send)

    def _send(self, request: Any, **_: Any) -> AWSResponse | None:
        target = request.headers.get("X-Amz-Target", b"")
        operation = (target.decode() if isinstance(target, bytes) else target).split(".")[-1]
        if not self.on or (self.operations is not None and operation not in self.operations):
            return None
        self.sends += 1
        body = json.dumps(
            {"__type": "TooManyRequestsException", "Message": "AWS Organizations can't..."}
        ).encode()
        return AWSResponse(
            request.url, 400, {"Content-Type": "application/x-amz-json-1.1"}, _Raw(body)
        )


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """botocore's retry backoff, recorded instead of slept."""
    slept: list[float] = []
    monkeypatch.setattr(botocore.endpoint.time, "sleep", slept.append)
    return slept


def test_throttled_after_retries_is_unknown_with_the_reason(
    org: Org,
    make_directory: Factory,
    clock: Clock,
    no_backoff: list[float],
    caplog: pytest.LogCaptureFixture,
    recorder: Any,
):
    ou = org.ou("prod")
    account = org.account(ou)
    directory, calls = make_directory(metrics=recorder)
    throttle = Throttle(directory.client)

    with caplog.at_level(logging.WARNING, logger="vpce_approver.organization"):
        got = directory.memberships([account, STRANGER])
        assert directory.members(ou) is None
        change = directory.refresh()

    for membership in got.values():
        assert membership.state is MemberState.UNKNOWN
        assert "throttling" in (membership.error or "")
        assert "TooManyRequestsException" in (membership.error or "")
    assert change.error is not None
    assert "throttling" in change.error
    assert not change.changed
    # botocore retried each call (the production config: 5 attempts, with backoff) ...
    attempts = directory.client.meta.config.retries["total_max_attempts"]
    assert attempts == 4
    assert throttle.sends == 2 * attempts  # the first read, and refresh's (members() backed off)
    assert len(no_backoff) >= attempts - 1
    # ... then gave up; one log line for the kind, a metric per failed read
    assert [r.getMessage() for r in caplog.records].count(
        f"AWS Organizations unreadable: {got[account].error}"
    ) == 1
    assert recorder.values["OrganizationsReadFailures"] == 2

    # Within the backoff nothing more is sent; once Organizations answers, so does the directory.
    throttle.on = False
    calls.reset()
    assert directory.memberships([account])[account].state is MemberState.UNKNOWN
    assert calls.total == 0
    clock.advance(directory.error_backoff)
    assert directory.memberships([account])[account].path == (ou,)


def test_a_throttle_in_the_middle_of_the_tree_keeps_no_partial_tree(
    org: Org, make_directory: Factory, no_backoff: list[float]
):
    ou = org.ou("prod")
    account = org.account(ou)
    directory, _ = make_directory()
    Throttle(directory.client, {"ListAccountsForParent"})

    got = directory.memberships([account, MANAGEMENT])

    assert {m.state for m in got.values()} == {MemberState.UNKNOWN}
    assert directory.members(org.id) is None


def test_a_throttled_lookup_leaves_only_the_stranger_unknown(
    org: Org, make_directory: Factory, no_backoff: list[float]
):
    account = org.account(org.ou("prod"))
    directory, _ = make_directory()
    directory.memberships([account])  # warm
    Throttle(directory.client, {"ListParents"})

    got = directory.memberships([account, STRANGER, "888888888888"])

    assert got[account].state is MemberState.MEMBER
    assert got[STRANGER].state is MemberState.UNKNOWN
    assert got["888888888888"].state is MemberState.UNKNOWN  # not tried: the first failed
    assert "throttling" in (got[STRANGER].error or "")


def test_organizations_not_in_use_is_unknown(settings: Settings, make_directory: Factory):
    directory, _ = make_directory()  # no organization was created

    got = directory.memberships([MANAGEMENT])[MANAGEMENT]

    assert got.state is MemberState.UNKNOWN
    assert "not in use" in (got.error or "")
    assert directory.refresh().error == got.error


def test_an_unreachable_endpoint_is_unknown(
    org: Org, settings: Settings, make_directory: Factory, no_backoff: list[float]
):
    directory, _ = make_directory(replace(settings, endpoint_url="http://127.0.0.1:9"))

    got = directory.memberships([MANAGEMENT])[MANAGEMENT]

    assert got.state is MemberState.UNKNOWN
    assert "unreachable" in (got.error or "")
    assert directory.members(org.id) is None


def test_a_malformed_answer_is_unknown(org: Org, make_directory: Factory):
    directory, _ = make_directory()

    def bad_root(**_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        response = AWSResponse("https://organizations", 200, {}, _Raw(b"{}"))
        return response, {"Roots": [{"Id": "r-../../x"}]}

    directory.client.meta.events.register("before-call.organizations.ListRoots", bad_root)

    got = directory.memberships([MANAGEMENT])[MANAGEMENT]

    assert got.state is MemberState.UNKNOWN
    assert "malformed root ID" in (got.error or "")


# --- the role --------------------------------------------------------------------------------


ORG_READ = ["organizations:DescribeOrganization", "organizations:List*"]
ORG_READ += ["organizations:DescribeAccount"]


@pytest.fixture
def iam_roles(org: Org, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The deployment runs as an IAM user allowed to assume two roles: one that may read
    Organizations, one that may not. Credentials are that user's (moto enforces IAM)."""
    iam = boto3.client("iam", region_name="us-east-1")
    iam.create_user(UserName="deployment")
    iam.put_user_policy(
        UserName="deployment",
        PolicyName="assume",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"},
                    {"Effect": "Allow", "Action": "dynamodb:*", "Resource": "*"},  # its tables
                ],
            }
        ),
    )
    key = iam.create_access_key(UserName="deployment")["AccessKey"]
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{MANAGEMENT}:user/deployment"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    roles = {}
    for name, actions in (("OrgRead", ORG_READ), ("NoOrg", ["ec2:DescribeVpcs"])):
        roles[name] = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))[
            "Role"
        ]["Arn"]
        iam.put_role_policy(
            RoleName=name,
            PolicyName="read",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}],
                }
            ),
        )
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_SECURITY_TOKEN", raising=False)
    return roles


def _assumed() -> list[Any]:
    from moto.sts.models import sts_backends

    return list(sts_backends[MANAGEMENT]["global"].assumed_roles)


def test_a_role_without_organizations_permissions_is_access_denied(
    org: Org,
    settings: Settings,
    make_directory: Factory,
    iam_roles: dict[str, str],
    caplog: pytest.LogCaptureFixture,
):
    directory, _ = make_directory(replace(settings, organizations_role_arn=iam_roles["NoOrg"]))
    # What the deployment logs (its own loggers at DEBUG, the libraries' at INFO) never holds
    # a secret key (botocore's own DEBUG wire log would: keep it off in production).
    with (
        enable_iam_authentication(),
        caplog.at_level(logging.INFO),
        caplog.at_level(logging.DEBUG, logger="vpce_approver"),
    ):
        got = directory.memberships([MANAGEMENT])[MANAGEMENT]
        refreshed = directory.refresh(record=False)

    assert got.state is MemberState.UNKNOWN
    assert "access to AWS Organizations denied" in (got.error or "")
    assert refreshed.error is not None
    assert "denied" in refreshed.error
    assert [(r.role_arn, r.session_name) for r in _assumed()] == [
        (iam_roles["NoOrg"], "vpce-approver")
    ]
    secrets = [r.secret_access_key for r in _assumed()] + [os.environ["AWS_SECRET_ACCESS_KEY"]]
    assert not any(secret in caplog.text for secret in secrets)


def test_the_role_is_assumed_and_refreshed_before_it_expires(
    org: Org,
    settings: Settings,
    make_directory: Factory,
    iam_roles: dict[str, str],
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
):
    account = org.account(org.ou("prod"))
    directory, _ = make_directory(replace(settings, organizations_role_arn=iam_roles["OrgRead"]))
    with enable_iam_authentication():
        assert directory.memberships([account])[account].state is MemberState.MEMBER
        assert len(_assumed()) == 1
        clock.advance(directory.max_age)
        directory.memberships([account])
        assert len(_assumed()) == 1  # the credentials are reused

        # 55 minutes later (an hour's credentials): botocore assumes the role again first.
        later = botocore.credentials._local_now() + timedelta(minutes=55)
        monkeypatch.setattr(botocore.credentials, "_local_now", lambda: later)
        clock.advance(directory.max_age)
        assert directory.memberships([account])[account].state is MemberState.MEMBER
    # (moto's credentials expire an hour after its own clock: from then on every call is
    # within botocore's refresh window, and each one assumes the role again)
    assert len(_assumed()) >= 2
    assert {r.session_name for r in _assumed()} == {"vpce-approver"}


def test_organizations_is_called_in_the_partitions_region(settings: Settings):
    assert organizations_region("eu-west-1") == "us-east-1"
    assert organizations_region("cn-north-1") == "cn-northwest-1"
    assert organizations_region("us-gov-east-1") == "us-gov-west-1"
    client = organizations_client(replace(settings, region="eu-central-1", endpoint_url=None))
    assert client.meta.endpoint_url == "https://organizations.us-east-1.amazonaws.com"
    assert client.meta.config.retries["mode"] == "adaptive"
    local = organizations_client(replace(settings, endpoint_url="http://localhost:4566"))
    assert local.meta.endpoint_url == "http://localhost:4566"
