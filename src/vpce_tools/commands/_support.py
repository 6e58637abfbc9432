"""Shared plumbing of the registry/services/explain/pending/audit/doctor commands: settings and
deps from the global options, who is acting, times, output formats, and AWS errors as one line."""

from __future__ import annotations

import argparse
import functools
import getpass
import json
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

import boto3
import yaml
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
)

from vpce_approver import runtime
from vpce_approver.config import ConfigError, Settings
from vpce_approver.converge import Deps
from vpce_approver.sweep import MANAGED_TAG_KEY as MANAGED_TAG_KEY  # noqa: PLC0414 - re-export
from vpce_tools.cli import UsageError

OUTPUT_FORMATS = ("table", "json", "yaml")
RELATIVE = re.compile(r"^([+-]?)(\d+)([smhdw])$")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5})


def settings(args: argparse.Namespace) -> Settings:
    try:
        return Settings.from_env(stack=args.stack)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


def deps(args: argparse.Namespace) -> Deps:
    return runtime.build(settings(args))


def require_tables() -> None:
    """Read one item of each table, so that a wrong --stack (or no credentials) fails here, as
    one line through aws_errors, before a command that logs and carries on past each failure."""
    from vpce_approver.tables import AuditItem, EscalationItem, RegistryItem

    for model in (RegistryItem, AuditItem, EscalationItem):
        next(iter(model.scan(limit=1)), None)


def client(name: str, s: Settings) -> Any:
    """A boto3 client for the deployment's region (and the emulator's endpoint, if any)."""
    factory: Any = boto3.client
    kwargs: dict[str, Any] = {"region_name": s.region, "config": CLIENT_CONFIG}
    if s.endpoint_url:
        kwargs["endpoint_url"] = s.endpoint_url
    return factory(name, **kwargs)


def actor(args: argparse.Namespace, s: Settings) -> str:
    """Who is making the change: --by, else the caller's AWS identity, else the local user."""
    if getattr(args, "by", None):
        return str(args.by)
    try:
        return str(client("sts", s).get_caller_identity()["Arn"])
    except (BotoCoreError, ClientError):
        return f"local:{getpass.getuser()}"


def parse_time(text: str, *, past: bool) -> datetime:
    """ISO 8601 (Z or an offset; a bare date is midnight UTC), or relative: 30d, 12h, 90m, 2w.
    Relative times count back from now when `past` (audit --since), forward otherwise."""
    raw = text.strip()
    match = RELATIVE.fullmatch(raw)
    if match:
        sign, amount, unit = match.groups()
        delta = timedelta(**{UNITS[unit]: int(amount)})
        backwards = past if not sign else sign == "-"
        return datetime.now(UTC) - delta if backwards else datetime.now(UTC) + delta
    from vpce_tools.grantfile import parse_when

    try:
        return parse_when(raw, field="time")
    except ValueError as exc:
        raise UsageError(f"{exc} (or use a relative time like 30d, 12h)") from None


def aws_errors[**P](run: Callable[P, int]) -> Callable[P, int]:
    """AWS and DynamoDB failures as one clear line instead of a traceback. What the caller must
    fix (no credentials or region, a --stack whose tables do not exist) is a usage error (exit 2);
    a failure of AWS itself exits 1."""

    @functools.wraps(run)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> int:
        from pynamodb.exceptions import PynamoDBException

        try:
            return run(*args, **kwargs)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code, message = error.get("Code", "Error"), error.get("Message", str(exc))
            operation = getattr(exc, "operation_name", "call")
            print(f"vpce-approver: AWS error: {operation}: {code}: {message}", file=sys.stderr)
        except BotoCoreError as exc:
            _raise_if_setup(exc)
            print(f"vpce-approver: AWS error: {exc}", file=sys.stderr)
        except PynamoDBException as exc:
            _raise_if_setup(exc.cause)
            cause = getattr(exc, "cause_response_code", None)
            if cause == "ResourceNotFoundException":
                raise UsageError(
                    f"DynamoDB table not found: {_table_name(exc)}(is --stack right? tables are"
                    " <stack>-registry, <stack>-audit, <stack>-escalations)"
                ) from None
            print(f"vpce-approver: DynamoDB error: {cause or exc}", file=sys.stderr)
        return 1

    return wrapped


def _raise_if_setup(exc: BaseException | None) -> None:
    """No credentials or no region: the caller's setup, not an AWS failure."""
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        raise UsageError(
            "no AWS credentials found (set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY;"
            " for the emulator, any value and --endpoint-url)"
        ) from None
    if isinstance(exc, NoRegionError):
        raise UsageError("no AWS region (set AWS_REGION or --region before the command)") from None
    if isinstance(exc, ProfileNotFound):
        raise UsageError(str(exc)) from None


def _table_name(exc: Exception) -> str:
    match = re.search(r"on table \((?P<name>[^)]+)\)", str(exc))
    return f"{match['name']} " if match else ""


def add_format(parser: argparse.ArgumentParser, choices: Sequence[str] = OUTPUT_FORMATS) -> None:
    parser.add_argument(
        "--format", "-o", choices=list(choices), default=choices[0], help="output format"
    )


def emit(data: Any, fmt: str, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    if fmt == "json":
        print(json.dumps(data, indent=2, default=str, sort_keys=False), file=out)
    elif fmt == "yaml":
        print(yaml.safe_dump(data, sort_keys=False, allow_unicode=True).rstrip(), file=out)
    else:
        raise ValueError(f"emit: unsupported format {fmt}")


def table(rows: Iterable[Sequence[Any]], header: Sequence[str], out: TextIO | None = None) -> None:
    out = out or sys.stdout
    cells = [[_cell(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in [list(header), *cells]) for i in range(len(header))]
    for row in [list(header), *cells]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip(), file=out)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (list, tuple, set, frozenset)):
        return ",".join(str(v) for v in value) or "-"
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return str(value)


def find_connection(ec2: Any, vpce_id: str) -> Any:
    """The provider-side connection of an endpoint (any of this account's services), read with
    DescribeVpcEndpointConnections; the vpc-endpoint-id filter is re-checked client-side."""
    from vpce_approver import validation as v
    from vpce_approver.ec2 import to_connection

    try:
        v.endpoint_id(vpce_id, field="endpoint")
    except v.ValidationError as exc:
        raise UsageError(str(exc)) from None
    kwargs: dict[str, Any] = {
        "Filters": [{"Name": "vpc-endpoint-id", "Values": [vpce_id]}],
        "MaxResults": 1000,
    }
    while True:
        page = ec2.describe_vpc_endpoint_connections(**kwargs)
        for raw in page.get("VpcEndpointConnections", []):
            if raw.get("VpcEndpointId") == vpce_id:
                return to_connection(dict(raw))
        if not page.get("NextToken"):
            break
        kwargs["NextToken"] = page["NextToken"]
    raise UsageError(
        f"no connection {vpce_id} on an endpoint service of this account and region"
        " (explain/doctor look from the provider's side)"
    )


def age(created: datetime | None, now: datetime | None = None) -> str:
    if created is None:
        return "-"
    seconds = int(((now or datetime.now(UTC)) - created).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"
