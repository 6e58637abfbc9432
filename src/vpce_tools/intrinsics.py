"""Resolve CloudFormation intrinsics of template.yaml to local values, offline.

`vpce-approver invoke` uses this to build a function's environment (Globals + function, `!Ref` of a
table -> `<stack>-registry`, of a parameter -> its default or an override), and the template tests
use it to turn the transformed template's IAM policies into concrete ARNs. Nothing here calls AWS.

Physical names follow the template where it names a resource (`TableName: !Sub ${AWS::StackName}-…`)
and `<stack>-<LogicalId>` otherwise; ARNs are built for the given partition, region and account.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# The property that carries an explicit physical name, per resource type.
NAME_PROPERTIES = {
    "AWS::DynamoDB::Table": "TableName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::SNS::Topic": "TopicName",
    "AWS::Serverless::Function": "FunctionName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::IAM::Role": "RoleName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::CloudWatch::Alarm": "AlarmName",
    "AWS::CloudWatch::Dashboard": "DashboardName",
}
_SUB = re.compile(r"\$\{(!?)([^}]*)\}")


class ResolveError(ValueError):
    """A template value that cannot be resolved offline (unknown name, unsupported intrinsic)."""


@dataclass
class Resolver:
    """Resolves intrinsics against one template and one (local) deployment."""

    template: Mapping[str, Any]
    stack: str = "vpce-approver"
    region: str = "us-east-1"
    account: str = "123456789012"
    partition: str = "aws"
    parameters: Mapping[str, str] = field(default_factory=dict)
    queue_url_base: str | None = None  # e.g. the emulator's URL; default sqs.<region>.amazonaws.com

    def __post_init__(self) -> None:
        declared = self.template.get("Parameters", {}) or {}
        unknown = sorted(set(self.parameters) - set(declared))
        if unknown:
            raise ResolveError(f"unknown template parameter(s): {', '.join(unknown)}")
        self._conditions: dict[str, bool] = {}

    # ------------------------------------------------------------------ names and ARNs
    @property
    def resources(self) -> Mapping[str, Any]:
        resources: Mapping[str, Any] = self.template.get("Resources", {}) or {}
        return resources

    def resource(self, logical_id: str) -> Mapping[str, Any]:
        try:
            resource: Mapping[str, Any] = self.resources[logical_id]
        except KeyError:
            raise ResolveError(f"no resource {logical_id!r} in the template") from None
        return resource

    def physical_name(self, logical_id: str) -> str:
        resource = self.resource(logical_id)
        prop = NAME_PROPERTIES.get(str(resource.get("Type")))
        explicit = (resource.get("Properties") or {}).get(prop) if prop else None
        if explicit is not None:
            return str(self.resolve(explicit))
        return f"{self.stack}-{logical_id}"

    def arn(self, service: str, resource: str, *, region: bool = True, account: bool = True) -> str:
        return (
            f"arn:{self.partition}:{service}:{self.region if region else ''}:"
            f"{self.account if account else ''}:{resource}"
        )

    def ref(self, name: str) -> Any:
        pseudo = {
            "AWS::StackName": self.stack,
            "AWS::Region": self.region,
            "AWS::AccountId": self.account,
            "AWS::Partition": self.partition,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackId": self.arn("cloudformation", f"stack/{self.stack}/local"),
        }
        if name in pseudo:
            return pseudo[name]
        if name == "AWS::NoValue":
            return None
        declared = self.template.get("Parameters", {}) or {}
        if name in declared:
            return self.parameter(name)
        kind = str(self.resource(name).get("Type"))
        physical = self.physical_name(name)
        if kind == "AWS::SQS::Queue":
            base = self.queue_url_base or f"https://sqs.{self.region}.amazonaws.com"
            return f"{base.rstrip('/')}/{self.account}/{physical}"
        if kind == "AWS::SNS::Topic":
            return self.arn("sns", physical)
        return physical

    def get_att(self, logical_id: str, attribute: str) -> Any:
        kind = str(self.resource(logical_id).get("Type"))
        name = self.physical_name(logical_id)
        table = self.arn("dynamodb", f"table/{name}")
        known: dict[tuple[str, str], Any] = {
            ("AWS::DynamoDB::Table", "Arn"): table,
            ("AWS::DynamoDB::Table", "StreamArn"): f"{table}/stream/local",
            ("AWS::SQS::Queue", "Arn"): self.arn("sqs", name),
            ("AWS::SQS::Queue", "QueueName"): name,
            ("AWS::SQS::Queue", "QueueUrl"): self.ref(logical_id),
            ("AWS::SNS::Topic", "TopicArn"): self.arn("sns", name),
            ("AWS::SNS::Topic", "TopicName"): name,
            ("AWS::Serverless::Function", "Arn"): self.arn("lambda", f"function:{name}"),
            ("AWS::Lambda::Function", "Arn"): self.arn("lambda", f"function:{name}"),
            ("AWS::IAM::Role", "Arn"): self.arn("iam", f"role/{name}", region=False),
            ("AWS::KMS::Key", "Arn"): self.arn("kms", f"key/{name}"),
            ("AWS::CloudWatch::Alarm", "Arn"): self.arn("cloudwatch", f"alarm:{name}"),
            ("AWS::Logs::LogGroup", "Arn"): self.arn("logs", f"log-group:{name}:*"),
        }
        try:
            return known[(kind, attribute)]
        except KeyError:
            return f"{name}.{attribute}"  # opaque but stable: enough for names in strings

    # ------------------------------------------------------------------ parameters, conditions
    def parameter(self, name: str) -> Any:
        declared = (self.template.get("Parameters", {}) or {})[name]
        raw = self.parameters.get(name, declared.get("Default"))
        if raw is None:
            raise ResolveError(f"parameter {name} has no default: pass a value for it")
        allowed = declared.get("AllowedValues")
        if allowed is not None and str(raw) not in {str(a) for a in allowed}:
            raise ResolveError(f"parameter {name}={raw!r}: expected one of {allowed}")
        if str(declared.get("Type", "String")).startswith(("CommaDelimitedList", "List<")):
            if isinstance(raw, list):
                return [str(part) for part in raw]
            return [part.strip() for part in str(raw).split(",")]
        return str(raw)

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            conditions = self.template.get("Conditions", {}) or {}
            if name not in conditions:
                raise ResolveError(f"no condition {name!r} in the template")
            self._conditions[name] = bool(self.resolve(conditions[name]))
        return self._conditions[name]

    # ------------------------------------------------------------------ intrinsics
    def sub(self, text: str, variables: Mapping[str, Any]) -> str:
        def replace(match: re.Match[str]) -> str:
            if match.group(1) == "!":  # ${!Literal} stays ${Literal}
                return "${" + match.group(2) + "}"
            name = match.group(2).strip()
            if name in variables:
                return str(self.resolve(variables[name]))
            if "." in name and not name.startswith("AWS::"):
                logical_id, attribute = name.split(".", 1)
                return str(self.get_att(logical_id, attribute))
            return str(self.ref(name))

        return _SUB.sub(replace, text)

    def resolve(self, value: Any) -> Any:
        """The value with every intrinsic replaced; `!Ref AWS::NoValue` keys are dropped."""
        if isinstance(value, list):
            items = [self.resolve(item) for item in value]
            return [item for item in items if item is not None]
        if not isinstance(value, Mapping):
            return value
        if len(value) == 1:
            [(key, arg)] = value.items()
            if key == "Ref" or key.startswith("Fn::") or key == "Condition":
                return self._intrinsic(key, arg)
        out = {k: self.resolve(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v is not None}

    def _intrinsic(self, key: str, arg: Any) -> Any:
        match key:
            case "Ref":
                return self.ref(str(arg))
            case "Condition" | "Fn::Condition":
                return self.condition(str(arg))
            case "Fn::GetAtt":
                parts = arg.split(".", 1) if isinstance(arg, str) else list(arg)
                return self.get_att(str(parts[0]), str(self.resolve(parts[1])))
            case "Fn::Sub":
                if isinstance(arg, str):
                    return self.sub(arg, {})
                text, variables = arg
                return self.sub(str(text), variables)
            case "Fn::Join":
                separator, items = arg
                resolved = self.resolve(items)
                return str(separator).join(str(i) for i in resolved)
            case "Fn::Select":
                index, items = arg
                return self.resolve(items)[int(self.resolve(index))]
            case "Fn::Split":
                separator, text = arg
                return str(self.resolve(text)).split(str(separator))
            case "Fn::If":
                name, when_true, when_false = arg
                return self.resolve(when_true if self.condition(str(name)) else when_false)
            case "Fn::Equals":
                left, right = (self.resolve(a) for a in arg)
                return str(left) == str(right)
            case "Fn::Not":
                return not self.resolve(arg[0])
            case "Fn::And":
                return all(self.resolve(a) for a in arg)
            case "Fn::Or":
                return any(self.resolve(a) for a in arg)
            case _:
                raise ResolveError(f"{key} cannot be resolved offline")
