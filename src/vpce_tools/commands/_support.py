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


ORGANIZATION_GRANTS_PARAMETER = "OrganizationGrants"
ORGANIZATIONS_ROLE_PARAMETER = "OrganizationsRoleArn"


def stack_parameters(s: Settings, stack: str) -> dict[str, str] | None:
    """The deployed stack's parameters (None: the stack cannot be read, e.g. the emulator)."""
    try:
        found = client("cloudformation", s).describe_stacks(StackName=stack).get("Stacks", [])
    except (BotoCoreError, ClientError):
        return None
    if not found:
        return None
    return {
        str(p.get("ParameterKey")): str(p.get("ParameterValue", ""))
        for p in found[0].get("Parameters", [])
    }


def organization_setting(
    s: Settings, stack: str, parameters: dict[str, str] | None = None
) -> tuple[bool, str]:
    """Whether the deployment reads AWS Organizations (OU/organization grants decide), and
    where that was found: ORGANIZATION_GRANTS in this shell when set, else the stack's
    OrganizationGrants parameter, else the default (off)."""
    import os

    if os.environ.get("ORGANIZATION_GRANTS", "").strip():
        return s.organization_grants, "ORGANIZATION_GRANTS in this shell"
    if parameters is None:
        parameters = stack_parameters(s, stack)
    if parameters is not None and ORGANIZATION_GRANTS_PARAMETER in parameters:
        value = parameters[ORGANIZATION_GRANTS_PARAMETER].strip().lower() == "true"
        return value, f"stack {stack}'s {ORGANIZATION_GRANTS_PARAMETER} parameter"
    return s.organization_grants, "the default: ORGANIZATION_GRANTS unset, stack not readable"


def decision_settings(args: argparse.Namespace) -> tuple[Settings, str]:
    """The settings the deployment decides with, as far as the CLI can tell: OU/organization
    grants are read (through the deployment's OrganizationsRoleArn) when the deployment reads
    them, even if this shell sets neither ORGANIZATION_GRANTS nor ORGANIZATIONS_ROLE_ARN.
    Also says where the OU/organization setting was found (organization_setting)."""
    import dataclasses
    import os

    base = settings(args)
    parameters = stack_parameters(base, args.stack)
    on, source = organization_setting(base, args.stack, parameters)
    role = base.organizations_role_arn
    if not os.environ.get("ORGANIZATIONS_ROLE_ARN") and parameters:
        role = parameters.get(ORGANIZATIONS_ROLE_PARAMETER) or role
    chosen = dataclasses.replace(base, organization_grants=on, organizations_role_arn=role)
    return chosen, source


def decision_deps(args: argparse.Namespace) -> Deps:
    """Deps that decide as the deployment does (explain, pending, doctor)."""
    return runtime.build(decision_settings(args)[0])


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
                    f"DynamoDB table not found: {_table_name(exc)}in {_where_env()} (is --stack"
                    " right? are these the deployment's account and region? tables are"
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
    """The one output flag of every command: -o/--output FORMAT (a file is never -o).
    `--format` is still accepted (hidden) so older scripts keep working."""
    parser.add_argument(
        "-o",
        "--output",
        dest="format",
        choices=list(choices),
        default=choices[0],
        help=f"output format: {'|'.join(choices)} (default: {choices[0]})",
    )
    parser.add_argument("--format", dest="format", choices=list(choices), help=argparse.SUPPRESS)


def emit(data: Any, fmt: str, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    if fmt == "json":
        print(json.dumps(data, indent=2, default=str, sort_keys=False), file=out)
    elif fmt == "yaml":
        print(yaml.safe_dump(data, sort_keys=False, allow_unicode=True).rstrip(), file=out)
    else:
        raise ValueError(f"emit: unsupported format {fmt}")


def table(
    rows: Iterable[Sequence[Any]],
    header: Sequence[str],
    out: TextIO | None = None,
    *,
    width: int | None = None,
) -> None:
    """Columns padded to their widest cell, within `width` (default: the terminal's, at most
    100 characters). When a row would not fit, prose columns (cells with spaces) wrap first, down
    to PROSE_MIN; then IDs wrap after a separator (# : / ,), never inside a part; then prose
    down to PROSE_LAST. If even that cannot fit, each row is printed as a block of
    `HEADER value` lines instead. Nothing is cut."""
    out = out or sys.stdout
    width = width or table_width(out)
    cells = [[_cell(c) for c in row] for row in rows]
    if not cells:
        print("  ".join(header), file=out)
        return
    n = len(header)
    widths = [max(len(r[i]) for r in [list(header), *cells]) for i in range(n)]
    prose = [any(" " in r[i] for r in cells) for i in range(n)]
    room = width - GAP * (n - 1)
    prose_floor = [
        min(w, max(len(h), PROSE_MIN)) if p else w
        for h, p, w in zip(header, prose, widths, strict=True)
    ]
    widths = fit_widths(widths, prose_floor, room)
    id_floor = [
        f if p else max(len(h), *(_longest_part(r[i]) for r in cells))
        for i, (h, p, f) in enumerate(zip(header, prose, prose_floor, strict=True))
    ]
    widths = fit_widths(widths, id_floor, room)
    last_floor = [
        max(len(h), PROSE_LAST) if p else f for h, p, f in zip(header, prose, id_floor, strict=True)
    ]
    widths = fit_widths(widths, last_floor, room)
    if sum(widths) > room:
        _records(cells, header, out, width)
        return
    for row in [list(header), *cells]:
        wrapped = [_wrap(c, w) for c, w in zip(row, widths, strict=True)]
        for line in range(max(len(w) for w in wrapped)):
            parts = [
                (w[line] if line < len(w) else "").ljust(size)
                for w, size in zip(wrapped, widths, strict=True)
            ]
            print((" " * GAP).join(parts).rstrip(), file=out)


GAP = 2
MAX_WIDTH = 100
PROSE_MIN = 24
PROSE_LAST = 12
SEPARATOR = re.compile(r"(?<=[#:/,])")


def _longest_part(text: str) -> int:
    return max((len(part) for part in SEPARATOR.split(text)), default=0)


def _records(cells: list[list[str]], header: Sequence[str], out: TextIO, width: int) -> None:
    """Rows too wide for columns: the first cell as a title, then one `HEADER value` line per
    other cell, values wrapped under themselves."""
    import textwrap

    label = max(len(h) for h in header[1:]) + 2
    for row in cells:
        print(row[0], file=out)
        for name, value in zip(header[1:], row[1:], strict=True):
            lines = textwrap.wrap(
                value,
                max(width - label - 2, 20),
                break_on_hyphens=False,
                break_long_words=True,
            ) or ["-"]
            print(f"  {name.ljust(label)}{lines[0]}", file=out)
            for more in lines[1:]:
                print(f"  {' ' * label}{more}", file=out)


def table_width(out: TextIO) -> int:
    """A terminal's width when writing to one (COLUMNS overrides), else MAX_WIDTH (a pipe, a
    file, a CI log)."""
    import os
    import shutil

    if os.environ.get("COLUMNS", "").isdigit():
        return max(40, int(os.environ["COLUMNS"]))
    try:
        if out.isatty():
            return max(40, shutil.get_terminal_size((MAX_WIDTH, 24)).columns)
    except (AttributeError, ValueError, OSError):
        pass
    return MAX_WIDTH


def fit_widths(widths: Sequence[int], floors: Sequence[int], room: int) -> list[int]:
    """Narrow the widest columns, one character at a time, until they fit `room` (a column
    never goes below its floor)."""
    out = list(widths)
    while sum(out) > room:
        candidates = [i for i, w in enumerate(out) if w > floors[i]]
        if not candidates:
            break
        widest = max(candidates, key=lambda i: out[i])
        out[widest] -= 1
    return out


def _wrap(text: str, size: int) -> list[str]:
    import textwrap

    if len(text) <= size:
        return [text]
    if " " in text:
        return textwrap.wrap(text, size, break_on_hyphens=False) or [""]
    lines: list[str] = []
    current = ""
    for part in SEPARATOR.split(text):
        if current and len(current) + len(part) > size:
            lines.append(current)
            current = ""
        current += part
        while len(current) > size:
            lines.append(current[:size])
            current = current[size:]
    return [*lines, current] if current else lines


def plain(value: Any) -> str:
    """A value as an operator reads it: no Python reprs (True/None/[...])."""
    return _cell(value)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple, set, frozenset)):
        return ",".join(str(v) for v in value) or "-"
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return str(value)


def _where_env() -> str:
    try:
        return where(Settings.from_env())
    except Exception:  # only ever decorates an error message
        return "this account and region"


def find_connection(ec2: Any, vpce_id: str, settings: Settings | None = None) -> Any:
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
    place = where(settings) if settings is not None else "this account and region"
    raise UsageError(
        f"no connection {vpce_id} on an endpoint service of {place}"
        " (explain/doctor look from the provider's side: use the provider's credentials)"
    )


def age(created: datetime | None, now: datetime | None = None) -> str:
    if created is None:
        return "-"
    seconds = int(((now or datetime.now(UTC)) - created).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def where(s: Settings) -> str:
    """Which account and region a command looked in, for an error that may mean "wrong account
    or region" (best effort: the account from STS, '?' when it cannot be read)."""
    try:
        account = str(client("sts", s).get_caller_identity()["Account"])
    except (BotoCoreError, ClientError):
        account = "?"
    return f"account {account}, region {s.region}"


def confirm(args: argparse.Namespace, question: str, *, stdin: TextIO | None = None) -> None:
    """A destructive change: go on with --yes; on a terminal, ask; otherwise refuse, so a script
    never removes or revokes by accident. Raises UsageError (exit 2) when not confirmed."""
    if getattr(args, "yes", False):
        return
    stdin = stdin or sys.stdin
    try:
        interactive = stdin.isatty()
    except (AttributeError, ValueError):
        interactive = False
    if not interactive:
        raise UsageError(f"{question}: not confirmed (no terminal to ask on); add --yes to confirm")
    print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
    answer = stdin.readline().strip().lower()
    if answer not in {"y", "yes"}:
        raise UsageError("not confirmed: nothing was changed")


def add_yes(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--yes", "-y", action="store_true", help="do not ask for confirmation (for scripts)"
    )


@functools.cache
def known_regions(region: str | None) -> frozenset[str]:
    """Region names of the deployment's partition, from botocore's bundled endpoint data
    (offline). An unknown deployment region: every partition's regions."""
    import botocore.session

    session = botocore.session.get_session()
    partitions = session.get_available_partitions()
    wanted = [p for p in partitions if region and region in session.get_available_regions("ec2", p)]
    names: set[str] = set()
    for partition in wanted or partitions:
        names.update(session.get_available_regions("ec2", partition))
    return frozenset(names)
