"""`vpce-approver registry`: the grants (add, list, show, remove, suspend, import, export).

Every write goes through Registry.put (validated); the deployment's registry stream then makes it
take effect (allowed principals, waiting connections, revocation)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vpce_approver import validation as v
from vpce_approver.membership import Directory
from vpce_approver.model import Grant, GrantStatus, MalformedItem, Scope, scope_of
from vpce_approver.registry import Registry, StoredItem, Undecodable, get_item, iso
from vpce_tools import grantfile
from vpce_tools.cli import UsageError

from . import _support as s

PROGRESS_EVERY = 100


def register(subs: Any) -> None:
    p: argparse.ArgumentParser = subs.add_parser(
        "registry", help="the registry of grants: who may connect to which service"
    )
    cmds = p.add_subparsers(dest="registry_command", metavar="ACTION", required=True)

    add = cmds.add_parser("add", help="add a grant (or replace one with --replace)")
    _key_args(add)
    add.add_argument(
        "--status", choices=[g.value for g in GrantStatus], default="allow", help="default allow"
    )
    add.add_argument(
        "--principal",
        action="append",
        default=[],
        metavar="ARN",
        help="allowed principal (repeat); default for allow: arn:aws:iam::<consumer>:root"
        " (account grants only)",
    )
    add.add_argument(
        "--principal-role",
        metavar="NAME",
        help="OU/organization grants: allow arn:<partition>:iam::<member>:role/NAME of every"
        " member account (default: each member's root)",
    )
    add.add_argument("--expires", metavar="WHEN", help="ISO time (…Z) or relative: 30d, 12h")
    add.add_argument(
        "--max-endpoints",
        type=int,
        metavar="N",
        help="live endpoints allowed (per member account for an OU/organization grant)",
    )
    add.add_argument(
        "--region",
        dest="regions",
        action="append",
        default=[],
        metavar="REGION",
        help="allowed consumer region (repeat); put the global --region before `registry`",
    )
    add.add_argument("--owner", help="who to ask about this grant")
    add.add_argument("--note", help="why this grant exists")
    _revoke_args(add)
    add.add_argument("--replace", action="store_true", help="overwrite an existing grant")
    _force_arg(add)
    _by_arg(add)
    add.set_defaults(run=run_add)

    ls = cmds.add_parser("list", help="list grants")
    ls.add_argument("--service", help="only this service (vpce-svc-… or *)")
    ls.add_argument("--consumer", help="only this consumer (account, ou-… or o-…)")
    s.add_format(ls, ("table", "json", "yaml", "csv"))
    ls.set_defaults(run=run_list)

    show = cmds.add_parser("show", help="show one grant")
    _key_args(show)
    s.add_format(show, ("yaml", "json"))
    show.set_defaults(run=run_show)

    rm = cmds.add_parser("remove", help="delete a grant (revokes if the grant says so)")
    _key_args(rm)
    s.add_yes(rm)
    _by_arg(rm)
    rm.set_defaults(run=run_remove)

    sus = cmds.add_parser("suspend", help="suspend a grant (new connections escalate)")
    _key_args(sus)
    _revoke_args(sus)
    sus.add_argument("--note", help="why (replaces the grant's note)")
    s.add_yes(sus)
    _by_arg(sus)
    sus.set_defaults(run=run_suspend)

    imp = cmds.add_parser("import", help="add/replace grants from a YAML or CSV file")
    imp.add_argument("file", help="the file (- for standard input, with --file-format)")
    imp.add_argument(
        "--file-format",
        dest="format",
        choices=grantfile.FORMATS,
        help="the file's format (default: from the extension)",
    )
    imp.add_argument("--format", dest="format", choices=grantfile.FORMATS, help=argparse.SUPPRESS)
    imp.add_argument("--dry-run", action="store_true", help="validate and report, write nothing")
    _force_arg(imp)
    s.add_yes(imp)
    _by_arg(imp)
    imp.set_defaults(run=run_import)

    exp = cmds.add_parser("export", help="write every live grant as YAML or CSV")
    s.add_format(exp, grantfile.FORMATS)
    exp.add_argument(
        "--file", "-f", metavar="FILE", help="write to FILE (default: standard output)"
    )
    exp.set_defaults(run=run_export)

    from . import plan

    plan.register(cmds)


def _key_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("service", help="vpce-svc-… or * (every managed service)")
    p.add_argument(
        "consumer",
        help="consumer: an AWS account ID (12 digits), an OU (ou-xxxx-xxxxxxxx, nested OUs"
        " included) or the whole organization (o-xxxxxxxxxx)",
    )


def _revoke_args(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--revoke",
        dest="revoke",
        action="store_const",
        const=True,
        help="when access is lost, reject the consumer's live connections",
    )
    group.add_argument(
        "--no-revoke",
        dest="revoke",
        action="store_const",
        const=False,
        help="when access is lost, leave live connections (only the principal is removed)",
    )
    p.set_defaults(revoke=None)


def _force_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--force",
        action="store_true",
        help="allow a grant for a service this stack does not manage",
    )


def _by_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--by", help="who makes the change (default: your AWS identity)")


def _key(args: argparse.Namespace) -> tuple[str, str]:
    try:
        return (
            v.service_id(args.service, field="service", allow_wildcard=True),
            v.consumer(args.consumer),
        )
    except v.ValidationError as exc:
        raise UsageError(str(exc)) from None


def _get(service_id: str, consumer: str) -> StoredItem | None:
    """The stored item at a key, however malformed (registry.get_item never fails on types)."""
    return get_item(service_id, consumer, consistent_read=True)


REPAIR = "repair it with `registry add --replace` (or `registry remove`)"


def _warn(bad: MalformedItem) -> None:
    print(f"warning: skipped {bad.message}; {REPAIR}", file=sys.stderr)


def _describe(grant: Grant) -> dict[str, Any]:
    row = grantfile.row_from_grant(grant)
    row["scope"] = grant.scope.value
    if grant.scope is not Scope.ACCOUNT and grant.status is GrantStatus.ALLOW:
        row["allow_list"] = f"arn:<partition>:iam::<member account>:{member_principal(grant)}"
    if grant.updated_by:
        row["updated_by"] = grant.updated_by
    if grant.updated_at:
        row["updated_at"] = iso(grant.updated_at)
    return row


# ----------------------------------------------------------------------------- add / suspend


@s.aws_errors
def run_add(args: argparse.Namespace) -> int:
    service_id, consumer = _key(args)
    _check_principal_options(consumer, args)
    settings = s.settings(args)
    # An OU/organization grant: read the organization as the deployment does, to catch a typo.
    org_scoped = scope_of(consumer) is not Scope.ACCOUNT
    deps = s.decision_deps(args) if org_scoped else s.deps(args)
    now = datetime.now(UTC)
    row: dict[str, Any] = {
        "service_id": service_id,
        "consumer": consumer,
        "status": args.status,
        "principals": args.principal or None,
        "expires_at": iso(s.parse_time(args.expires, past=False)) if args.expires else None,
        "max_endpoints": str(args.max_endpoints) if args.max_endpoints is not None else None,
        "regions": args.regions or None,
        "owner": args.owner,
        "note": args.note,
        "revoke": None if args.revoke is None else str(args.revoke).lower(),
        "principal_role": args.principal_role,
    }
    try:
        grant = grantfile.grant_from_row(
            row,
            now=now,
            allow_wildcard_principal=settings.allow_wildcard_principal,
            known_regions=s.known_regions(settings.region),
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    from .plan import unenrolled, warn_unenrolled

    warn_unenrolled(unenrolled([grant], deps), args.stack, force=args.force, verb="adding")
    if _get(service_id, consumer) is not None and not args.replace:
        raise UsageError(
            f"a grant for {service_id}/{consumer} exists; use --replace to overwrite it"
            " (or registry show/suspend/remove)"
        )
    if org_scoped:
        warn_org_scopes([consumer], deps.registry.directory)
    deps.registry.put(grant, by=s.actor(args, settings), now=now)
    print(f"{grant.status.value} {service_id}/{consumer} written", end="")
    if grant.principals:
        print(f"; principals {', '.join(grant.principals)}", end="")
    elif grant.scope is not Scope.ACCOUNT:
        print(f" ({SCOPE_NAMES[grant.scope]} grant", end="")
        if grant.status is GrantStatus.ALLOW:
            print(f"; allow-list: {member_principal(grant)} of every member account", end="")
        print(")", end="")
    print(" (takes effect through the registry stream)")
    return 0


SCOPE_NAMES = {Scope.ACCOUNT: "account", Scope.OU: "OU", Scope.ORGANIZATION: "organization"}


def _whose(grant: Grant) -> str:
    return "its" if grant.scope is Scope.ACCOUNT else "its member accounts'"


def member_principal(grant: Grant) -> str:
    """What an OU/organization grant puts on the allow-list for each member account."""
    return f"role/{grant.principal_role}" if grant.principal_role else "root"


def warn_org_scopes(consumers: Iterable[str], directory: Directory | None) -> None:
    """Warnings (never a refusal: an empty OU may be meant for accounts yet to come) for the
    OU/organization consumers among `consumers`: the deployment reads no organization (they
    decide nothing), or it lists no active account under one (a typo, another organization).
    Nothing is said for one whose members cannot be read."""
    scoped = sorted({c for c in consumers if scope_of(c) is not Scope.ACCOUNT})
    if not scoped:
        return
    if directory is None:
        print(
            f"warning: {', '.join(scoped)}: this deployment does not read AWS Organizations"
            " (OrganizationGrants off): OU/organization grants decide nothing until it does",
            file=sys.stderr,
        )
        return
    for consumer in scoped:
        if directory.members(consumer) == frozenset():
            what = "OU" if scope_of(consumer) is Scope.OU else "organization"
            print(
                f"warning: {consumer}: AWS Organizations lists no active account in this {what}"
                " (a typo, another organization, or an empty OU): the grant applies to nobody"
                " yet",
                file=sys.stderr,
            )


def _check_principal_options(consumer: str, args: argparse.Namespace) -> None:
    """--principal lists an account's own ARNs; --principal-role names the role of every member
    of an OU/organization: each is refused where it cannot mean anything."""
    scope = scope_of(consumer)
    if scope is Scope.ACCOUNT and args.principal_role is not None:
        raise UsageError(
            f"--principal-role is for OU (ou-…) and organization (o-…) grants; {consumer} is an"
            f" account: list its principals with --principal arn:aws:iam::{consumer}:role/NAME"
        )
    if scope is not Scope.ACCOUNT and args.principal:
        raise UsageError(
            f"--principal is for account grants; {consumer} is an {SCOPE_NAMES[scope]}, whose"
            " member accounts each get their own principal: use --principal-role NAME (their"
            " role NAME) or nothing (their root)"
        )


@s.aws_errors
def run_suspend(args: argparse.Namespace) -> int:
    service_id, consumer = _key(args)
    settings = s.settings(args)
    deps = s.deps(args)
    grant = deps.registry.find(service_id, consumer)
    if grant is None:
        raise UsageError(f"no grant for {service_id}/{consumer}")
    if isinstance(grant, MalformedItem):
        raise UsageError(f"{grant.message}; {REPAIR}")
    now = datetime.now(UTC)
    revoke = grant.revoke if args.revoke is None else args.revoke
    changed = replace(
        grant,
        status=GrantStatus.SUSPENDED,
        revoke=revoke,
        note=args.note if args.note is not None else grant.note,
        expires_at=grant.expires_at if not grant.expired(now) else None,
    )
    effective = revoke if revoke is not None else settings.revoke_default
    if effective and grant.status is GrantStatus.ALLOW and not grant.expired(now):
        s.confirm(
            args,
            f"suspend {service_id}/{consumer} and reject {_whose(grant)} live connections"
            " (revocation on)",
        )
    deps.registry.put(changed, by=s.actor(args, settings), now=now)
    tail = (
        f"{_whose(grant)} live connections will be rejected"
        if effective
        else "live connections stay (no revocation); new ones escalate"
    )
    print(f"suspended {service_id}/{consumer}: {tail}")
    return 0


# ----------------------------------------------------------------------------- remove


@s.aws_errors
def run_remove(args: argparse.Namespace) -> int:
    service_id, consumer = _key(args)
    settings = s.settings(args)
    deps = s.deps(args)
    found = deps.registry.find(service_id, consumer)  # tolerant: a malformed item too
    if found is None:
        raise UsageError(f"no grant for {service_id}/{consumer}")
    status = found.status.value if found.status is not None else "malformed"
    if isinstance(found, MalformedItem):
        status = f"malformed: {found.field}"
    s.confirm(args, f"remove the grant {service_id}/{consumer} ({status})")
    # Stamped with who removes it first, so the stream's REMOVE record names them in the audit
    # trail; works on a malformed item too (the documented repair).
    if not deps.registry.remove(service_id, consumer, by=s.actor(args, settings)):
        raise UsageError(f"no grant for {service_id}/{consumer}")
    print(f"removed {service_id}/{consumer}")
    return 0


# ----------------------------------------------------------------------------- read


def _grants(
    registry: Registry, *, service: str | None, consumer: str | None
) -> tuple[list[Grant], list[MalformedItem]]:
    """The grants, and the malformed items (reported and skipped by every reader)."""
    entries = registry.entries(service=service, consumer=consumer)
    grants = [e for e in entries if isinstance(e, Grant)]
    return grants, [e for e in entries if isinstance(e, MalformedItem)]


@s.aws_errors
def run_list(args: argparse.Namespace) -> int:
    try:
        service = (
            v.service_id(args.service, field="service", allow_wildcard=True)
            if args.service
            else None
        )
        consumer = v.consumer(args.consumer) if args.consumer else None
    except v.ValidationError as exc:
        raise UsageError(str(exc)) from None
    deps = s.deps(args)
    grants, bad = _grants(deps.registry, service=service, consumer=consumer)
    for item in bad:
        _warn(item)
    if args.format == "csv":
        sys.stdout.write(grantfile.dump(grants, "csv"))
    elif args.format in {"json", "yaml"}:
        s.emit([_describe(g) for g in grants], args.format)
    else:
        now = datetime.now(UTC)
        s.table(
            (
                (
                    g.service_id,
                    g.consumer,
                    status_cell(g, now),
                    _principals_cell(g),
                    _terms(g),
                    g.owner,
                    g.note,
                )
                for g in grants
            ),
            ("SERVICE", "CONSUMER", "STATUS", "PRINCIPALS", "TERMS", "OWNER", "NOTE"),
        )
        print(f"{len(grants)} grant(s)", file=sys.stderr)
    return 0


def short_principal(principal: str, consumer: str) -> str:
    """In a table, a principal of the consumer's own account without the account: root,
    role/app (every principal is the consumer's own; -o json/yaml/csv show the full ARNs)."""
    prefix = f"arn:aws:iam::{consumer}:"
    return principal.removeprefix(prefix) if principal.startswith(prefix) else principal


SCOPE_MARKS = {Scope.ACCOUNT: "", Scope.OU: "OU", Scope.ORGANIZATION: "org"}


def status_cell(grant: Grant, now: datetime) -> str:
    """`allow`; an OU or organization grant says so: `allow (OU)`, `deny (org)`; and
    `(expired)` / `(OU, expired)` once it has lapsed."""
    marks = [SCOPE_MARKS[grant.scope]] if grant.scope is not Scope.ACCOUNT else []
    if grant.expired(now):
        marks.append("expired")
    return grant.status.value + (f" ({', '.join(marks)})" if marks else "")


def _principals_cell(grant: Grant) -> list[str] | str | None:
    if grant.scope is Scope.ACCOUNT:
        return [short_principal(p, grant.consumer) for p in grant.principals]
    if grant.status is not GrantStatus.ALLOW:
        return None
    return f"each member's {member_principal(grant)}"


def _terms(grant: Grant) -> str | None:
    terms = []
    if grant.max_endpoints is not None:
        each = " per account" if grant.scope is not Scope.ACCOUNT else ""
        terms.append(f"max {grant.max_endpoints}{each}")
    if grant.regions:
        terms.append(" ".join(sorted(grant.regions)))
    if grant.expires_at is not None:
        terms.append(f"until {iso(grant.expires_at)}")
    if grant.revoke is not None:
        terms.append("revoke" if grant.revoke else "no-revoke")
    return "; ".join(terms) or None


@s.aws_errors
def run_show(args: argparse.Namespace) -> int:
    service_id, consumer = _key(args)
    settings = s.settings(args)
    s.deps(args)
    item = _get(service_id, consumer)
    if item is None:
        raise UsageError(f"no grant for {service_id}/{consumer}")
    entry = Registry(allow_wildcard_principal=settings.allow_wildcard_principal).entry(item)
    if isinstance(entry, Grant):
        data = _describe(entry)
    else:
        stored = item.raw if isinstance(item, Undecodable) else item.attribute_values
        data = {
            "malformed": entry.message,
            "field": entry.field,
            "repair": REPAIR,
            "stored": {k: str(x) for k, x in (stored or {}).items()},
        }
    s.emit(data, args.format)
    return 0


# ----------------------------------------------------------------------------- import / export


def read_source(path: str, fmt: str | None) -> tuple[str, str]:
    if path == "-":
        if not fmt:
            raise UsageError("reading standard input needs --file-format yaml|csv")
        return sys.stdin.read(), fmt
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"{path}: no such file")
    try:
        chosen = grantfile.detect_format(path, fmt)
        return file.read_text(encoding="utf-8-sig"), chosen
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read: {exc}") from None
    except grantfile.GrantFileError as exc:
        raise UsageError(str(exc)) from None


@s.aws_errors
def run_import(args: argparse.Namespace) -> int:
    text, fmt = read_source(args.file, args.format)
    settings = s.settings(args)
    now = datetime.now(UTC)
    try:
        grants, errors = grantfile.load(
            text,
            fmt,
            now=now,
            allow_wildcard_principal=settings.allow_wildcard_principal,
            known_regions=s.known_regions(settings.region),
        )
    except grantfile.GrantFileError as exc:
        raise UsageError(f"{args.file}: {exc}") from None
    if errors:
        for error in errors:
            print(f"{args.file}: {error}", file=sys.stderr)
        print(
            f"{args.file}: {len(errors)} bad row(s) of {len(errors) + len(grants)};"
            " nothing was imported",
            file=sys.stderr,
        )
        return 2  # bad input, like a UsageError, but with every bad row listed
    if not grants:
        print(f"{args.file}: no grants in the file; nothing to do")
        return 0
    scoped = any(g.scope is not Scope.ACCOUNT for _, g in grants)
    deps = s.decision_deps(args) if scoped else s.deps(args)
    warn_org_scopes((g.consumer for _, g in grants), deps.registry.directory)
    from .plan import compute as compute_plan
    from .plan import destructive, read_live, unenrolled, warn_unenrolled

    services = unenrolled((g for _, g in grants), deps)
    warn_unenrolled(services, args.stack, force=args.force or args.dry_run, verb="importing")
    if args.dry_run:
        print(f"{args.file}: {len(grants)} grant(s) valid (dry run: nothing written)")
        return 0
    risky = destructive(
        compute_plan(grants, read_live(settings.allow_wildcard_principal), prune=False),
        revoke_default=settings.revoke_default,
        now=now,
    )
    if risky:
        s.confirm(args, f"{args.file}: this import {'; '.join(risky)}. Import")
    by = s.actor(args, settings)
    counts = {"added": 0, "replaced": 0, "unchanged": 0}
    total = len(grants)
    for done, (_, grant) in enumerate(grants, start=1):
        existing = _get(*grant.key)
        old = deps.registry.entry(existing) if existing is not None else None
        # a malformed item is replaced (the file is the repair)
        if isinstance(old, Grant) and grantfile.same_grant(old, grant):
            counts["unchanged"] += 1
        else:
            deps.registry.put(grant, by=by, now=datetime.now(UTC))
            counts["added" if existing is None else "replaced"] += 1
        if total > PROGRESS_EVERY and (done % PROGRESS_EVERY == 0 or done == total):
            print(f"  {done}/{total} ({done * 100 // total}%)", file=sys.stderr)
    print(
        f"{args.file}: {total} grant(s): {counts['added']} added, {counts['replaced']} replaced,"
        f" {counts['unchanged']} unchanged"
    )
    return 0


@s.aws_errors
def run_export(args: argparse.Namespace) -> int:
    deps = s.deps(args)
    grants, bad = _grants(deps.registry, service=None, consumer=None)
    now = datetime.now(UTC)
    live = [g for g in grants if not g.expired(now)]
    for item in bad:
        _warn(item)
    if len(live) != len(grants):
        print(f"warning: skipped {len(grants) - len(live)} expired grant(s)", file=sys.stderr)
    text = grantfile.dump(live, args.format)
    if args.file:
        try:
            Path(args.file).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"{args.file}: cannot write: {exc}") from None
        print(f"{len(live)} grant(s) written to {args.file}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
