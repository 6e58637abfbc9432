"""Static checks of template.yaml after the SAM transform, generic over every function: least
privilege on EC2 and DynamoDB, a DLQ on every async path, alarms and log groups per function, the
dashboard, and tables that match the pynamodb models."""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from pynamodb.attributes import BinaryAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.indexes import GlobalSecondaryIndex
from pynamodb.models import Model

from vpce_approver import tables
from vpce_approver.config import Settings
from vpce_tools import policies
from vpce_tools import template as cfn_template
from vpce_tools.commands import invoke
from vpce_tools.intrinsics import Resolver

from .conftest import ROOT

SOURCE = cfn_template.load()
FUNCTIONS = invoke.function_ids(SOURCE)
STACK = policies.STACK
MANAGED_TAG_KEYS = {
    "aws:ResourceTag/vpce-approver:managed",
    "ec2:ResourceTag/vpce-approver:managed",
}
# Actions with no resource-level permissions (Service Authorization Reference): `*` is the only
# possible resource. Everything else must name its resources.
ANY_RESOURCE_OK = {
    "cloudwatch:PutMetricData",
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
    "xray:GetSamplingStatisticSummaries",
}


def resources_of(transformed: Mapping[str, Any], kind: str) -> Iterator[tuple[str, Any]]:
    for logical_id, resource in transformed["Resources"].items():
        if resource.get("Type") == kind:
            yield logical_id, resource.get("Properties") or {}


def ref_id(value: Any) -> str | None:
    """The logical ID behind !Ref X / !GetAtt X.Attr, else None."""
    if isinstance(value, Mapping):
        if "Ref" in value:
            return str(value["Ref"])
        if "Fn::GetAtt" in value:
            target = value["Fn::GetAtt"]
            return str(target[0] if isinstance(target, list) else str(target).split(".")[0])
    return None


def merged_props(logical_id: str) -> dict[str, Any]:
    glob = (SOURCE.get("Globals") or {}).get("Function") or {}
    return {**glob, **(SOURCE["Resources"][logical_id].get("Properties") or {})}


# ---------------------------------------------------------------------- runtime and logging
@pytest.mark.parametrize("function", FUNCTIONS)
def test_functions_share_the_runtime_and_the_package(function: str) -> None:
    props = merged_props(function)
    assert props["Runtime"] == "python3.13"
    assert props["Architectures"] == ["arm64"]
    assert props["CodeUri"] == "functions/"
    assert props["Tracing"] == "Active"
    assert str(props["Handler"]).startswith("vpce_approver.")
    env = invoke.function_spec(function, parameters=policies.FEATURES).environment
    assert env["POWERTOOLS_SERVICE_NAME"] == "vpce-approver"
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "VpceApprover"


@pytest.mark.parametrize("function", FUNCTIONS)
def test_every_function_logs_to_its_own_log_group_created_first(function: str) -> None:
    """LoggingConfig names the stack's log group (so CloudFormation creates it, with retention and
    the stack's key, before the function), and the role cannot create a group: Lambda can never
    race the stack to /aws/lambda/<name> ("already exists" at create, after a delete)."""
    props = merged_props(function)
    group_id = ref_id(props["LoggingConfig"]["LogGroup"])
    assert group_id is not None
    group = SOURCE["Resources"][group_id]
    assert group["Type"] == "AWS::Logs::LogGroup"
    assert group.get("Condition") == SOURCE["Resources"][function].get("Condition")
    assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    assert group["Properties"]["KmsKeyId"] == {"Fn::GetAtt": ["StackKey", "Arn"]}
    assert "Retain" not in {group.get("DeletionPolicy"), group.get("UpdateReplacePolicy")}
    assert "LogGroupName" in group["Properties"]


def test_no_role_may_create_log_groups_or_write_to_another_functions(
    transformed: dict[str, Any], function_policies: dict[str, policies.FunctionPolicy]
) -> None:
    res = policies.resolver(transformed, **policies.FEATURES)
    groups = {
        function: res.get_att(ref_id(merged_props(function)["LoggingConfig"]["LogGroup"]), "Arn")
        for function in FUNCTIONS
    }
    for function, policy in function_policies.items():
        assert not policy.decide("logs:CreateLogGroup", "*", {}).allowed
        for owner, arn in groups.items():
            stream = arn.removesuffix("*") + "log-stream:2026/12/01/[$LATEST]abc"
            allowed = policy.decide("logs:PutLogEvents", stream, {}).allowed
            assert allowed == (owner == function), (function, owner)


# ---------------------------------------------------------------------- least privilege
def test_no_mutating_ec2_action_without_the_managed_tag_condition(
    function_policies: dict[str, policies.FunctionPolicy],
) -> None:
    offenders = []
    for function, policy in function_policies.items():
        for s in policy.statements:
            if s.effect != "Allow" or not s.is_mutating_ec2:
                continue
            conditions = {
                key: value
                for op, block in s.condition.items()
                if op == "StringEquals"
                for key, value in block.items()
            }
            tagged = any(conditions.get(k) == STACK for k in MANAGED_TAG_KEYS)
            if "*" in s.resources or s.not_resources or s.not_actions or not tagged:
                offenders.append(f"{function}: {s.actions} on {s.resources} ({s.source})")
    assert not offenders, "mutating EC2 actions must be tag-scoped:\n" + "\n".join(offenders)


def test_resource_star_only_where_aws_allows_nothing_narrower(
    function_policies: dict[str, policies.FunctionPolicy],
) -> None:
    offenders = []
    for function, policy in function_policies.items():
        for s in policies.statements_on_any_resource(policy):
            if s.source.startswith("managed:"):
                continue  # AWS's own execution-role policies
            for action in s.actions:
                service, _, operation = action.partition(":")
                describe = service == "ec2" and operation.startswith("Describe")
                if (describe and operation not in policies.EC2_SERVICE_RESOURCE) or (
                    action in ANY_RESOURCE_OK
                ):
                    continue
                offenders.append(f"{function}: {action} on * ({s.source})")
    assert not offenders, "name the resources of:\n" + "\n".join(offenders)


def test_dynamodb_actions_only_on_this_stacks_tables(
    transformed: dict[str, Any], function_policies: dict[str, policies.FunctionPolicy]
) -> None:
    res = policies.resolver(transformed)
    table_arns = {
        res.get_att(logical_id, "Arn")
        for logical_id, _ in resources_of(transformed, "AWS::DynamoDB::Table")
    }
    allowed = table_arns | {f"{arn}/index/*" for arn in table_arns}
    allowed |= {  # a named index of the table (least privilege names the one it queries)
        f"{res.get_att(logical_id, 'Arn')}/index/{index['IndexName']}"
        for logical_id, table in resources_of(transformed, "AWS::DynamoDB::Table")
        for index in table.get("GlobalSecondaryIndexes") or []
    }
    allowed |= {f"{arn}/stream/*" for arn in table_arns} | {
        res.get_att(i, "StreamArn") for i, _ in resources_of(transformed, "AWS::DynamoDB::Table")
    }
    offenders = [
        f"{function}: {s.actions} on {resource}"
        for function, policy in function_policies.items()
        for s in policy.statements
        if s.effect == "Allow"
        and not s.source.startswith("managed:")
        and any(a.lower().startswith("dynamodb:") for a in s.actions)
        for resource in s.resources
        if resource not in allowed
    ]
    assert not offenders, "\n".join(offenders)


# ---------------------------------------------------------------------- async paths and alarms
def _dlq_of_queue(transformed: Mapping[str, Any], queue_id: str) -> str | None:
    props = transformed["Resources"][queue_id].get("Properties") or {}
    redrive = props.get("RedrivePolicy") or {}
    return ref_id(redrive.get("deadLetterTargetArn"))


def async_paths(transformed: Mapping[str, Any]) -> Iterator[tuple[str, str, str | None]]:
    """(function, path, its failure destination's logical ID or None) for every async trigger."""
    resources = transformed["Resources"]
    for _, props in resources_of(transformed, "AWS::Lambda::EventSourceMapping"):
        function = ref_id(props.get("FunctionName")) or "?"
        source = ref_id(props.get("EventSourceArn")) or "?"
        kind = resources.get(source, {}).get("Type")
        if kind == "AWS::SQS::Queue":
            yield function, f"SQS {source}", _dlq_of_queue(transformed, source)
        else:
            destination = (props.get("DestinationConfig") or {}).get("OnFailure") or {}
            yield function, f"stream {source}", ref_id(destination.get("Destination"))
    invoke_configs = {
        ref_id(props.get("FunctionName")): props
        for _, props in resources_of(transformed, "AWS::Lambda::EventInvokeConfig")
    }
    for _, props in resources_of(transformed, "AWS::Lambda::Permission"):
        principal = str(props.get("Principal", ""))
        if principal in {"apigateway.amazonaws.com", "elasticloadbalancing.amazonaws.com"}:
            continue  # synchronous: the caller sees the error
        function = ref_id(props.get("FunctionName")) or "?"
        fn_props = resources.get(function, {}).get("Properties") or {}
        dlq = ref_id((fn_props.get("DeadLetterConfig") or {}).get("TargetArn"))
        config = invoke_configs.get(function) or {}
        on_failure = ((config.get("DestinationConfig") or {}).get("OnFailure") or {}).get(
            "Destination"
        )
        yield function, f"async invoke by {principal}", dlq or ref_id(on_failure)


def test_every_async_path_has_a_dead_letter_destination(transformed: dict[str, Any]) -> None:
    paths = list(async_paths(transformed))
    assert any(path.startswith("SQS") for _, path, _ in paths)
    missing = [f"{fn}: {path}" for fn, path, dlq in paths if dlq is None]
    assert not missing, "no DLQ / OnFailure destination for:\n" + "\n".join(missing)


def _alarms(transformed: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [props for _, props in resources_of(transformed, "AWS::CloudWatch::Alarm")]


def _alarm_for(
    transformed: Mapping[str, Any], namespace: str, metric: str, dimension: str, target: str
) -> dict[str, Any] | None:
    for alarm in _alarms(transformed):
        dims = {d["Name"]: ref_id(d["Value"]) for d in alarm.get("Dimensions") or []}
        if (
            alarm.get("Namespace") == namespace
            and alarm.get("MetricName") == metric
            and dims.get(dimension) == target
        ):
            return alarm
    return None


def _notifies_alarm_topic(alarm: Mapping[str, Any]) -> bool:
    return {"Ref": "AlarmTopic"} in (alarm.get("AlarmActions") or [])


@pytest.mark.parametrize("function", FUNCTIONS)
@pytest.mark.parametrize("metric", ["Errors", "Throttles"])
def test_every_function_alarms_on_errors_and_throttles(
    transformed: dict[str, Any], function: str, metric: str
) -> None:
    alarm = _alarm_for(transformed, "AWS/Lambda", metric, "FunctionName", function)
    assert alarm is not None, f"add an AWS/Lambda {metric} alarm for {function}"
    assert _notifies_alarm_topic(alarm)


def test_every_dead_letter_queue_alarms_on_depth(transformed: dict[str, Any]) -> None:
    dlqs = {
        dlq
        for _, _, dlq in async_paths(transformed)
        if dlq and transformed["Resources"][dlq]["Type"] == "AWS::SQS::Queue"
    }
    assert dlqs
    for dlq in sorted(dlqs):
        alarm = _alarm_for(
            transformed, "AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", dlq
        )
        assert alarm is not None, f"add a depth alarm for the DLQ {dlq}"
        assert _notifies_alarm_topic(alarm)
        assert alarm["Threshold"] == 0
        assert alarm["ComparisonOperator"] == "GreaterThanThreshold"


def test_connection_notifications_can_reach_an_encrypted_topic() -> None:
    """vpce.amazonaws.com must be allowed to publish (topic policy) and to use the key; the AWS
    managed alias/aws/sns key cannot grant that."""
    resources = SOURCE["Resources"]
    topic = resources["NotificationTopic"]["Properties"]
    key_id = ref_id(topic["KmsMasterKeyId"])
    assert key_id is not None, (
        "use a customer managed key (alias/aws/sns blocks vpce.amazonaws.com)"
    )
    statements = resources[key_id]["Properties"]["KeyPolicy"]["Statement"]
    assert any(
        s["Principal"].get("Service") == "vpce.amazonaws.com"
        and "kms:GenerateDataKey*" in s["Action"]
        for s in statements
    )


# ---------------------------------------------------------------------- dashboard
def emitted_metric_names() -> set[str]:
    """Names passed to add_metric(...) anywhere in the Lambda package (literals, and literal
    names a loop feeds to add_metric)."""
    names: set[str] = set()
    for path in (ROOT / "functions" / "vpce_approver").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_metric":
                first = node.args[0] if node.args else None
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    names.add(first.value)
            if isinstance(node, ast.For) and isinstance(node.iter, ast.Tuple | ast.List):
                body_calls = [
                    n
                    for n in ast.walk(node)
                    if isinstance(n, ast.Call) and getattr(n.func, "attr", None) == "add_metric"
                ]
                if body_calls:
                    for element in node.iter.elts:
                        if isinstance(element, ast.Tuple) and isinstance(
                            element.elts[0], ast.Constant
                        ):
                            names.add(str(element.elts[0].value))
    return names


def dashboard_metrics() -> tuple[set[str], set[str]]:
    res = Resolver(SOURCE, stack=STACK, parameters=policies.FEATURES)
    body = json.loads(res.resolve(SOURCE["Resources"]["Dashboard"]["Properties"]["DashboardBody"]))
    app: set[str] = set()
    functions: set[str] = set()
    for widget in body["widgets"]:
        for metric in widget.get("properties", {}).get("metrics", []):
            namespace, name, *dims = [m for m in metric if isinstance(m, str)]
            if namespace == "VpceApprover":
                app.add(name)
                assert dims == ["service", "vpce-approver", "deployment", STACK], metric
            if namespace == "AWS/Lambda":
                functions.add(dims[1])
    return app, functions


def test_dashboard_shows_every_metric_the_code_emits() -> None:
    app, _ = dashboard_metrics()
    emitted = emitted_metric_names()
    assert {"Accepted", "Rejected", "Escalated", "DecisionLatency"} <= emitted
    assert not emitted - app, f"add to the dashboard: {sorted(emitted - app)}"


def test_dashboard_shows_every_function() -> None:
    _, shown = dashboard_metrics()
    res = Resolver(SOURCE, stack=STACK, parameters=policies.FEATURES)
    expected = {res.physical_name(f) for f in FUNCTIONS}
    assert not expected - shown, f"add to the dashboard: {sorted(expected - shown)}"


# ---------------------------------------------------------------------- tables
MODEL_SETTINGS: dict[type[Model], str] = {
    tables.RegistryItem: "registry_table",
    tables.AuditItem: "audit_table",
    tables.EscalationItem: "escalations_table",
}
ATTRIBUTE_TYPES = {UnicodeAttribute: "S", NumberAttribute: "N", BinaryAttribute: "B"}


def _type_of(attribute: Any) -> str:
    for cls, code in ATTRIBUTE_TYPES.items():
        if isinstance(attribute, cls):
            return code
    raise AssertionError(f"{attribute!r} cannot be a key attribute")


def _keys(attributes: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    out = []
    for attr in attributes.values():
        if attr.is_hash_key:
            out.append((attr.attr_name, "HASH", _type_of(attr)))
        elif attr.is_range_key:
            out.append((attr.attr_name, "RANGE", _type_of(attr)))
    return sorted(out, key=lambda k: k[1])


def _template_table(name: str) -> dict[str, Any]:
    res = Resolver(SOURCE, stack=STACK)
    found = [
        props
        for _, props in resources_of(SOURCE, "AWS::DynamoDB::Table")
        if res.resolve(props.get("TableName")) == name
    ]
    assert len(found) == 1, f"template.yaml has no table named {name}"
    return found[0]


def _template_keys(schema: list[Mapping[str, str]], types: Mapping[str, str]) -> list[Any]:
    return sorted(
        ((k["AttributeName"], k["KeyType"], types[k["AttributeName"]]) for k in schema),
        key=lambda k: k[1],
    )


def test_every_model_is_mapped_to_a_setting() -> None:
    assert set(MODEL_SETTINGS) == set(tables.ALL_MODELS)
    assert set(MODEL_SETTINGS.values()) == set(cfn_template.TABLES.values())


@pytest.mark.parametrize("model", list(MODEL_SETTINGS), ids=lambda m: m.__name__)
def test_tables_match_the_pynamodb_models(model: type[Model]) -> None:
    name = getattr(Settings.from_env({}, stack=STACK), MODEL_SETTINGS[model])
    table = _template_table(name)
    types = {a["AttributeName"]: a["AttributeType"] for a in table["AttributeDefinitions"]}
    assert _template_keys(table["KeySchema"], types) == _keys(model.get_attributes())
    template_gsis = {
        g["IndexName"]: (_template_keys(g["KeySchema"], types), g["Projection"]["ProjectionType"])
        for g in table.get("GlobalSecondaryIndexes") or []
    }
    model_gsis = {
        index.Meta.index_name: (_keys(index.Meta.attributes), index.Meta.projection.projection_type)
        for index in vars(model).values()
        if isinstance(index, GlobalSecondaryIndex)
    }
    assert template_gsis == model_gsis
    # Every attribute the template declares is a key of the table or of an index.
    used = {k[0] for k in _keys(model.get_attributes())} | {
        k[0] for keys, _ in model_gsis.values() for k in keys
    }
    assert set(types) == used


@pytest.mark.parametrize("function", FUNCTIONS)
def test_table_settings_name_tables_of_the_template(function: str) -> None:
    spec = invoke.function_spec(function)
    names = {
        Resolver(SOURCE, stack=STACK).resolve(props.get("TableName"))
        for _, props in resources_of(SOURCE, "AWS::DynamoDB::Table")
    }
    for key, value in spec.environment.items():
        if key.endswith("_TABLE"):
            assert value in names, f"{function}: {key}={value} is not a table of the template"


def test_registry_table_is_protected_in_prod() -> None:
    props = SOURCE["Resources"]["RegistryTable"]["Properties"]
    prod = Resolver(SOURCE, stack=STACK, parameters={"Environment": "prod"})
    dev = Resolver(SOURCE, stack=STACK)
    assert prod.resolve(props["DeletionProtectionEnabled"]) is True
    assert dev.resolve(props["DeletionProtectionEnabled"]) is False
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert props["SSESpecification"]["SSEEnabled"] is True
    assert props["StreamSpecification"]["StreamViewType"] == "NEW_AND_OLD_IMAGES"
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}


# ---------------------------------------------------------------------- provider service
def test_provider_service_exists_only_with_its_parameters() -> None:
    gated = {
        logical_id
        for logical_id, resource in SOURCE["Resources"].items()
        if logical_id.startswith("Provider")
    }
    assert gated
    assert all(SOURCE["Resources"][i].get("Condition") == "HasProviderService" for i in gated)
    off = Resolver(SOURCE, stack=STACK)
    assert off.condition("HasProviderService") is False
    on = Resolver(
        SOURCE,
        stack=STACK,
        parameters={
            "ProviderVpcId": "vpc-0123456789abcdef0",
            "ProviderSubnetIds": "subnet-0aaa1111bbbb2222c,subnet-0ddd3333eeee4444f",
            "ProviderServicePort": "443",
        },
    )
    assert on.condition("HasProviderService") is True
    assert on.condition("HasProviderPrivateDns") is False
    service = SOURCE["Resources"]["ProviderEndpointService"]["Properties"]
    assert service["AcceptanceRequired"] is True
    assert {"Key": "vpce-approver:managed", "Value": STACK} in on.resolve(service["Tags"])
    assert not list(resources_of(SOURCE, "AWS::EC2::VPCEndpointServicePermissions"))


def test_template_outputs_stay_within_limits(transformed: dict[str, Any]) -> None:
    assert len(transformed["Resources"]) <= 500
    assert len(transformed.get("Outputs", {})) <= 200
    assert len(Path(cfn_template.TEMPLATE).read_bytes()) < 1_000_000


# ---------------------------------------------------------------------- samconfig.toml
def _samconfig() -> dict[str, Any]:
    import tomllib

    with (ROOT / "samconfig.toml").open("rb") as handle:
        return tomllib.load(handle)


@pytest.mark.parametrize("environment", ["default", "prod"])
def test_samconfig_environments_lint_and_pass_valid_parameters(environment: str) -> None:
    import shlex

    config = _samconfig()[environment]
    assert config["validate"]["parameters"]["lint"] is True
    deploy = config["deploy"]["parameters"]
    assert deploy["confirm_changeset"] is True
    overrides = dict(item.split("=", 1) for item in shlex.split(deploy["parameter_overrides"]))
    resolver = Resolver(
        SOURCE, stack=config["global"]["parameters"]["stack_name"], parameters=overrides
    )
    for name in overrides:
        resolver.parameter(name)  # unknown names and values outside AllowedValues raise
    expected = {"default": "dev", "prod": "prod"}[environment]
    assert overrides["Environment"] == expected
    assert overrides["ShadowMode"] == ("true" if environment == "default" else "false")
