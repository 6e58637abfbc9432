"""Grant files for `vpce-approver registry import/export`: YAML and CSV, with line numbers.

YAML: a list of mappings, or a mapping with a `grants:` list. CSV: a header row naming the
columns. Fields (only service_id and consumer are required):

    service_id     vpce-svc-… or *
    consumer       12-digit account ID, an OU (ou-xxxx-xxxxxxxx, its nested OUs included) or
                   the whole organization (o-xxxxxxxxxx)
    status         allow (default) | deny | suspended
    principals     account grants: list, or one string separated by spaces, commas or
                   semicolons; default for an allow grant: arn:aws:iam::<consumer>:root.
                   OU/organization grants: none (each member account's own principal)
    principal_role OU/organization grants only: the IAM role name whose ARN in each member
                   account goes on the allow-list (default: each member's root)
    expires_at     ISO 8601 time (2027-01-31T00:00:00Z) or date (2027-01-31 = midnight UTC)
    max_endpoints  positive integer
    regions        list, or one separated string
    owner, note    free text
    revoke         true | false (empty: the deployment's default)

YAML scalars are read as the text written (so an account ID like 011111111111 keeps its leading
zero, and `yes` is not a boolean unless the field wants one).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import yaml

from vpce_approver import validation as v
from vpce_approver.model import Grant, GrantStatus
from vpce_approver.registry import iso, validate_grant

FIELDS = (
    "service_id",
    "consumer",
    "status",
    "principals",
    "expires_at",
    "max_endpoints",
    "regions",
    "owner",
    "note",
    "revoke",
    "principal_role",
)
FORMATS = ("yaml", "csv")
SEPARATORS = re.compile(r"[\s,;]+")
TRUE = {"true", "yes", "on", "1"}
FALSE = {"false", "no", "off", "0"}
NULLS = {"", "~", "null", "none"}


class GrantFileError(ValueError):
    """The file as a whole cannot be read (not YAML/CSV, wrong shape)."""


@dataclass(frozen=True, slots=True)
class Row:
    line: int
    data: Mapping[str, Any]  # field -> str | list[str] | None


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


def detect_format(name: str, explicit: str | None = None) -> str:
    if explicit:
        return explicit
    lower = name.lower()
    if lower.endswith((".yaml", ".yml")):
        return "yaml"
    if lower.endswith(".csv"):
        return "csv"
    raise GrantFileError(f"{name}: cannot tell the format from the name; pass --format yaml|csv")


# ----------------------------------------------------------------------------- reading


def _scalar(node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        if node.style is None and node.value.strip().lower() in NULLS:
            return None
        return node.value
    if isinstance(node, yaml.SequenceNode):
        return [_scalar(item) for item in node.value]
    raise GrantFileError(f"line {node.start_mark.line + 1}: nested mappings are not allowed here")


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's message spans several lines (with a caret drawing): keep it to one."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or " ".join(str(exc).split())
    return f"line {mark.line + 1}: {problem}" if mark is not None else str(problem)


def read_yaml(text: str) -> list[Row]:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise GrantFileError(f"not valid YAML: {_yaml_problem(exc)}") from None
    if root is None:
        return []
    if isinstance(root, yaml.MappingNode):
        grants = [value for key, value in root.value if getattr(key, "value", None) == "grants"]
        if len(grants) != 1:
            raise GrantFileError("a YAML mapping must have one key, grants: [...]")
        root = grants[0]
    if not isinstance(root, yaml.SequenceNode):
        raise GrantFileError("expected a list of grants (or grants: [...])")
    rows = []
    for node in root.value:
        line = node.start_mark.line + 1
        if not isinstance(node, yaml.MappingNode):
            rows.append(Row(line, {"__error__": "each grant must be a mapping of fields"}))
            continue
        data: dict[str, Any] = {}
        for key, value in node.value:
            try:
                data[str(getattr(key, "value", key))] = _scalar(value)
            except GrantFileError as exc:
                data["__error__"] = str(exc).split(": ", 1)[-1]
        rows.append(Row(line, data))
    return rows


def read_csv(text: str) -> list[Row]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        return []
    except csv.Error as exc:
        raise GrantFileError(f"not valid CSV: {exc}") from None
    names = [h.strip() for h in header]
    rows = []
    line = reader.line_num + 1
    try:
        for record in reader:
            start, line = line, reader.line_num + 1
            if not any(cell.strip() for cell in record):
                continue
            if len(record) > len(names):
                rows.append(
                    Row(start, {"__error__": f"{len(record)} cells, header has {len(names)}"})
                )
                continue
            data = {
                name: (cell.strip() or None)
                for name, cell in zip(names, record, strict=False)
                if name
            }
            rows.append(Row(start, data))
    except csv.Error as exc:
        raise GrantFileError(f"line {reader.line_num}: not valid CSV: {exc}") from None
    return rows


def read_rows(text: str, fmt: str) -> list[Row]:
    if fmt == "yaml":
        return read_yaml(text)
    if fmt == "csv":
        return read_csv(text)
    raise GrantFileError(f"unknown format {fmt!r}: expected yaml or csv")


# ----------------------------------------------------------------------------- rows -> grants


def _text(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, list):
        raise v.ValidationError(name, value, "must be a single value, not a list")
    return str(value).strip() or None


def _list(data: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = data.get(name)
    if value is None:
        return ()
    items = value if isinstance(value, list) else SEPARATORS.split(str(value))
    return tuple(str(i).strip() for i in items if i is not None and str(i).strip())


def parse_when(text: str, field: str = "expires_at") -> datetime:
    """ISO 8601 time (a time zone is required unless it is a bare date = midnight UTC)."""
    raw = text.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
            day = date.fromisoformat(raw)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        when = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise v.ValidationError(
            field, text, "is not an ISO 8601 time (2027-01-31T00:00:00Z)"
        ) from None
    if when.tzinfo is None:
        raise v.ValidationError(field, text, "needs a time zone (end it with Z for UTC)")
    return when.astimezone(UTC)


def _bool(data: Mapping[str, Any], name: str) -> bool | None:
    value = _text(data, name)
    if value is None:
        return None
    if value.lower() in TRUE:
        return True
    if value.lower() in FALSE:
        return False
    raise v.ValidationError(name, value, "is not true or false")


def grant_from_row(
    data: Mapping[str, Any],
    *,
    now: datetime,
    allow_wildcard_principal: bool = False,
    known_regions: Collection[str] | None = None,
) -> Grant:
    """A validated Grant (raises ValidationError naming the field)."""
    if "__error__" in data:
        raise ValueError(str(data["__error__"]))
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)} (fields: {', '.join(FIELDS)})")
    service_id = _text(data, "service_id")
    consumer = _text(data, "consumer")
    if service_id is None:
        raise v.ValidationError("service_id", None, "is required")
    if consumer is None:
        raise v.ValidationError("consumer", None, "is required")
    raw_status = (_text(data, "status") or "allow").lower()
    try:
        status = GrantStatus(raw_status)
    except ValueError:
        raise v.ValidationError("status", raw_status, "must be allow, deny or suspended") from None
    principals = _list(data, "principals")
    if not principals and status is GrantStatus.ALLOW and v.ACCOUNT_RE.fullmatch(consumer):
        principals = (f"arn:aws:iam::{consumer}:root",)
    expires = _text(data, "expires_at")
    max_raw = _text(data, "max_endpoints")
    max_endpoints = None
    if max_raw is not None:
        if not re.fullmatch(r"\d+", max_raw):
            raise v.ValidationError("max_endpoints", max_raw, "must be a positive integer")
        max_endpoints = int(max_raw)
    grant = Grant(
        service_id=service_id,
        consumer=consumer,
        status=status,
        principals=principals,
        expires_at=parse_when(expires) if expires else None,
        max_endpoints=max_endpoints,
        regions=frozenset(_list(data, "regions")),
        owner=_text(data, "owner"),
        note=_text(data, "note"),
        revoke=_bool(data, "revoke"),
        principal_role=_text(data, "principal_role"),
    )
    grant = validate_grant(grant, now, allow_wildcard_principal=allow_wildcard_principal)
    if known_regions is not None:
        for region in sorted(grant.regions):
            if region not in known_regions:
                raise v.ValidationError(
                    "regions",
                    region,
                    "is not a region of this partition (botocore's endpoint data; upgrade"
                    " botocore for a region launched since)",
                )
    return grant


def load(
    text: str,
    fmt: str,
    *,
    now: datetime,
    allow_wildcard_principal: bool = False,
    known_regions: Collection[str] | None = None,
) -> tuple[list[tuple[int, Grant]], list[RowError]]:
    """Every row validated: (grants with their line, every bad row). Duplicate keys are errors."""
    grants: list[tuple[int, Grant]] = []
    errors: list[RowError] = []
    seen: dict[tuple[str, str], int] = {}
    for row in read_rows(text, fmt):
        try:
            grant = grant_from_row(
                row.data,
                now=now,
                allow_wildcard_principal=allow_wildcard_principal,
                known_regions=known_regions,
            )
        except ValueError as exc:
            errors.append(RowError(row.line, str(exc)))
            continue
        if grant.key in seen:
            errors.append(RowError(row.line, f"{grant.label} is already on line {seen[grant.key]}"))
            continue
        seen[grant.key] = row.line
        grants.append((row.line, grant))
    return grants, errors


# ----------------------------------------------------------------------------- writing


def row_from_grant(grant: Grant) -> dict[str, Any]:
    row: dict[str, Any] = {
        "service_id": grant.service_id,
        "consumer": grant.consumer,
        "status": grant.status.value,
        "principals": list(grant.principals),
        "expires_at": iso(grant.expires_at) if grant.expires_at else None,
        "max_endpoints": grant.max_endpoints,
        "regions": sorted(grant.regions),
        "owner": grant.owner,
        "note": grant.note,
        "revoke": grant.revoke,
        "principal_role": grant.principal_role,
    }
    return {k: val for k, val in row.items() if val not in (None, [])}


def dump(grants: Iterable[Grant], fmt: str) -> str:
    rows = [row_from_grant(g) for g in sorted(grants, key=lambda g: g.key)]
    if fmt == "yaml":
        return yaml.safe_dump({"grants": rows}, sort_keys=False, allow_unicode=True)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=FIELDS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {
                    k: " ".join(val)
                    if isinstance(val, list)
                    else str(val).lower()
                    if isinstance(val, bool)
                    else val
                    for k, val in row.items()
                }
            )
        return out.getvalue()
    raise GrantFileError(f"unknown format {fmt!r}: expected yaml or csv")


def same_grant(a: Grant, b: Grant) -> bool:
    """Equal as far as a file can say (who wrote it and when do not count)."""
    return row_from_grant(a) == row_from_grant(b)
