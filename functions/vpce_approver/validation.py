"""Input validation shared by the registry, the CLI and every handler.

Everything that can become an allow-list entry or an AWS call argument is checked here, with an
error that names the field and the bad value.
"""

from __future__ import annotations

import re

ACCOUNT_RE = re.compile(r"^\d{12}$")
# AWS Organizations IDs (the API reference's patterns): an OU grant's and an organization grant's
# consumer, and the root an OU path starts from.
ORGANIZATION_RE = re.compile(r"^o-[a-z0-9]{10,32}$")
OU_RE = re.compile(r"^ou-[0-9a-z]{4,32}-[a-z0-9]{8,32}$")
ROOT_RE = re.compile(r"^r-[0-9a-z]{4,32}$")
# An IAM role name (what --principal-role puts after :role/ in every member account's ARN).
ROLE_NAME_RE = re.compile(r"^[A-Za-z0-9+=,.@_-]{1,64}$")
SERVICE_ID_RE = re.compile(r"^vpce-svc-[0-9a-f]{8,17}$")
ENDPOINT_ID_RE = re.compile(r"^vpce-[0-9a-f]{8,17}$")
REGION_RE = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d$")
# Allowed principals for an endpoint service: account root, an IAM role or user without a path.
# ARNs with paths are not supported by ModifyVpcEndpointServicePermissions (see REFERENCE.md).
PRINCIPAL_RE = re.compile(
    r"^arn:(?P<partition>aws|aws-cn|aws-us-gov):iam::(?P<account>\d{12}):"
    r"(?:root|(?:role|user)/[A-Za-z0-9+=,.@_-]{1,64})$"
)
WILDCARD = "*"


class ValidationError(ValueError):
    """A value that must not reach the registry, an allow-list or an AWS call."""

    def __init__(self, field: str, value: object, why: str) -> None:
        self.field = field
        self.value = value
        self.why = why
        super().__init__(f"{field}: {value!r} {why}")


def account_id(value: object, field: str = "consumer") -> str:
    if not isinstance(value, str) or not ACCOUNT_RE.fullmatch(value):
        raise ValidationError(field, value, "is not a 12-digit AWS account ID")
    return value


def consumer(value: object, field: str = "consumer") -> str:
    """A grant's consumer: a 12-digit account, an OU (ou-…) or a whole organization (o-…)."""
    if isinstance(value, str) and (
        ACCOUNT_RE.fullmatch(value) or OU_RE.fullmatch(value) or ORGANIZATION_RE.fullmatch(value)
    ):
        return value
    raise ValidationError(
        field,
        value,
        "is not a 12-digit AWS account ID, an OU ID (ou-xxxx-xxxxxxxx) or an organization ID"
        " (o-xxxxxxxxxx)",
    )


def role_name(value: object, field: str = "principal_role") -> str:
    if not isinstance(value, str) or not ROLE_NAME_RE.fullmatch(value):
        raise ValidationError(
            field, value, "is not an IAM role name (1-64 of A-Z a-z 0-9 +=,.@_-, no path)"
        )
    return value


def partition_of(region_name: str | None) -> str:
    """The ARN partition of a region (aws, aws-cn, aws-us-gov)."""
    name = region_name or ""
    if name.startswith("cn-"):
        return "aws-cn"
    if name.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def service_id(value: object, field: str = "service_id", *, allow_wildcard: bool = False) -> str:
    if allow_wildcard and value == WILDCARD:
        return WILDCARD
    if not isinstance(value, str) or not SERVICE_ID_RE.fullmatch(value):
        expected = "a vpce-svc-… ID or '*'" if allow_wildcard else "a vpce-svc-… ID"
        raise ValidationError(field, value, f"is not {expected}")
    return value


def endpoint_id(value: object, field: str = "vpc_endpoint_id") -> str:
    if not isinstance(value, str) or not ENDPOINT_ID_RE.fullmatch(value):
        raise ValidationError(field, value, "is not a vpce-… endpoint ID")
    return value


def region(value: object, field: str = "region") -> str:
    if not isinstance(value, str) or not REGION_RE.fullmatch(value):
        raise ValidationError(field, value, "is not an AWS region name (like eu-west-1)")
    return value


def principal(value: object, field: str = "principals", *, allow_wildcard: bool = False) -> str:
    """An allow-list entry. `*` (everyone) is refused unless explicitly enabled."""
    if value == WILDCARD:
        if allow_wildcard:
            return WILDCARD
        raise ValidationError(
            field, value, "would allow every AWS account (set ALLOW_WILDCARD_PRINCIPAL to permit)"
        )
    if not isinstance(value, str) or not PRINCIPAL_RE.fullmatch(value):
        raise ValidationError(
            field,
            value,
            "is not an IAM principal ARN (arn:aws:iam::<account>:root, :role/<name> or"
            " :user/<name>,"
            " no path)",
        )
    return value


def principal_account(arn: str) -> str | None:
    match = PRINCIPAL_RE.fullmatch(arn)
    return match.group("account") if match else None
