"""AWS Organizations in the emulator: every response matches botocore's model (the autouse raw
check in conftest.py walks each JSON body), a created account acts as a consumer, the checks AWS
makes on placing an account, account-lifecycle events, and reset."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from botocore.exceptions import ClientError

from vpce_tools.emulator import organizations
from vpce_tools.emulator.testing import emulated_aws, emulator_server, fake_credentials
from vpce_tools.emulator.world import EndpointService, Organization, Provider

from .conftest import RawChecks
from .strict_json import check_json_response

WALKTHROUGH = {
    "CreateOrganization",
    "DescribeOrganization",
    "ListRoots",
    "CreateOrganizationalUnit",
    "ListOrganizationalUnitsForParent",
    "CreateAccount",
    "DescribeCreateAccountStatus",
    "MoveAccount",
    "ListParents",
    "ListAccountsForParent",
    "ListChildren",
    "DescribeAccount",
    "DescribeOrganizationalUnit",
    "ListAccounts",
    "CloseAccount",
    "RemoveAccountFromOrganization",
}


@pytest.fixture
def org(provider: Provider) -> Organization:
    return provider.create_organization()


@pytest.fixture
def events() -> Iterator[list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []
    organizations.add_listener(seen.append)
    yield seen
    organizations.remove_listener(seen.append)


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def test_every_call_the_walkthrough_and_the_adapter_make_matches_the_model(
    provider: Provider, org: Organization, raw_xml_checks: RawChecks
) -> None:
    client = org.client
    workloads = org.create_ou("workloads")
    prod = org.create_ou("prod", workloads)
    status = client.create_account(AccountName="team-b", Email="team-b@example.com")
    request = status["CreateAccountStatus"]["Id"]
    described = client.describe_create_account_status(CreateAccountRequestId=request)
    account = described["CreateAccountStatus"]["AccountId"]
    assert described["CreateAccountStatus"]["State"] == "SUCCEEDED"
    org.move(account, prod)
    other = org.create_account("team-c", parent=workloads)

    assert client.describe_organization()["Organization"]["Id"] == org.organization_id
    assert client.describe_organization()["Organization"]["MasterAccountId"] == (
        provider.account_id
    )
    assert client.list_parents(ChildId=account)["Parents"] == [
        {"Id": prod, "Type": "ORGANIZATIONAL_UNIT"}
    ]
    assert client.list_parents(ChildId=prod)["Parents"][0]["Id"] == workloads
    assert client.list_parents(ChildId=workloads)["Parents"] == [
        {"Id": org.root_id, "Type": "ROOT"}
    ]
    ous = client.list_organizational_units_for_parent(ParentId=org.root_id)
    assert [ou["Id"] for ou in ous["OrganizationalUnits"]] == [workloads]
    listed = client.list_accounts_for_parent(ParentId=prod)["Accounts"]
    assert [(a["Id"], a["Status"]) for a in listed] == [(account, "ACTIVE")]
    children = client.list_children(ParentId=workloads, ChildType="ACCOUNT")["Children"]
    assert children == [{"Id": other, "Type": "ACCOUNT"}]
    assert client.describe_account(AccountId=account)["Account"]["Name"] == "team-b"
    described_ou = client.describe_organizational_unit(OrganizationalUnitId=prod)
    assert described_ou["OrganizationalUnit"]["Name"] == "prod"
    assert {a["Id"] for a in client.list_accounts()["Accounts"]} == {
        provider.account_id,
        account,
        other,
    }
    client.close_account(AccountId=account)
    [closed] = client.list_accounts_for_parent(ParentId=prod)["Accounts"]
    assert closed["Status"] == "SUSPENDED"  # AWS too: a closed account stays, suspended
    client.remove_account_from_organization(AccountId=other)
    assert client.list_accounts_for_parent(ParentId=workloads)["Accounts"] == []
    with pytest.raises(ClientError) as missing:
        client.describe_account(AccountId=other)
    assert _code(missing) == "AccountNotFoundException"

    assert set(raw_xml_checks.checked) >= WALKTHROUGH  # every body above was walked


def test_the_strict_json_check_finds_what_botocore_would_let_pass(
    provider: Provider,
) -> None:
    """The check can fail: unknown keys, wrong JSON types, bad enums and timestamps, nulls."""
    model = provider.client("organizations").meta.service_model
    parents = model.operation_model("ListParents")
    good = b'{"Parents": [{"Id": "ou-ab12-abcdefgh", "Type": "ORGANIZATIONAL_UNIT"}]}'
    assert check_json_response(parents, 200, good) == []
    bad = b'{"Parents": [{"Id": 7, "Type": "FOLDER", "Extra": 1}], "NextToken": null}'
    problems = check_json_response(parents, 200, bad, allow_null=False)
    assert len(problems) == 4, problems
    assert any("int where string" in p for p in problems)
    assert any("'FOLDER' is not one of" in p for p in problems)
    assert any("Extra: not in shape" in p for p in problems)
    assert any("null" in p for p in problems)
    account = model.operation_model("DescribeAccount")
    when = b'{"Account": {"JoinedTimestamp": "yesterday", "Status": "ACTIVE"}}'
    assert ["is not a timestamp" in p for p in check_json_response(account, 200, when)] == [True]
    assert check_json_response(account, 400, b'{"message": "no type"}') == [
        "DescribeAccount: error without __type"
    ]


def test_a_created_account_acts_as_a_consumer(
    provider: Provider, org: Organization, service: EndpointService
) -> None:
    """A brand-new account is usable at once: AssumeRole into it (the
    OrganizationAccountAccessRole AWS creates in it, or any role) and connect."""
    ec2 = provider.client("ec2")
    ec2.modify_vpc_endpoint_service_permissions(
        ServiceId=service.service_id, RemoveAllowedPrincipals=["*"]
    )
    account = org.create_account("team-b", parent=org.create_ou("workloads"))
    consumer = provider.consumer(account, role_name="OrganizationAccountAccessRole")
    assert consumer.client("sts").get_caller_identity()["Account"] == account
    with pytest.raises(ClientError) as refused:  # not on the allow-list yet
        consumer.create_endpoint(service.service_name)
    assert _code(refused) == "InvalidServiceName"
    provider.allow(service.service_id, f"arn:aws:iam::{account}:root")
    vpce = consumer.create_endpoint(service.service_name)
    [conn] = provider.connections(service.service_id)
    assert (conn["VpcEndpointId"], conn["VpcEndpointOwner"]) == (vpce, account)
    assert conn["VpcEndpointState"] == "pendingAcceptance"
    iam = consumer.client("iam")
    role = iam.get_role(RoleName="OrganizationAccountAccessRole")["Role"]
    assert f"arn:aws:iam::{provider.account_id}:root" in str(role["AssumeRolePolicyDocument"])


def test_placing_an_account_is_checked_as_aws_checks_it(provider: Provider) -> None:
    client = provider.client("organizations")
    with pytest.raises(ClientError) as no_org:
        client.create_organizational_unit(ParentId="r-abcd", Name="workloads")
    assert _code(no_org) == "AWSOrganizationsNotInUseException"  # moto: HTTP 500
    with pytest.raises(ClientError) as no_org_move:
        client.move_account(
            AccountId="111111111111", SourceParentId="r-abcd", DestinationParentId="r-abcd"
        )
    assert _code(no_org_move) == "AWSOrganizationsNotInUseException"

    org = provider.create_organization()
    with pytest.raises(ClientError) as no_parent:
        client.create_organizational_unit(ParentId="ou-zzzz-zzzzzzzz", Name="orphan")
    assert _code(no_parent) == "ParentNotFoundException"  # moto: creates an orphan OU
    assert (
        client.list_organizational_units_for_parent(ParentId=org.root_id)["OrganizationalUnits"]
        == []
    )
    workloads, sandbox = org.create_ou("workloads"), org.create_ou("sandbox")
    account = org.create_account("team-b", parent=workloads)

    def move(source: str, destination: str, who: str = account) -> str:
        with pytest.raises(ClientError) as refused:
            client.move_account(
                AccountId=who, SourceParentId=source, DestinationParentId=destination
            )
        return _code(refused)

    # moto moved it from wherever it was: the source must be the account's parent
    assert move(org.root_id, sandbox) == "SourceParentNotFoundException"
    assert move("ou-zzzz-zzzzzzzz", sandbox) == "SourceParentNotFoundException"
    assert move(workloads, "ou-zzzz-zzzzzzzz") == "DestinationParentNotFoundException"
    assert move(workloads, workloads) == "DuplicateAccountException"  # moto: a silent no-op
    assert move(workloads, sandbox, who="000000000000") == "AccountNotFoundException"
    assert org.parent_of(account) == workloads  # nothing moved
    org.move(account, sandbox)  # a valid move is moto's own
    assert org.parent_of(account) == sandbox

    # an account outside the organization (an external partner): AWS says ChildNotFound
    for child in ("111111111111", "ou-zzzz-zzzzzzzz"):
        with pytest.raises(ClientError) as outside:
            client.list_parents(ChildId=child)
        assert _code(outside) == "ChildNotFoundException"  # moto: Account/OU NotFound


def test_list_parents_without_an_organization(provider: Provider) -> None:
    with pytest.raises(ClientError) as no_org:
        provider.client("organizations").list_parents(ChildId="111111111111")
    assert _code(no_org) == "AWSOrganizationsNotInUseException"  # moto: AccountNotFound


def test_a_member_account_may_not_read_or_change_the_tree(
    provider: Provider, org: Organization
) -> None:
    """Only the management account (or a delegated administrator) may: a member is denied,
    where moto answered from the member's own empty backend."""
    workloads = org.create_ou("workloads")
    account = org.create_account("team-b", parent=workloads)
    member = provider.consumer(account).client("organizations")
    assert member.describe_organization()["Organization"]["Id"] == org.organization_id
    for call in (
        lambda: member.list_parents(ChildId=account),
        lambda: member.create_organizational_unit(ParentId=org.root_id, Name="mine"),
        lambda: member.move_account(
            AccountId=account, SourceParentId=workloads, DestinationParentId=org.root_id
        ),
    ):
        with pytest.raises(ClientError) as denied:
            call()
        assert _code(denied) == "AccessDeniedException"
    assert org.parent_of(account) == workloads
    # a delegated administrator may read (moto: from its own, empty backend; not emulated)
    org.client.register_delegated_administrator(
        AccountId=account, ServicePrincipal="ssm.amazonaws.com"
    )
    with pytest.raises(ClientError) as not_emulated:
        member.list_parents(ChildId=account)
    assert _code(not_emulated) == "AccountNotFoundException"  # moto's answer, kept


def test_account_lifecycle_calls_publish_their_eventbridge_events(
    provider: Provider, org: Organization, events: list[dict[str, Any]]
) -> None:
    workloads = org.create_ou("workloads")
    assert events == []  # creating an OU is not an account-lifecycle event
    account = org.create_account("team-b")
    org.move(account, workloads)
    with pytest.raises(ClientError):
        org.client.move_account(
            AccountId=account, SourceParentId=org.root_id, DestinationParentId=workloads
        )
    leaving = org.create_account("team-c")
    org.client.remove_account_from_organization(AccountId=leaving)
    org.close(account)

    names = [e["detail"]["eventName"] for e in events]
    assert names == [
        "CreateAccountResult",
        "MoveAccount",
        "CreateAccountResult",
        "RemoveAccountFromOrganization",
        "CloseAccount",
    ]  # the refused move published nothing
    for e in events:
        assert e["source"] == "aws.organizations"
        assert e["account"] == provider.account_id
        assert e["region"] == "us-east-1"
        assert e["detail"]["eventSource"] == "organizations.amazonaws.com"
    created, moved, _, removed, closed = events
    assert created["detail-type"] == "AWS Service Event via CloudTrail"
    status = created["detail"]["serviceEventDetails"]["createAccountStatus"]
    assert (status["accountId"], status["state"]) == (account, "SUCCEEDED")
    assert moved["detail-type"] == "AWS API Call via CloudTrail"
    assert moved["detail"]["requestParameters"] == {
        "accountId": account,
        "sourceParentId": org.root_id,
        "destinationParentId": workloads,
    }
    assert removed["detail"]["requestParameters"] == {"accountId": leaving}
    assert closed["detail"]["requestParameters"] == {"accountId": account}


def test_a_failing_listener_never_fails_the_call(provider: Provider, org: Organization) -> None:
    def broken(event: dict[str, Any]) -> None:
        raise RuntimeError("listener bug")

    organizations.add_listener(broken)
    try:
        account = org.create_account("team-b", parent=org.create_ou("workloads"))
    finally:
        organizations.remove_listener(broken)
    assert org.parent_of(account) != org.root_id


def test_a_reset_forgets_the_members_of_the_organization_it_wiped() -> None:
    """moto kept its member -> management map across resets: a former member's
    DescribeOrganization then raised AttributeError instead of answering."""
    with emulated_aws():
        provider = Provider()
        account = provider.create_organization().create_account("team-b")
        member = provider.consumer(account).client("organizations")
        assert member.describe_organization()["Organization"]["MasterAccountId"] == (
            provider.account_id
        )
    with emulated_aws():
        member = Provider().consumer(account).client("organizations")
        with pytest.raises(ClientError) as gone:
            member.describe_organization()
        assert _code(gone) == "AWSOrganizationsNotInUseException"


def test_the_server_routes_organizations_and_a_created_account_connects() -> None:
    with emulator_server() as url, fake_credentials():
        provider = Provider(endpoint_url=url)
        service = provider.create_service(acceptance_required=True, allowed_principals=())
        org = provider.create_organization()
        account = org.create_account("team-b", parent=org.create_ou("workloads"))
        provider.allow(service.service_id, f"arn:aws:iam::{account}:root")
        vpce = provider.consumer(account).create_endpoint(service.service_name)
        [conn] = provider.connections(service.service_id)
        assert (conn["VpcEndpointId"], conn["VpcEndpointOwner"]) == (vpce, account)
        assert org.client.list_parents(ChildId=account)["Parents"][0]["Type"] == (
            "ORGANIZATIONAL_UNIT"
        )


def _matches(pattern: Mapping[str, Any], event: Any) -> bool:
    """EventBridge matching for lists of exact values and nested objects (the rule's forms)."""
    if not isinstance(event, Mapping):
        return False
    for key, expected in pattern.items():
        value = event.get(key)
        if isinstance(expected, Mapping):
            if not _matches(expected, value):
                return False
        elif not any(v in expected for v in (value if isinstance(value, list) else [value])):
            return False
    return True


def test_the_events_match_the_deployed_organization_events_rule(
    org: Organization, events: list[dict[str, Any]]
) -> None:
    """What the emulator publishes is what the template's OrganizationEventsRule listens for,
    so `vpce-approver local` sweeps on the same events a deployment does."""
    from vpce_tools import template

    rule = template.load()["Resources"]["OrganizationEventsRule"]["Properties"]["EventPattern"]
    assert not _matches(rule, {"source": "aws.ec2", "detail": {}})  # the matcher can say no
    account = org.create_account("team-b", parent=org.create_ou("workloads"))
    leaving = org.create_account("team-c")
    org.client.remove_account_from_organization(AccountId=leaving)
    org.close(account)
    names = {e["detail"]["eventName"] for e in events}
    assert names == {
        "CreateAccountResult",
        "MoveAccount",
        "RemoveAccountFromOrganization",
        "CloseAccount",
    }
    for e in events:
        assert _matches(rule, e), e
