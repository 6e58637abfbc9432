"""The rules of a first deployment in a real account (issue 13, docs/DEPLOY.md), checked on the
template after the SAM transform where it matters: deploys in any account, redeploys after a
delete, fails early on bad parameters, tighter policies, visible failures, and the scanner."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Mapping
from typing import Any

import pytest

from vpce_approver.config import Settings
from vpce_tools import policies
from vpce_tools import template as cfn_template
from vpce_tools.commands import invoke

from .conftest import ROOT
from .test_template_structure import ref_id, resources_of

SOURCE = cfn_template.load()
PARAMETERS: Mapping[str, Any] = SOURCE["Parameters"]
FUNCTIONS = invoke.function_ids(SOURCE)
ACCOUNT, REGION = policies.ACCOUNT, policies.REGION
SECRET = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:vpce-approver/slack-bot-AbC123"


# ---------------------------------------------------------------------- parameters and Rules
def allowed(parameter: str, value: str) -> bool:
    """CloudFormation's AllowedPattern (a whole-value match)."""
    return re.fullmatch(PARAMETERS[parameter]["AllowedPattern"], value) is not None


@pytest.mark.parametrize("parameter", ["SlackBotTokenSecretArn", "SlackSigningSecretArn"])
def test_secret_parameters_take_only_a_full_secrets_manager_arn(parameter: str) -> None:
    assert allowed(parameter, "")  # Slack off
    assert allowed(parameter, SECRET)
    assert allowed(parameter, SECRET.replace("arn:aws:", "arn:aws-us-gov:"))
    for wrong in (
        "vpce-approver/slack-bot",  # a name
        SECRET.removesuffix("-AbC123"),  # a partial ARN (no 6-character suffix)
        SECRET.removesuffix("3"),  # a 5-character suffix
        f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/slack-bot-AbC123",
        f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:*",
        SECRET + " ",
    ):
        assert not allowed(parameter, wrong), wrong
    assert "describe-secret" in PARAMETERS[parameter]["ConstraintDescription"]


def test_the_team_id_parameter_refuses_what_is_not_a_team_id() -> None:
    assert allowed("SlackTeamId", "")
    assert allowed("SlackTeamId", policies.FEATURES["SlackTeamId"])
    for wrong in ("t0123abcd", "U0APPROVER1", "https://example.slack.com", "T01"):
        assert not allowed("SlackTeamId", wrong)


def _value(expr: Any, params: Mapping[str, Any]) -> Any:
    """The rule-specific intrinsics CloudFormation evaluates in Rules."""
    if isinstance(expr, Mapping) and len(expr) == 1:
        [(fn, arg)] = expr.items()
        if fn == "Ref":
            return params[arg]
        args = [_value(a, params) for a in (arg if isinstance(arg, list) else [arg])]
        if fn == "Fn::Equals":
            return str(args[0]) == str(args[1])
        if fn == "Fn::Not":
            return not args[0]
        if fn == "Fn::And":
            return all(args)
        if fn == "Fn::Or":
            return any(args)
        if fn == "Fn::Contains":
            return args[1] in args[0]
        raise AssertionError(f"{fn} is not allowed in Rules")
    return expr


def failed_rules(**given: str) -> list[str]:
    """AssertDescriptions of the Rules that fail for these parameter values."""
    params: dict[str, Any] = {}
    for name, spec in PARAMETERS.items():
        raw = str(given.get(name, spec.get("Default", "")))
        params[name] = raw.split(",") if spec["Type"] == "CommaDelimitedList" else raw
    failed = []
    for rule in SOURCE["Rules"].values():
        if "RuleCondition" in rule and not _value(rule["RuleCondition"], params):
            continue
        failed += [
            a["AssertDescription"] for a in rule["Assertions"] if not _value(a["Assert"], params)
        ]
    return failed


SLACK_ON = {
    "SlackChannel": "C0ESCALATE1",
    "SlackBotTokenSecretArn": SECRET,
    "SlackSigningSecretArn": SECRET.replace("bot", "sign"),
}


def test_slack_needs_a_team_id_and_approvers_or_a_group() -> None:
    assert failed_rules() == []  # no Slack at all
    with_team = {**SLACK_ON, "SlackTeamId": "T0EXAMPLE1"}
    assert failed_rules(**with_team, SlackApprovers="U0APPROVER1") == []
    assert failed_rules(**with_team, SlackApproverGroup="S0GROUP1") == []
    [no_team] = failed_rules(**SLACK_ON, SlackApprovers="U0APPROVER1")
    assert no_team.startswith("SlackTeamId is required")
    [nobody] = failed_rules(**with_team)
    assert nobody.startswith("SlackApprovers (user IDs) or SlackApproverGroup is required")
    assert len(failed_rules(**SLACK_ON)) == 2


@pytest.mark.parametrize("missing", list(SLACK_ON))
def test_half_a_slack_set_up_fails_instead_of_silently_disabling_slack(missing: str) -> None:
    given = {**SLACK_ON, "SlackTeamId": "T0EXAMPLE1", "SlackApprovers": "U0APPROVER1"}
    given[missing] = ""
    [message] = failed_rules(**given)
    assert message.startswith("Slack needs SlackChannel, SlackBotTokenSecretArn and")


def test_adopting_tables_needs_the_registry_stream() -> None:
    [message] = failed_rules(ExistingTables="adopt")
    assert "ExistingRegistryStreamArn" in message
    table = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/vpce-approver-registry"
    stream = f"{table}/stream/2026-12-01T00:00:00.000"
    assert allowed("ExistingRegistryStreamArn", stream)
    assert failed_rules(ExistingTables="adopt", ExistingRegistryStreamArn=stream) == []


def test_the_features_the_template_tests_use_pass_the_rules() -> None:
    assert failed_rules(**policies.FEATURES) == []
    for name, value in policies.FEATURES.items():
        if "AllowedPattern" in PARAMETERS[name]:
            assert allowed(name, value), name


# ---------------------------------------------------------------------- any account
def test_no_function_reserves_concurrency(transformed: dict[str, Any]) -> None:
    """New accounts have a concurrency quota of 10 and Lambda keeps 100 unreserved: any
    reservation fails the deploy there. The sweep runs one at a time through its lease."""
    reserved = [
        logical_id
        for logical_id, props in resources_of(transformed, "AWS::Lambda::Function")
        if "ReservedConcurrentExecutions" in props
    ]
    assert reserved == []


# ---------------------------------------------------------------------- redeploy after delete
def test_retained_tables_can_be_adopted_by_a_new_stack_of_the_same_name() -> None:
    """A retained table with a fixed name blocks a later create of the same name. With
    ExistingTables=adopt the stack creates neither table and uses them by their names."""
    adopt = policies.resolver(SOURCE, ExistingTables="adopt")
    create = policies.resolver(SOURCE)
    assert adopt.condition("CreateTables") is False
    assert create.condition("CreateTables") is True
    for logical_id in ("RegistryTable", "AuditTable"):
        table = SOURCE["Resources"][logical_id]
        assert table["Condition"] == "CreateTables"
        assert table["DeletionPolicy"] == table["UpdateReplacePolicy"] == "Retain"
    # Nothing unconditional may point at a table that adopt mode does not create.
    text = json.dumps(
        {k: v for k, v in SOURCE["Resources"].items() if k not in {"RegistryTable", "AuditTable"}}
    )
    allowed_refs = text.count('{"Fn::GetAtt": ["RegistryTable", "StreamArn"]}')
    assert text.count("RegistryTable") == allowed_refs
    assert "AuditTable" not in text
    assert SOURCE["Resources"]["RegistryStreamFunction"]["Properties"]["Events"]["RegistryChanges"][
        "Properties"
    ]["Stream"] == {
        "Fn::If": [
            "CreateTables",
            {"Fn::GetAtt": ["RegistryTable", "StreamArn"]},
            {"Ref": "ExistingRegistryStreamArn"},
        ]
    }


@pytest.mark.parametrize("function", FUNCTIONS)
def test_functions_and_the_cli_find_the_tables_by_the_same_names(function: str) -> None:
    """Created or adopted, the tables are <stack>-registry/-audit/-escalations: the names the CLI
    (Settings.from_env(stack=...)) and the stack outputs give."""
    cli = Settings.from_env({}, stack=policies.STACK)
    for mode in ("create", "adopt"):
        env = invoke.function_spec(
            function, parameters={**policies.FEATURES, "ExistingTables": mode}
        ).environment
        assert (env["REGISTRY_TABLE"], env["AUDIT_TABLE"], env["ESCALATIONS_TABLE"]) == (
            cli.registry_table,
            cli.audit_table,
            cli.escalations_table,
        )
    res = policies.resolver(SOURCE)
    outputs = SOURCE["Outputs"]
    assert res.resolve(outputs["RegistryTableName"]["Value"]) == cli.registry_table
    assert res.resolve(outputs["AuditTableName"]["Value"]) == cli.audit_table


@pytest.mark.parametrize("mode", ["customer-managed", "aws-managed"])
def test_table_encryption_parameter(mode: str) -> None:
    res = policies.resolver(SOURCE, TableEncryption=mode)
    for logical_id, props in resources_of(SOURCE, "AWS::DynamoDB::Table"):
        sse = {k: v for k, v in res.resolve(props["SSESpecification"]).items() if v is not None}
        if mode == "customer-managed":
            assert sse == {
                "SSEEnabled": True,
                "SSEType": "KMS",
                "KMSMasterKeyId": res.get_att("StackKey", "Arn"),
            }
        else:
            assert sse == {"SSEEnabled": True}, logical_id


# ---------------------------------------------------------------------- explicit roles
def _function_role(transformed: Mapping[str, Any], function: str) -> dict[str, Any]:
    role_id = ref_id(transformed["Resources"][function]["Properties"]["Role"])
    assert role_id is not None
    return dict(transformed["Resources"][role_id])


@pytest.mark.parametrize("function", FUNCTIONS)
def test_no_aws_managed_policy_on_any_function_role(
    transformed: dict[str, Any], function: str
) -> None:
    """SAM attaches AWSLambdaSQSQueueExecutionRole / AWSLambdaDynamoDBExecutionRole (Resource "*")
    to roles it generates; every function has an explicit role with scoped statements instead."""
    role = _function_role(transformed, function)
    assert role["Type"] == "AWS::IAM::Role"
    assert not role["Properties"].get("ManagedPolicyArns")
    assert f"{function}Role" in transformed["Resources"]


@pytest.mark.parametrize("function", FUNCTIONS)
def test_permissions_live_in_the_role_not_in_function_policies(function: str) -> None:
    """With `Role` set, SAM silently ignores a function's `Policies`: a statement added there
    (say, by a merge) would never reach the role. Add statements to <Function>Role instead."""
    props = SOURCE["Resources"][function]["Properties"]
    assert "Policies" not in props, f"move {function}'s Policies into {function}Role"
    assert props["Role"] == {"Fn::GetAtt": [f"{function}Role", "Arn"]}
    assert "Policies" not in ((SOURCE.get("Globals") or {}).get("Function") or {})


EVENT_SOURCE_ACTIONS = {
    "AWS::SQS::Queue": ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"),
    "AWS::DynamoDB::Table": (
        "dynamodb:DescribeStream",
        "dynamodb:GetRecords",
        "dynamodb:GetShardIterator",
        "dynamodb:ListStreams",
    ),
}


def test_event_sources_are_allowed_on_their_own_queue_or_stream_only(
    transformed: dict[str, Any], function_policies: dict[str, policies.FunctionPolicy]
) -> None:
    res = policies.resolver(transformed, **policies.FEATURES)
    queues = {res.get_att(q, "Arn") for q, _ in resources_of(transformed, "AWS::SQS::Queue")}
    mappings = list(resources_of(transformed, "AWS::Lambda::EventSourceMapping"))
    assert len(mappings) == 3
    for _, props in mappings:
        function = ref_id(props["FunctionName"])
        source = res.resolve(props["EventSourceArn"])
        source_id = ref_id(props["EventSourceArn"]) or ref_id(props["EventSourceArn"]["Fn::If"][1])
        kind = transformed["Resources"][source_id]["Type"]
        policy = function_policies[str(function)]
        for action in EVENT_SOURCE_ACTIONS[kind]:
            assert policy.decide(action, source, {}).allowed, (function, action)
            for other in queues - {source}:
                assert not policy.decide(action, other, {}).allowed, (function, action, other)
        if kind == "AWS::DynamoDB::Table":
            other_stream = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/other/stream/local"
            assert not policy.decide("dynamodb:GetRecords", other_stream, {}).allowed
            destination = res.resolve(props["DestinationConfig"]["OnFailure"]["Destination"])
            assert policy.decide("sqs:SendMessage", destination, {}).allowed


def test_failed_sweep_runs_can_reach_their_dlq(
    transformed: dict[str, Any], function_policies: dict[str, policies.FunctionPolicy]
) -> None:
    res = policies.resolver(transformed)
    [(_, config)] = list(resources_of(transformed, "AWS::Lambda::EventInvokeConfig"))
    destination = res.resolve(config["DestinationConfig"]["OnFailure"]["Destination"])
    assert destination == res.get_att("SweepDLQ", "Arn")
    policy = function_policies["SweepFunction"]
    assert policy.decide("sqs:SendMessage", destination, {}).allowed
    assert not policy.decide("sqs:SendMessage", res.get_att("NotificationQueue", "Arn"), {}).allowed


# ---------------------------------------------------------------------- topic and key policies
def _statements(logical_id: str, key: str) -> list[dict[str, Any]]:
    res = policies.resolver(SOURCE)
    return list(res.resolve(SOURCE["Resources"][logical_id]["Properties"][key])["Statement"])


ENDPOINT_SERVICES = f"arn:aws:ec2:{REGION}:{ACCOUNT}:vpc-endpoint-service/*"


def test_vpce_may_publish_and_use_the_key_for_this_accounts_endpoint_services_only() -> None:
    topic = [
        s
        for s in _statements("NotificationTopicPolicy", "PolicyDocument")
        if s["Principal"] == {"Service": "vpce.amazonaws.com"}
    ]
    key = [
        s
        for s in _statements("StackKey", "KeyPolicy")
        if s["Principal"] == {"Service": "vpce.amazonaws.com"}
    ]
    assert len(topic) == len(key) == 1
    for statement in topic + key:
        assert statement["Condition"] == {
            "StringEquals": {"aws:SourceAccount": ACCOUNT},
            "ArnLike": {"aws:SourceArn": ENDPOINT_SERVICES},
        }


def test_every_service_principal_in_the_key_policy_is_conditioned() -> None:
    statements = _statements("StackKey", "KeyPolicy")
    by_principal = {json.dumps(s["Principal"], sort_keys=True): s for s in statements}
    cloudwatch = by_principal['{"Service": "cloudwatch.amazonaws.com"}']
    assert cloudwatch["Condition"] == {
        "StringEquals": {"aws:SourceAccount": ACCOUNT},
        "ArnLike": {
            "aws:SourceArn": f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{policies.STACK}-*"
        },
    }
    logs = by_principal[f'{{"Service": "logs.{REGION}.amazonaws.com"}}']
    contexts = logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"]
    assert all(c.startswith(f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:") for c in contexts)
    assert all(policies.STACK in c for c in contexts)
    anyone = by_principal['{"AWS": "*"}']
    assert anyone["Condition"] == {
        "StringEquals": {
            "kms:ViaService": f"dynamodb.{REGION}.amazonaws.com",
            "kms:CallerAccount": ACCOUNT,
        }
    }
    for s in statements:
        if "Service" in s["Principal"] or s["Principal"] == {"AWS": "*"}:
            assert s.get("Condition"), s.get("Sid")
    # Every log group of the stack is encrypted with the key and inside the logs condition.
    res = policies.resolver(SOURCE, **policies.FEATURES)
    for logical_id, props in resources_of(SOURCE, "AWS::Logs::LogGroup"):
        assert props["KmsKeyId"] == {"Fn::GetAtt": ["StackKey", "Arn"]}, logical_id
        arn = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{res.resolve(props['LogGroupName'])}"
        assert any(policies.wildcard_match(c, arn) for c in contexts), arn


# ---------------------------------------------------------------------- visible failures
def test_sns_to_sqs_delivery_failures_land_in_a_dlq_that_alarms(
    transformed: dict[str, Any],
) -> None:
    subscription = transformed["Resources"]["NotificationSubscription"]["Properties"]
    dlq = ref_id(subscription["RedrivePolicy"]["deadLetterTargetArn"])
    assert dlq is not None
    assert transformed["Resources"][dlq]["Type"] == "AWS::SQS::Queue"
    [(_, queue_policy)] = [
        (i, p)
        for i, p in resources_of(transformed, "AWS::SQS::QueuePolicy")
        if p["Queues"] == [{"Ref": dlq}]
    ]
    [statement] = queue_policy["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "sns.amazonaws.com"}
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Ref": "NotificationTopic"}}}
    alarms = [
        p
        for _, p in resources_of(transformed, "AWS::CloudWatch::Alarm")
        if p.get("MetricName") == "ApproximateNumberOfMessagesVisible"
        and ref_id(p["Dimensions"][0]["Value"]) == dlq
    ]
    assert len(alarms) == 1
    assert alarms[0]["AlarmActions"] == [{"Ref": "AlarmTopic"}]


def test_application_alarms_carry_the_deployment_dimension(transformed: dict[str, Any]) -> None:
    app_alarms = [
        p
        for _, p in resources_of(transformed, "AWS::CloudWatch::Alarm")
        if p["Namespace"] == "VpceApprover"
    ]
    assert app_alarms
    for alarm in app_alarms:
        dims = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
        assert dims == {"service": "vpce-approver", "deployment": {"Ref": "AWS::StackName"}}


def test_metrics_are_emitted_with_the_deployment_dimension() -> None:
    """What the functions print (EMF) has the same dimension set as the alarms."""
    code = (
        "from vpce_approver.observability import metrics\n"
        "metrics.add_metric(name='Errors', unit='Count', value=1)\n"
        "metrics.flush_metrics()\n"
    )
    env = {
        **os.environ,
        "DEPLOYMENT_NAME": "vpce-approver-dev",
        "POWERTOOLS_METRICS_NAMESPACE": "VpceApprover",
    }
    env.pop("POWERTOOLS_METRICS_DISABLED", None)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    [emf] = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    [directive] = emf["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "VpceApprover"
    assert sorted(directive["Dimensions"][0]) == ["deployment", "service"]
    assert (emf["service"], emf["deployment"]) == ("vpce-approver", "vpce-approver-dev")


# ---------------------------------------------------------------------- scanner, package, config
def test_every_checkov_skip_says_why() -> None:
    skips = [
        (logical_id, skip)
        for logical_id, resource in SOURCE["Resources"].items()
        for skip in ((resource.get("Metadata") or {}).get("checkov") or {}).get("skip") or []
    ]
    assert skips
    for logical_id, skip in skips:
        assert re.fullmatch(r"CKV2?_AWS_\d+", skip["id"]), (logical_id, skip)
        assert len(skip.get("comment", "").split()) >= 5, (logical_id, skip)


def test_the_lambda_package_pins_boto3_and_botocore_as_a_pair() -> None:
    pins = {}
    for line in (ROOT / "functions" / "requirements.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"unpinned: {line}"
            pins[name.split("[", 1)[0].lower()] = version
    assert pins["boto3"] == pins["botocore"]
    import boto3
    import botocore

    assert (boto3.__version__, botocore.__version__) == (pins["boto3"], pins["botocore"])


def test_dev_and_prod_are_different_stacks() -> None:
    with (ROOT / "samconfig.toml").open("rb") as handle:
        config = tomllib.load(handle)
    names = {env: config[env]["global"]["parameters"]["stack_name"] for env in ("default", "prod")}
    assert names["default"] != names["prod"]


# ---------------------------------------------------------------------- docs/DEPLOY.md
DEPLOY = (ROOT / "docs" / "DEPLOY.md").read_text(encoding="utf-8")


def test_the_parameter_table_lists_every_parameter() -> None:
    table = DEPLOY.split("| parameter | default | what |", 1)[1].split("\n\n", 1)[0]
    documented: dict[str, str] = {}
    for row in table.strip().splitlines()[1:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        names = re.findall(r"`([A-Za-z]+)`", cells[0])
        defaults = re.findall(r"`([^`]*)`", cells[1]) or [""]
        for n, name in enumerate(names):
            documented[name] = defaults[min(n, len(defaults) - 1)] if cells[1] != "empty" else ""
    assert set(documented) == set(PARAMETERS), (
        f"missing: {sorted(set(PARAMETERS) - set(documented))}, "
        f"unknown: {sorted(set(documented) - set(PARAMETERS))}"
    )
    for name, default in documented.items():
        assert default == str(PARAMETERS[name].get("Default", "")), name


def test_the_provider_example_keeps_samconfigs_overrides() -> None:
    """A --parameter-overrides on the command line replaces samconfig's list (dev would lose
    shadow mode): the documented way adds the provider's parameters to samconfig's own list."""
    with (ROOT / "samconfig.toml").open("rb") as handle:
        config = tomllib.load(handle)
    section = DEPLOY.split("## Optional: the provider service", 1)[1]
    snippet = section.split("```toml", 1)[1].split("```", 1)[0]
    documented = tomllib.loads(snippet)["default"]["deploy"]["parameters"]["parameter_overrides"]
    ours = config["default"]["deploy"]["parameters"]["parameter_overrides"]
    pairs = dict(p.split("=", 1) for p in shlex.split(documented))
    assert dict(p.split("=", 1) for p in shlex.split(ours)).items() <= pairs.items()
    assert {"ProviderVpcId", "ProviderSubnetIds", "ProviderServicePort"} <= set(pairs)
    commands = [block.split("```", 1)[0] for block in DEPLOY.split("```sh")[1:]]
    assert not [c for c in commands if "--parameter-overrides" in c]  # nowhere in the page
