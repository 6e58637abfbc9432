"""OU / organization grants in template.yaml (issue 15): the parameters and their Rules, the
environment of every function that decides or reconciles, least-privilege IAM in each mode (off,
reading Organizations with the function roles, reading through a role in the management account)
for the functions and for the people who run explain / pending / doctor, the optional
Organizations event rule, and the documented reader role and forwarding rule (docs).

Every Organizations operation of botocore's model is tried against every function's role, so a
mutating or unneeded action granted by mistake (or by a wildcard) fails here."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import botocore.session
import pytest

from vpce_approver import runtime
from vpce_approver.config import ConfigError, Settings
from vpce_approver.handlers import sweep as sweep_handler
from vpce_tools import policies
from vpce_tools import template as cfn_template
from vpce_tools.commands import invoke
from vpce_tools.emulator.world import Provider
from vpce_tools.stack import LocalDeployment

from .conftest import EVENTS, ROOT, SLACK_TEST_SIGNING_SECRET, CallRecorder, World
from .test_deploy_rules import failed_rules
from .test_function_permissions import context_for, succeeded

SOURCE = cfn_template.load()
PARAMETERS: Mapping[str, Any] = SOURCE["Parameters"]
FUNCTIONS = invoke.function_ids(SOURCE)
STACK, REGION, ACCOUNT = policies.STACK, policies.REGION, policies.ACCOUNT
MANAGEMENT = "999999999999"
ROLE = f"arn:aws:iam::{MANAGEMENT}:role/vpce-approver-organizations-read"
# The functions that decide or reconcile (their Deps read memberships): the notification path,
# the registry stream, the sweep, and the Slack worker (Approve re-checks the registry). The
# interactivity function only verifies and queues clicks: it never reads the organization.
DECIDERS = (
    "NotificationFunction",
    "RegistryStreamFunction",
    "SweepFunction",
    "SlackWorkerFunction",
)
OFF = dict(policies.FEATURES)
DIRECT = {**OFF, "OrganizationGrants": "true"}
VIA_ROLE = {**DIRECT, "OrganizationsRoleArn": ROLE}
NO_SLACK = {"SlackChannel": "", "SlackBotTokenSecretArn": "", "SlackSigningSecretArn": ""}

# What the Organizations adapter reads, each with the resources it is authorized on (Service
# Authorization Reference, AWS Organizations: DescribeOrganization and ListRoots have no resource
# type; ListAccountsForParent / ListOrganizationalUnitsForParent take root or organizationalunit,
# ListParents account or organizationalunit, DescribeAccount account).
ORG = policies.ORGANIZATION_PLACEHOLDER
ARN = {
    "root": f"arn:aws:organizations::{MANAGEMENT}:root/{ORG}/r-ab12",
    "ou": f"arn:aws:organizations::{MANAGEMENT}:ou/{ORG}/ou-ab12-workload1",
    "account": f"arn:aws:organizations::{MANAGEMENT}:account/{ORG}/444444444444",
    "organization": f"arn:aws:organizations::{MANAGEMENT}:organization/{ORG}",
    "policy": f"arn:aws:organizations::{MANAGEMENT}:policy/{ORG}/service_control_policy/p-ab12cd34",
    "handshake": f"arn:aws:organizations::{MANAGEMENT}:handshake/{ORG}/invite/h-ab12cd34",
    "any": "*",
}
READS = {
    "organizations:DescribeOrganization": ("any",),
    "organizations:ListRoots": ("any",),
    "organizations:ListOrganizationalUnitsForParent": ("root", "ou"),
    "organizations:ListAccountsForParent": ("root", "ou"),
    "organizations:ListParents": ("account", "ou"),
    "organizations:DescribeAccount": ("account",),
}
ALL_ORGANIZATIONS_ACTIONS = sorted(
    f"organizations:{op}"
    for op in botocore.session.get_session().get_service_model("organizations").operation_names
)


def policies_for(transformed: dict[str, Any], **parameters: str) -> dict[str, Any]:
    return policies.function_policies(transformed, **parameters)


def allowed(policy: policies.FunctionPolicy, action: str, resource: str) -> bool:
    return policy.decide(action, resource, {}).allowed


def granted_organizations_actions(policy: policies.FunctionPolicy) -> set[tuple[str, str]]:
    """Every (Organizations action, resource kind) the role allows, tried exhaustively."""
    return {
        (action, kind)
        for action in ALL_ORGANIZATIONS_ACTIONS
        for kind, arn in ARN.items()
        if allowed(policy, action, arn)
    }


# ---------------------------------------------------------------------- parameters and Rules
def test_the_parameters_and_their_defaults_keep_the_feature_off() -> None:
    assert PARAMETERS["OrganizationGrants"]["Default"] == "false"
    assert PARAMETERS["OrganizationEvents"]["Default"] == "false"
    assert PARAMETERS["OrganizationsRoleArn"]["Default"] == ""
    assert PARAMETERS["OrganizationEventsSourceAccount"]["Default"] == ""
    assert failed_rules() == []
    res = policies.resolver(SOURCE)
    for condition in ("OrganizationGrantsOn", "ReadOrganizationsDirectly", "OrganizationEventsOn"):
        assert res.condition(condition) is False


def test_membership_max_age_has_the_bounds_the_functions_accept() -> None:
    """The template refuses what Settings would refuse at cold start (and the other way)."""
    spec = PARAMETERS["MembershipMaxAge"]
    assert (spec["Type"], spec["MinValue"], spec["MaxValue"]) == ("Number", 0, 3600)
    assert spec["Default"] == Settings().membership_max_age == 300
    for ok in (spec["MinValue"], spec["MaxValue"]):
        assert Settings.from_env({"MEMBERSHIP_MAX_AGE": str(ok)}).membership_max_age == ok
    for bad in (spec["MinValue"] - 1, spec["MaxValue"] + 1):
        with pytest.raises(ConfigError):
            Settings.from_env({"MEMBERSHIP_MAX_AGE": str(bad)})


def test_the_role_parameter_takes_an_iam_role_arn_or_nothing() -> None:
    pattern = PARAMETERS["OrganizationsRoleArn"]["AllowedPattern"]
    for ok in (
        "",
        ROLE,
        ROLE.replace("role/", "role/platform/"),
        ROLE.replace(":aws:", ":aws-us-gov:"),
    ):
        assert re.fullmatch(pattern, ok), ok
    for bad in (
        "vpce-approver-organizations-read",  # a name
        f"arn:aws:iam::{MANAGEMENT}:role/*",  # a wildcard would allow assuming any role
        f"arn:aws:iam::{MANAGEMENT}:user/alice",
        "arn:aws:iam::*:role/reader",
        ROLE + " ",
    ):
        assert not re.fullmatch(pattern, bad), bad


def test_each_optional_part_needs_the_feature() -> None:
    [role] = failed_rules(OrganizationsRoleArn=ROLE)
    assert role.startswith("OrganizationsRoleArn is used only with OrganizationGrants=true")
    [events] = failed_rules(OrganizationEvents="true")
    assert events.startswith("OrganizationEvents=true needs OrganizationGrants=true")
    [source] = failed_rules(OrganizationGrants="true", OrganizationEventsSourceAccount=MANAGEMENT)
    assert source.startswith("OrganizationEventsSourceAccount is used only with")
    everything = {
        "OrganizationGrants": "true",
        "OrganizationsRoleArn": ROLE,
        "OrganizationEvents": "true",
        "OrganizationEventsSourceAccount": MANAGEMENT,
        "MembershipMaxAge": "60",
    }
    assert failed_rules(**everything) == []
    assert failed_rules(OrganizationGrants="true") == []


# ---------------------------------------------------------------------- environment
@pytest.mark.parametrize("function", FUNCTIONS)
@pytest.mark.parametrize(
    ("parameters", "grants", "role"),
    [(OFF, False, None), (DIRECT, True, None), (VIA_ROLE, True, ROLE)],
    ids=["off", "direct", "via-role"],
)
def test_every_deciding_function_reads_the_organization_the_same_way(
    function: str, parameters: dict[str, str], grants: bool, role: str | None
) -> None:
    env = invoke.function_spec(
        function, parameters={**parameters, "MembershipMaxAge": "900"}
    ).environment
    settings = Settings.from_env(env)
    if function in DECIDERS:
        assert (settings.organization_grants, settings.organizations_role_arn) == (grants, role)
        assert settings.membership_max_age == 900
    else:
        assert "ORGANIZATION_GRANTS" not in env
        assert not settings.organization_grants


# ---------------------------------------------------------------------- IAM, each mode
def test_nothing_organizations_related_when_the_feature_is_off(
    transformed: dict[str, Any],
) -> None:
    for function, policy in policies_for(transformed, **OFF).items():
        assert granted_organizations_actions(policy) == set(), function
        assert not allowed(policy, "sts:AssumeRole", ROLE), function
        assert not allowed(policy, "sts:AssumeRole", "*"), function
        sources = {s.source for s in policy.statements}
        assert not any(s.endswith("-organizations") for s in sources), function


def test_reading_directly_grants_exactly_the_reads_and_nothing_mutating(
    transformed: dict[str, Any],
) -> None:
    # An action with no resource type is granted on "*", which any resource string matches.
    expected = {
        (action, kind)
        for action, kinds in READS.items()
        for kind in (ARN if kinds == ("any",) else kinds)
    }
    for function, policy in policies_for(transformed, **DIRECT).items():
        granted = granted_organizations_actions(policy)
        if function not in DECIDERS:
            assert granted == set(), function
            continue
        assert granted == expected, (
            f"{function}: extra {sorted(granted - expected)}, missing {sorted(expected - granted)}"
        )
        mutating = {a for a, _ in granted if not a.split(":")[1].startswith(("Describe", "List"))}
        assert mutating == set()
        assert not allowed(policy, "sts:AssumeRole", ROLE)
        assert not allowed(policy, "sts:AssumeRole", "*")


def test_through_a_role_the_functions_may_only_assume_that_role(
    transformed: dict[str, Any],
) -> None:
    others = (
        "*",
        ROLE.replace("organizations-read", "admin"),
        ROLE + "-2",
        ROLE.replace(MANAGEMENT, ACCOUNT),
        f"arn:aws:iam::{MANAGEMENT}:role/OrganizationAccountAccessRole",
    )
    for function, policy in policies_for(transformed, **VIA_ROLE).items():
        assert granted_organizations_actions(policy) == set(), function
        assert allowed(policy, "sts:AssumeRole", ROLE) == (function in DECIDERS), function
        for other in others:
            assert not allowed(policy, "sts:AssumeRole", other), (function, other)
        for statement in policy.statements:
            if any(a.lower().startswith("sts:") for a in statement.actions):
                assert statement.actions == ("sts:AssumeRole",), statement.source
                assert statement.resources == (ROLE,), statement.source
                assert not statement.not_actions
                assert not statement.not_resources


# IAM quota: a role's inline policies may total 10,240 characters (whitespace not counted).
ROLE_INLINE_POLICY_LIMIT = 10_240


@pytest.mark.parametrize("parameters", [OFF, DIRECT, VIA_ROLE], ids=["off", "direct", "via-role"])
def test_every_role_stays_within_the_inline_policy_quota(
    transformed: dict[str, Any], parameters: dict[str, str]
) -> None:
    res = policies.resolver(transformed, **parameters)
    sizes = {
        logical_id: sum(
            len(json.dumps(p["PolicyDocument"], separators=(",", ":")))
            for p in res.resolve(resource["Properties"].get("Policies") or [])
        )
        for logical_id, resource in transformed["Resources"].items()
        if resource["Type"] == "AWS::IAM::Role"
    }
    assert sizes["SweepFunctionRole"] > 1000  # measured, not an empty document
    assert max(sizes.values()) <= ROLE_INLINE_POLICY_LIMIT, sizes


def person_policy(logical_id: str, parameters: Mapping[str, str]) -> policies.FunctionPolicy:
    res = policies.resolver(SOURCE, **parameters)
    document = res.resolve(SOURCE["Resources"][logical_id]["Properties"]["PolicyDocument"])
    statements = [policies.Statement.from_json(s, logical_id) for s in document["Statement"]]
    return policies.FunctionPolicy(logical_id, "-", statements)


# explain / pending / doctor decide as the deployment does (the CLI reads the stack's
# OrganizationGrants and OrganizationsRoleArn): whoever runs them reads the organization the same
# way, through a policy of its own (the people policies stay plain documents checkov can read).
PEOPLE = ("RegistryEditorPolicy", "ServiceEnrollerPolicy", "AuditorPolicy")
EXPLAIN = {"direct": "OrganizationsExplainPolicy", "role": "OrganizationsExplainThroughRolePolicy"}


def existing(logical_id: str, parameters: Mapping[str, str]) -> bool:
    condition = SOURCE["Resources"][logical_id].get("Condition")
    return condition is None or policies.resolver(SOURCE, **parameters).condition(condition)


def test_the_people_policies_themselves_never_change() -> None:
    for parameters in (OFF, DIRECT, VIA_ROLE):
        for logical_id in PEOPLE:
            policy = person_policy(logical_id, parameters)
            assert granted_organizations_actions(policy) == set(), logical_id
            assert not allowed(policy, "sts:AssumeRole", ROLE), logical_id


def test_explaining_with_ou_grants_reads_the_organization_as_the_functions_do() -> None:
    assert not existing(EXPLAIN["direct"], OFF)
    assert not existing(EXPLAIN["role"], OFF)
    # Reading directly: the six reads. The four typed ones share one statement on root, OU and
    # account ARNs (a read of a type the action does not take is never authorized that way).
    assert existing(EXPLAIN["direct"], DIRECT)
    assert not existing(EXPLAIN["role"], DIRECT)
    direct = person_policy(EXPLAIN["direct"], DIRECT)
    typed = {a for a, kinds in READS.items() if kinds != ("any",)}
    expected = {(a, k) for a in READS if a not in typed for k in ARN} | {
        (a, k) for a in typed for k in ("root", "ou", "account")
    }
    assert granted_organizations_actions(direct) == expected
    assert not allowed(direct, "sts:AssumeRole", ROLE)
    # Through the reader role: only assuming it.
    assert existing(EXPLAIN["role"], VIA_ROLE)
    assert not existing(EXPLAIN["direct"], VIA_ROLE)
    via_role = person_policy(EXPLAIN["role"], VIA_ROLE)
    assert granted_organizations_actions(via_role) == set()
    assert allowed(via_role, "sts:AssumeRole", ROLE)
    for other in ("*", ROLE + "-2", ROLE.replace(MANAGEMENT, ACCOUNT)):
        assert not allowed(via_role, "sts:AssumeRole", other)
    # The output names whichever exists.
    output = SOURCE["Outputs"]["OrganizationsExplainPolicyArn"]
    assert output["Condition"] == "OrganizationGrantsOn"
    for parameters, mode in ((DIRECT, "direct"), (VIA_ROLE, "role")):
        res = policies.resolver(SOURCE, **parameters)
        assert res.resolve(output["Value"]) == res.ref(EXPLAIN[mode])


def test_the_reads_the_adapter_makes_on_the_emulator_are_allowed(
    transformed: dict[str, Any], provider: Provider, recorder: CallRecorder
) -> None:
    """Each read, made for real against moto's Organizations and recorded as IAM sees it
    (resource ARNs from the IDs the call names), is allowed to every deciding function."""
    org = provider.client("organizations")
    org.create_organization(FeatureSet="ALL")
    org.describe_organization()
    [root] = org.list_roots()["Roots"]
    ou = org.create_organizational_unit(ParentId=root["Id"], Name="workloads")["OrganizationalUnit"]
    account = org.create_account(Email="payments@example.com", AccountName="payments")
    account_id = account["CreateAccountStatus"]["AccountId"]
    org.move_account(AccountId=account_id, SourceParentId=root["Id"], DestinationParentId=ou["Id"])
    recorder.calls.clear()
    org.list_roots()
    org.list_organizational_units_for_parent(ParentId=root["Id"])
    org.list_accounts_for_parent(ParentId=ou["Id"])
    org.list_parents(ChildId=account_id)
    org.list_parents(ChildId=ou["Id"])
    org.describe_account(AccountId=account_id)
    org.describe_organization()
    calls = policies.unique(recorder.calls)
    assert {c.action for c in calls} == set(READS)
    direct = policies_for(transformed, **DIRECT)
    for function in DECIDERS:
        for call in calls:
            for resource in call.resources:
                assert allowed(direct[function], call.action, resource), (function, call)
    # Through the role, the function's own call is the AssumeRole, on exactly that role.
    recorder.calls.clear()
    provider.client("sts").assume_role(RoleArn=ROLE, RoleSessionName="vpce-approver")
    [assume] = policies.unique(recorder.calls)
    via_role = policies_for(transformed, **VIA_ROLE)
    for function in DECIDERS:
        assert allowed(via_role[function], assume.action, assume.resources[0]), function


def test_the_organizations_adapters_calls_are_allowed(
    transformed: dict[str, Any],
    provider: Provider,
    deployment: LocalDeployment,
    recorder: CallRecorder,
) -> None:
    """The deployment's own adapter (organization.py, as runtime.build() makes it), run on the
    emulator's organization and recorded: the sweep's refresh (the whole tree, the epoch record)
    is allowed to SweepFunction; a cold container's lookups and confirm() to every deciding
    function; OU members (allow-lists) to the registry stream and the sweep. Through a role, the
    function's only own call is AssumeRole on it, and the documented reader role's permissions
    allow every Organizations call."""
    organization = pytest.importorskip("vpce_approver.organization")  # i15-org's adapter
    org = provider.client("organizations")
    org.create_organization(FeatureSet="ALL")
    [root] = org.list_roots()["Roots"]
    workloads = org.create_organizational_unit(ParentId=root["Id"], Name="workloads")
    prod = org.create_organizational_unit(
        ParentId=workloads["OrganizationalUnit"]["Id"], Name="prod"
    )["OrganizationalUnit"]["Id"]
    created = org.create_account(Email="payments@example.com", AccountName="payments")
    member = created["CreateAccountStatus"]["AccountId"]
    org.move_account(AccountId=member, SourceParentId=root["Id"], DestinationParentId=prod)
    settings = dataclasses.replace(deployment.settings, organization_grants=True)
    runtime.bind_tables(settings)
    direct = policies_for(transformed, **DIRECT)

    def check(functions: tuple[str, ...], calls: list[policies.Call]) -> None:
        assert calls
        for function in functions:
            for call in policies.unique(calls):
                for resource in call.resources:
                    decision = direct[function].decide(call.action, resource, {})
                    assert decision.allowed, (function, call.action, resource, decision.reason)

    recorder.calls.clear()
    sweep = organization.directory(settings)
    change = sweep.refresh(record=True)
    assert change.error is None, change.error
    assert change.epoch >= 1  # the first tree recorded
    check(("SweepFunction",), recorder.calls)

    recorder.calls.clear()
    cold = organization.directory(settings)  # another container: reads and confirms
    [membership] = cold.memberships([member]).values()
    assert membership.path == (prod, workloads["OrganizationalUnit"]["Id"])
    cold.confirm()
    check(DECIDERS, recorder.calls)
    recorder.calls.clear()
    assert organization.directory(settings).members(prod) == frozenset({member})  # cold too
    check(("RegistryStreamFunction", "SweepFunction"), recorder.calls)
    # A later sweep in a cold container diffs the tree against the recorded one (chunk reads,
    # a new record, the old one deleted).
    org.move_account(AccountId=member, SourceParentId=prod, DestinationParentId=root["Id"])
    recorder.calls.clear()
    moved = organization.directory(settings).refresh(record=True)
    assert member in moved.moved
    assert "dynamodb:BatchGetItem" in {c.action for c in recorder.calls}
    check(("SweepFunction",), recorder.calls)

    # Through a role (here in the same account: moto's organization lives there).
    role = f"arn:aws:iam::{ACCOUNT}:role/vpce-approver-organizations-read"
    via = dataclasses.replace(settings, organizations_role_arn=role)
    via_role = policies_for(transformed, **{**VIA_ROLE, "OrganizationsRoleArn": role})
    documented = json_blocks(section(DEPLOY_DOC, "OU and organization grants: the IAM they need"))
    reader = next(b for b in documented if "organizations:ListParents" in json.dumps(b))
    reader_role = policies.FunctionPolicy(
        "reader-role", "-", [policies.Statement.from_json(s, "docs") for s in reader["Statement"]]
    )
    recorder.calls.clear()
    assert organization.directory(via).refresh(record=False).error is None
    calls = policies.unique(recorder.calls)
    assert "sts:AssumeRole" in {c.action for c in calls}
    for call in calls:
        if call.action.startswith("organizations:"):
            for resource in call.resources:
                assert allowed(reader_role, call.action, resource), call
                for function in DECIDERS:
                    assert not allowed(via_role[function], call.action, resource)
        elif call.action == "sts:AssumeRole":
            for function in DECIDERS:
                assert allowed(via_role[function], call.action, call.resources[0]), function


# ---------------------------------------------------------------------- Organizations events
def matches(pattern: Mapping[str, Any], event: Any) -> bool:
    """EventBridge matching for the pattern forms the template uses: lists of exact values and
    nested objects."""
    if not isinstance(event, Mapping):
        return False
    for key, expected in pattern.items():
        value = event.get(key)
        if isinstance(expected, Mapping):
            if not matches(expected, value):
                return False
            continue
        values = value if isinstance(value, list) else [value]
        if not any(v in expected for v in values):
            return False
    return True


def rule_resources(parameters: Mapping[str, str]) -> dict[str, Any]:
    """The Organizations event resources that exist with these parameters, resolved."""
    res = policies.resolver(SOURCE, **parameters)
    out = {}
    for logical_id, resource in SOURCE["Resources"].items():
        if logical_id.startswith("OrganizationEvents") and res.condition(resource["Condition"]):
            out[logical_id] = res.resolve(resource["Properties"])
    return out


EVENTS_ON = {**DIRECT, "OrganizationEvents": "true"}
FORWARDED = {**EVENTS_ON, "OrganizationEventsSourceAccount": MANAGEMENT}
PATTERN = SOURCE["Resources"]["OrganizationEventsRule"]["Properties"]["EventPattern"]
ORGANIZATION_EVENTS = sorted(EVENTS.glob("SweepFunction/organizations-*.json"))


def test_the_event_rule_exists_only_with_organization_events() -> None:
    assert rule_resources(OFF) == {}
    assert rule_resources(DIRECT) == {}
    assert set(rule_resources(EVENTS_ON)) == {
        "OrganizationEventsRule",
        "OrganizationEventsInvokeSweep",
    }
    assert set(rule_resources(FORWARDED)) == {
        "OrganizationEventsRule",
        "OrganizationEventsInvokeSweep",
        "OrganizationEventsBusPolicy",
    }


def test_the_rule_invokes_the_sweep_and_only_that_rule_may() -> None:
    res = policies.resolver(SOURCE, **EVENTS_ON)
    made = rule_resources(EVENTS_ON)
    rule, permission = made["OrganizationEventsRule"], made["OrganizationEventsInvokeSweep"]
    sweep_arn = res.get_att("SweepFunction", "Arn")
    assert rule["EventBusName"] == "default"
    assert rule["State"] == "ENABLED"
    assert [t["Arn"] for t in rule["Targets"]] == [sweep_arn]
    assert permission == {
        "Action": "lambda:InvokeFunction",
        "FunctionName": sweep_arn,
        "Principal": "events.amazonaws.com",
        "SourceAccount": ACCOUNT,
        "SourceArn": res.get_att("OrganizationEventsRule", "Arn"),
    }


@pytest.mark.parametrize("path", ORGANIZATION_EVENTS, ids=lambda p: p.name)
def test_the_pattern_matches_the_lifecycle_events_the_sweep_is_given(path: Path) -> None:
    event = json.loads(path.read_text(encoding="utf-8"))
    assert matches(PATTERN, event)
    logged = sweep_handler.trigger(event)
    assert logged["organization_event"] == event["detail"]["eventName"]
    assert logged["accounts"]  # the account it names, for whoever reads the log


def test_the_pattern_matches_only_account_lifecycle_events() -> None:
    assert len(ORGANIZATION_EVENTS) >= 2
    base = json.loads(ORGANIZATION_EVENTS[0].read_text(encoding="utf-8"))
    names = set(PATTERN["detail"]["eventName"])
    assert {
        "CreateAccountResult",
        "MoveAccount",
        "RemoveAccountFromOrganization",
        "CloseAccount",
        "AcceptHandshake",
    } <= names
    for name in sorted(names):
        assert matches(PATTERN, {**base, "detail": {**base["detail"], "eventName": name}})
    for other in ("AttachPolicy", "CreatePolicy", "ListAccounts", "TagResource", "CreateAccount"):
        assert not matches(PATTERN, {**base, "detail": {**base["detail"], "eventName": other}})
    assert not matches(PATTERN, {**base, "source": "aws.ec2"})
    scheduled = json.loads((EVENTS / "SweepFunction" / "scheduled.json").read_text())
    assert not matches(PATTERN, scheduled)


FORWARDING_RULE = f"arn:aws:events:us-east-1:{MANAGEMENT}:rule/{STACK}-organization-events"


def test_only_the_management_accounts_forwarding_rule_may_put_events() -> None:
    policy = rule_resources(FORWARDED)["OrganizationEventsBusPolicy"]
    assert policy["EventBusName"] == "default"
    assert policy["StatementId"] == f"{STACK}-organization-events"
    assert policy["Statement"] == {
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::{MANAGEMENT}:root"},
        "Action": "events:PutEvents",
        "Resource": f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/default",
        "Condition": {"ArnEquals": {"aws:SourceArn": FORWARDING_RULE}},
    }


# ---------------------------------------------------------------------- the docs agree
ORGANIZATIONS_DOC = (ROOT / "docs" / "ORGANIZATIONS.md").read_text(encoding="utf-8")
DEPLOY_DOC = (ROOT / "docs" / "DEPLOY.md").read_text(encoding="utf-8")


def json_blocks(section: str) -> list[Any]:
    return [json.loads(b.split("```", 1)[0]) for b in section.split("```json")[1:]]


def section(doc: str, title: str) -> str:
    return doc.split(f"## {title}", 1)[1].split("\n## ", 1)[0]


def test_the_documented_forwarding_rule_forwards_what_the_stack_listens_for() -> None:
    text = section(ORGANIZATIONS_DOC, "Forwarding Organizations events")
    blocks = json_blocks(text)
    assert PATTERN in blocks, "the forwarding rule's pattern must be the template's"
    trust = next(b for b in blocks if "Statement" in b and "sts:AssumeRole" in json.dumps(b))
    [statement] = trust["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    permissions = next(b for b in blocks if "events:PutEvents" in json.dumps(b))
    [put] = permissions["Statement"]
    assert put["Action"] == "events:PutEvents"
    assert put["Resource"].endswith(":event-bus/default")
    assert "`<stack name>-organization-events`" in text  # the rule name the bus policy allows
    assert "us-east-1" in text


def test_the_documented_reader_role_grants_exactly_the_reads() -> None:
    text = section(DEPLOY_DOC, "OU and organization grants: the IAM they need")
    blocks = json_blocks(text)
    permissions = next(b for b in blocks if "organizations:ListParents" in json.dumps(b))
    actions = {a for s in permissions["Statement"] for a in s["Action"]}
    assert actions == set(READS)
    trust = next(b for b in blocks if "sts:AssumeRole" in json.dumps(b))
    [statement] = trust["Statement"]
    assert statement["Action"] == "sts:AssumeRole"
    # Trusted: the deployment's function roles, by ARN, nothing else of that account.
    principal_arns = statement["Condition"]["ArnEquals"]["aws:PrincipalArn"]
    assert len(principal_arns) == len(DECIDERS)
    assert all(":role/" in arn and "*" not in arn for arn in principal_arns)


def test_the_stack_outputs_the_roles_the_reader_role_must_trust() -> None:
    output = SOURCE["Outputs"]["OrganizationsReaderRoleArns"]
    assert output["Condition"] == "ReadOrganizationsThroughRole"
    for parameters, deciders in ((VIA_ROLE, DECIDERS), ({**VIA_ROLE, **NO_SLACK}, DECIDERS[:3])):
        res = policies.resolver(SOURCE, **parameters)
        listed = str(res.resolve(output["Value"])).split(",")
        assert listed == [res.get_att(f"{fn}Role", "Arn") for fn in deciders]


def test_an_unreadable_organization_alarms_only_when_the_feature_is_on() -> None:
    """MembershipUnknown (the sweep could not read the organization; a decision could not place
    an account) means OU/organization grants accept nothing: with the feature on it pages."""
    alarm = SOURCE["Resources"]["MembershipUnknownAlarm"]
    assert alarm["Condition"] == "OrganizationGrantsOn"
    assert not existing("MembershipUnknownAlarm", OFF)
    assert existing("MembershipUnknownAlarm", DIRECT)
    props = policies.resolver(SOURCE, **DIRECT).resolve(alarm["Properties"])
    assert (props["Namespace"], props["MetricName"]) == ("VpceApprover", "MembershipUnknown")
    assert props["AlarmActions"] == [policies.resolver(SOURCE).ref("AlarmTopic")]


# ---------------------------------------------------------------- the functions, organization on
PAYLOADS = [
    pytest.param(fn, path, id=f"{fn}/{path.name}")
    for fn in FUNCTIONS
    for path in sorted((EVENTS / fn).glob("*.json"))
]


@pytest.mark.parametrize(("function", "path"), PAYLOADS)
def test_with_organization_grants_every_call_is_still_allowed(
    world: World, recorder: CallRecorder, transformed: dict[str, Any], function: str, path: Path
) -> None:
    """Every payload of events/ again, now with OrganizationGrants=true in an organization (the
    provider's account is its management account): the handlers as runtime.build() wires them
    read memberships, and every call they make (Organizations reads, the epoch record included)
    is allowed by the function's role in that mode."""
    org = world.provider.client("organizations")
    org.create_organization(FeatureSet="ALL")
    [root] = org.list_roots()["Roots"]
    org.create_organizational_unit(ParentId=root["Id"], Name="workloads")
    parameters = {**world.parameters, "OrganizationGrants": "true"}
    spec = invoke.function_spec(function, parameters=parameters)
    event = world.event(path)
    if invoke.is_slack_request(event):
        event = invoke.sign_slack_request(event, SLACK_TEST_SIGNING_SECRET)
    invoke.ensure_queues(spec, world.provider.client("sqs"), "https://sqs.us-east-1.amazonaws.com")
    recorder.calls.clear()
    result = invoke.invoke(spec, event, overrides=world.env)
    assert succeeded(result), f"{function} did not handle {path.name}: {result}"
    calls = [c for c in policies.unique(recorder.calls) if c.action not in policies.NO_PERMISSION]
    if function == "SweepFunction":  # reads the whole tree first, every run
        assert "organizations:ListOrganizationalUnitsForParent" in {c.action for c in calls}
    policy = policies.function_policies(transformed, **parameters)[function]
    refused = [
        f"{call.action} on {resource}: {decision.reason}"
        for call in calls
        for resource in call.resources
        if not (
            decision := policy.decide(call.action, resource, context_for(world, resource))
        ).allowed
    ]
    assert not refused, f"{function} ({path.name}) lacks permissions:\n" + "\n".join(refused)
