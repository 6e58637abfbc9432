"""IAM of template.yaml, offline: transform the SAM template (samtranslator), collect each
function's execution-role statements with concrete ARNs, and decide whether an AWS call is allowed.

The evaluation is a deliberately small IAM subset, strict where it cannot be sure: Action /
NotAction and Resource / NotResource with `*` and `?` wildcards, explicit Deny wins, and
conditions with the String/Arn/Bool operators (`...IfExists` too) on keys the caller supplies
(e.g. `aws:ResourceTag/vpce-approver:managed`). A condition on any other key or operator raises
`UnsupportedCondition`: the check fails loudly instead of guessing. Managed policies are
evaluated from MANAGED_POLICIES (their published documents, trimmed to what matters here); an
unknown managed policy ARN raises.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import template as cfn_template
from .intrinsics import Resolver

STACK = "vpce-approver"
REGION = "us-east-1"
ACCOUNT = "123456789012"
# Parameter values that switch every optional part of the template on (Slack), so that the checks
# see every function; the provider service has no function and stays off.
FEATURES = {
    "SlackChannel": "C0ESCALATE1",
    "SlackTeamId": "T0EXAMPLE1",
    "SlackApprovers": "U0APPROVER1",
    "SlackBotTokenSecretArn": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:slack-bot-AbCdEf",
    "SlackSigningSecretArn": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:slack-sign-AbCdEf",
}

# AWS managed policies SAM attaches (published documents; logs and X-Ray are never called by the
# code through boto3, but they are here so that wildcard checks see them).
MANAGED_POLICIES: dict[str, list[dict[str, Any]]] = {
    "service-role/AWSLambdaBasicExecutionRole": [
        {
            "Effect": "Allow",
            "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": "*",
        }
    ],
    "AWSXrayWriteOnlyAccess": [
        {
            "Effect": "Allow",
            "Action": [
                "xray:PutTraceSegments",
                "xray:PutTelemetryRecords",
                "xray:GetSamplingRules",
                "xray:GetSamplingTargets",
                "xray:GetSamplingStatisticSummaries",
            ],
            "Resource": "*",
        }
    ],
    "service-role/AWSLambdaSQSQueueExecutionRole": [
        {
            "Effect": "Allow",
            "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"],
            "Resource": "*",
        },
        {
            "Effect": "Allow",
            "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": "*",
        },
    ],
    "service-role/AWSLambdaDynamoDBExecutionRole": [
        {
            "Effect": "Allow",
            "Action": [
                "dynamodb:DescribeStream",
                "dynamodb:GetRecords",
                "dynamodb:GetShardIterator",
                "dynamodb:ListStreams",
            ],
            "Resource": "*",
        },
        {
            "Effect": "Allow",
            "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": "*",
        },
    ],
}

STRING_OPERATORS = {"StringEquals", "StringLike", "ArnEquals", "ArnLike", "Bool"}
NEGATED_OPERATORS = {"StringNotEquals", "StringNotLike", "ArnNotEquals", "ArnNotLike"}


class UnsupportedCondition(ValueError):
    """A policy condition this evaluator cannot decide (so it refuses to guess)."""


class _NoManagedPolicies:
    """samtranslator's managed-policy loader: the template names managed policies by ARN only."""

    def load(self) -> dict[str, str]:
        return {}


def transform(path: Path = cfn_template.TEMPLATE) -> dict[str, Any]:
    """The template after the SAM transform (what CloudFormation would deploy)."""
    from samtranslator.translator.transform import transform as sam_transform

    source = copy.deepcopy(cfn_template.load(path))
    # `sam build`/`package` would upload the code; the transform only needs an S3 URI.
    glob = (source.get("Globals") or {}).get("Function") or {}
    if isinstance(glob.get("CodeUri"), str):
        glob["CodeUri"] = "s3://local-build/functions.zip"
    for resource in source.get("Resources", {}).values():
        props = resource.get("Properties") or {}
        if resource.get("Type") == "AWS::Serverless::Function" and isinstance(
            props.get("CodeUri"), str
        ):
            props["CodeUri"] = "s3://local-build/functions.zip"
    saved = os.environ.get("AWS_DEFAULT_REGION")
    os.environ["AWS_DEFAULT_REGION"] = REGION  # samtranslator reads the region from boto3
    try:
        result: dict[str, Any] = sam_transform(
            source, {"AWS::Region": REGION, "AWS::AccountId": ACCOUNT}, _NoManagedPolicies()
        )
    finally:
        if saved is None:
            os.environ.pop("AWS_DEFAULT_REGION", None)
        else:
            os.environ["AWS_DEFAULT_REGION"] = saved
    return result


def resolver(template: Mapping[str, Any], **parameters: str) -> Resolver:
    return Resolver(template, stack=STACK, region=REGION, account=ACCOUNT, parameters=parameters)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def wildcard_match(pattern: str, value: str, *, case_sensitive: bool = True) -> bool:
    regex = "^" + re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".") + "$"
    return re.match(regex, value, 0 if case_sensitive else re.IGNORECASE) is not None


@dataclass(frozen=True)
class Statement:
    effect: str
    actions: tuple[str, ...] = ()
    not_actions: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    not_resources: tuple[str, ...] = ()
    condition: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    source: str = ""  # the policy it came from, for messages

    @classmethod
    def from_json(cls, raw: Mapping[str, Any], source: str) -> Statement:
        return cls(
            effect=str(raw.get("Effect", "Allow")),
            actions=tuple(str(a) for a in _as_list(raw.get("Action"))),
            not_actions=tuple(str(a) for a in _as_list(raw.get("NotAction"))),
            resources=tuple(str(r) for r in _as_list(raw.get("Resource"))),
            not_resources=tuple(str(r) for r in _as_list(raw.get("NotResource"))),
            condition=dict(raw.get("Condition") or {}),
            source=source,
        )

    def matches_action(self, action: str) -> bool:
        if self.not_actions:
            return not any(
                wildcard_match(a, action, case_sensitive=False) for a in self.not_actions
            )
        return any(wildcard_match(a, action, case_sensitive=False) for a in self.actions)

    def matches_resource(self, resource: str) -> bool:
        if self.not_resources:
            return not any(wildcard_match(r, resource) for r in self.not_resources)
        return any(wildcard_match(r, resource) for r in self.resources)

    def conditions_hold(self, context: Mapping[str, str]) -> bool:
        for operator, block in self.condition.items():
            base = operator.removesuffix("IfExists")
            if_exists = operator.endswith("IfExists")
            if base not in STRING_OPERATORS | NEGATED_OPERATORS:
                raise UnsupportedCondition(f"{self.source}: condition operator {operator}")
            for key, expected in block.items():
                if key not in context and not key.startswith(
                    ("aws:ResourceTag/", "ec2:ResourceTag/")
                ):
                    raise UnsupportedCondition(f"{self.source}: condition key {key}")
                actual = context.get(key)
                if actual is None:
                    if if_exists:
                        continue
                    return False  # a missing key never satisfies a condition
                values = [str(v) for v in _as_list(expected)]
                like = base.endswith("Like")
                hit = (
                    any(wildcard_match(v, actual) if like else v == actual for v in values)
                    if base != "Bool"
                    else actual.lower() in {v.lower() for v in values}
                )
                if base in NEGATED_OPERATORS:
                    hit = not hit
                if not hit:
                    return False
        return True

    def applies(self, action: str, resource: str, context: Mapping[str, str]) -> bool:
        return (
            self.matches_action(action)
            and self.matches_resource(resource)
            and self.conditions_hold(context)
        )

    @property
    def is_mutating_ec2(self) -> bool:
        return any(
            a.lower().startswith("ec2:") and not _read_only(a.split(":", 1)[1])
            for a in self.actions
        ) or bool(self.not_actions)


def _read_only(operation: str) -> bool:
    return operation.startswith(("Describe", "Get", "List"))


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str


@dataclass
class FunctionPolicy:
    logical_id: str
    role: str
    statements: list[Statement]

    def decide(self, action: str, resource: str, context: Mapping[str, str]) -> Decision:
        denies = [
            s
            for s in self.statements
            if s.effect == "Deny" and s.applies(action, resource, context)
        ]
        if denies:
            return Decision(False, f"denied by {denies[0].source}")
        allows = [
            s
            for s in self.statements
            if s.effect == "Allow" and s.applies(action, resource, context)
        ]
        if allows:
            return Decision(True, f"allowed by {allows[0].source}")
        near = [
            s.source for s in self.statements if s.effect == "Allow" and s.matches_action(action)
        ]
        hint = (
            f" (action matched in {', '.join(near)}, resource or condition did not)" if near else ""
        )
        return Decision(False, f"no statement allows {action} on {resource}{hint}")


def _role_id(function: Mapping[str, Any]) -> str:
    role = (function.get("Properties") or {}).get("Role")
    if isinstance(role, Mapping) and "Fn::GetAtt" in role:
        target = role["Fn::GetAtt"]
        return str(target[0] if isinstance(target, list) else str(target).split(".")[0])
    raise ValueError(f"function role {role!r} is not a role of this template")


def function_policies(
    transformed: Mapping[str, Any], **parameters: str
) -> dict[str, FunctionPolicy]:
    """{function logical ID: its role's statements}, intrinsics resolved locally."""
    res = resolver(transformed, **parameters)
    resources: Mapping[str, Any] = transformed["Resources"]
    out: dict[str, FunctionPolicy] = {}
    for logical_id, resource in resources.items():
        if resource.get("Type") != "AWS::Lambda::Function":
            continue
        role_id = _role_id(resource)
        role = resources[role_id]["Properties"]
        statements: list[Statement] = []
        for entry in role.get("Policies") or []:
            policy = res.resolve(entry)  # SAM may wrap an entry in Fn::If
            if not policy:
                continue
            document = policy["PolicyDocument"]
            name = f"{role_id}/{policy['PolicyName']}"
            statements += [Statement.from_json(s, name) for s in _as_list(document["Statement"])]
        for attached_id, attached in resources.items():
            if attached.get("Type") in {"AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"} and any(
                r == {"Ref": role_id} for r in (attached["Properties"].get("Roles") or [])
            ):
                document = res.resolve(attached["Properties"]["PolicyDocument"])
                statements += [
                    Statement.from_json(s, attached_id) for s in _as_list(document["Statement"])
                ]
        for arn in res.resolve(role.get("ManagedPolicyArns") or []):
            name = str(arn).split(":policy/", 1)[-1]
            if name not in MANAGED_POLICIES:
                raise ValueError(f"{role_id}: managed policy {arn} is unknown to the checks")
            statements += [
                Statement.from_json(s, f"managed:{name}") for s in MANAGED_POLICIES[name]
            ]
        out[logical_id] = FunctionPolicy(logical_id, role_id, statements)
    return out


# ---------------------------------------------------------------------- calls -> IAM requests
IAM_PREFIX = {"monitoring": "cloudwatch", "streams.dynamodb": "dynamodb", "email": "ses"}
# EC2 actions that take the vpc-endpoint-service resource (Service Authorization Reference).
EC2_SERVICE_RESOURCE = {
    "AcceptVpcEndpointConnections",
    "RejectVpcEndpointConnections",
    "ModifyVpcEndpointServicePermissions",
    "DescribeVpcEndpointServicePermissions",
    "ModifyVpcEndpointServiceConfiguration",
    "StartVpcEndpointServicePrivateDnsVerification",
    # Modelled on the service it names. Unverified offline: the Service Authorization Reference may
    # also list the vpc-endpoint-connection-notification resource for it (docs/DEPLOY.md).
    "CreateVpcEndpointConnectionNotification",
}
# Actions that need no permission at all.
NO_PERMISSION = {"sts:GetCallerIdentity"}
# Organizations actions that take a resource (Service Authorization Reference), by the request
# parameter naming it. Its ARN is arn:aws:organizations::<management account>:<type>/o-<org>/<id>;
# a call names only the ID, so the management account and organization are placeholders here:
# the template scopes these actions by resource type (root, ou, account), never by organization.
ORGANIZATIONS_RESOURCE_PARAM = {
    "ListAccountsForParent": "ParentId",
    "ListOrganizationalUnitsForParent": "ParentId",
    "ListChildren": "ParentId",
    "ListParents": "ChildId",
    "DescribeAccount": "AccountId",
    "DescribeOrganizationalUnit": "OrganizationalUnitId",
}
ORGANIZATION_PLACEHOLDER = "o-exampleorg1"


def organizations_arn(resource_id: str) -> str:
    """The ARN IAM authorizes an Organizations call on, from the ID the call names."""
    base = f"arn:aws:organizations::{ACCOUNT}"
    if resource_id.startswith("r-"):
        return f"{base}:root/{ORGANIZATION_PLACEHOLDER}/{resource_id}"
    if resource_id.startswith("ou-"):
        return f"{base}:ou/{ORGANIZATION_PLACEHOLDER}/{resource_id}"
    return f"{base}:account/{ORGANIZATION_PLACEHOLDER}/{resource_id}"


@dataclass(frozen=True)
class Call:
    """One AWS API call the code made, as IAM sees it."""

    action: str
    resources: tuple[str, ...]
    params: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)


def _table_arns(operation: str, params: Mapping[str, Any]) -> list[str]:
    def arn(table: str, index: str | None = None) -> str:
        base = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{table}"
        return f"{base}/index/{index}" if index else base

    if "TableName" in params:
        return [arn(str(params["TableName"]), params.get("IndexName"))]
    if "RequestItems" in params:
        return [arn(str(t)) for t in params["RequestItems"]]
    if "TransactItems" in params:
        return [
            arn(str(body["TableName"]))
            for item in params["TransactItems"]
            for body in item.values()
            if isinstance(body, Mapping) and "TableName" in body
        ]
    return ["*"]


UNKNOWN_STACK_ID = "00000000-0000-0000-0000-000000000000"


def to_call(service: str, operation: str, params: Mapping[str, Any]) -> Call:
    prefix = IAM_PREFIX.get(service, service)
    action = f"{prefix}:{operation}"
    resources: list[str] = ["*"]
    if prefix == "dynamodb":
        resources = _table_arns(operation, params)
    elif prefix == "ec2" and operation in EC2_SERVICE_RESOURCE and "ServiceId" in params:
        resources = [f"arn:aws:ec2:{REGION}:{ACCOUNT}:vpc-endpoint-service/{params['ServiceId']}"]
    elif prefix == "ec2" and operation in {"CreateTags", "DeleteTags"} and "Resources" in params:
        resources = [  # tagging is authorized on each tagged resource (endpoint services here)
            f"arn:aws:ec2:{REGION}:{ACCOUNT}:vpc-endpoint-service/{r}"
            if str(r).startswith("vpce-svc-")
            else "*"
            for r in params["Resources"]
        ]
    elif prefix == "organizations" and operation in ORGANIZATIONS_RESOURCE_PARAM:
        resource_id = params.get(ORGANIZATIONS_RESOURCE_PARAM[operation])
        resources = [organizations_arn(str(resource_id))] if resource_id else ["*"]
    elif prefix == "cloudformation" and "StackName" in params:
        # By name, IAM authorizes the stack's ARN (stack/<name>/<id>); the ID is not in the call.
        name = str(params["StackName"])
        resources = [
            name
            if name.startswith("arn:")
            else f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{name}/{UNKNOWN_STACK_ID}"
        ]
    elif prefix == "sts" and operation == "AssumeRole" and "RoleArn" in params:
        resources = [str(params["RoleArn"])]
    elif prefix == "sqs" and "QueueUrl" in params:
        queue = str(params["QueueUrl"]).rstrip("/").rsplit("/", 1)[-1]
        resources = [f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}"]
    elif prefix == "sns" and ("TopicArn" in params or "TargetArn" in params):
        resources = [str(params.get("TopicArn") or params["TargetArn"])]
    elif prefix == "secretsmanager" and "SecretId" in params:
        secret = str(params["SecretId"])
        resources = [
            secret
            if secret.startswith("arn:")
            else f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{secret}"
        ]
    elif prefix == "lambda" and "FunctionName" in params:
        name = str(params["FunctionName"])
        resources = [
            name
            if name.startswith("arn:")
            else f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
        ]
    return Call(action, tuple(resources), params)


def statements_on_any_resource(policy: FunctionPolicy) -> Iterable[Statement]:
    return (
        s
        for s in policy.statements
        if s.effect == "Allow" and ("*" in s.resources or s.not_resources)
    )


def unique(calls: Sequence[Call]) -> list[Call]:
    seen: dict[tuple[str, tuple[str, ...]], Call] = {}
    for call in calls:
        seen.setdefault((call.action, call.resources), call)
    return list(seen.values())
