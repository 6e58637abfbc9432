"""The registry as code: `registry plan FILE` and `registry apply FILE [--prune] [--yes]`.

A platform team keeps its grants in git (the YAML/CSV of `registry export`) and reviews them as
pull requests. `plan` shows the difference between the file and the live registry (add, change,
remove) with the same validation as `import`, and exits 0 when there is nothing to do, 2 when there
is (for CI). `apply` computes the same plan, shows it, asks before a removal or a revocation (or
takes --yes), and writes exactly that plan: each write is conditional on the item being as the plan
saw it, so a registry changed since the plan was shown is refused rather than overwritten. `plan`
prints a digest of the plan; `apply --digest D` refuses unless the plan is still exactly that one
(the plan reviewed in CI is the plan applied).

`compute()` is pure (file grants + live items -> Plan) and tested as a table."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from vpce_approver.model import Grant, GrantStatus, Scope
from vpce_approver.registry import (
    RegistryError,
    Undecodable,
    get_item,
    grant_from_item,
    iso,
    item_from_grant,
    scan_items,
)
from vpce_approver.tables import SERVICE_MARKER, RegistryItem
from vpce_tools import grantfile
from vpce_tools.cli import UsageError

from . import _support as s

EXIT_CHANGES = 2
EXIT_REFUSED = 1
Key = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Live:
    """One stored registry item as the plan saw it."""

    key: Key
    grant: Grant | None  # None: the item is malformed (error says why)
    snapshot: Mapping[str, str]  # every stored attribute as text: what "unchanged since" means
    error: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)  # the stored values (conditions)


@dataclass(frozen=True, slots=True)
class Step:
    op: str  # add | change | remove
    key: Key
    old: Live | None
    new: Grant | None
    line: int | None = None
    fields: tuple[tuple[str, str, str], ...] = ()  # change: (field, old, new)

    @property
    def label(self) -> str:
        return f"{self.key[0]}/{self.key[1]}"


@dataclass(frozen=True, slots=True)
class Plan:
    steps: tuple[Step, ...]
    unchanged: int
    kept: tuple[Key, ...]  # live grants not in the file, left alone (no --prune)
    prune: bool
    digest: str = field(default="")

    def count(self, op: str) -> int:
        return sum(step.op == op for step in self.steps)

    @property
    def changes(self) -> bool:
        return bool(self.steps)

    def summary(self) -> str:
        return (
            f"{self.count('add')} to add, {self.count('change')} to change,"
            f" {self.count('remove')} to remove"
        )


# ----------------------------------------------------------------------------- the pure core


def snapshot(item: Any) -> dict[str, str]:
    values = getattr(item, "attribute_values", None)
    if values is None:  # an item pynamodb could not even decode (see Registry.all_items)
        return {"undecodable": str(getattr(item, "error", item))}
    return {str(k): json.dumps(v, sort_keys=True, default=str) for k, v in sorted(values.items())}


def _row(grant: Grant | None) -> dict[str, Any]:
    return grantfile.row_from_grant(grant) if grant is not None else {}


def field_changes(old: Grant | None, new: Grant) -> tuple[tuple[str, str, str], ...]:
    before, after = _row(old), _row(new)
    return tuple(
        (name, s.plain(before.get(name)), s.plain(after.get(name)))
        for name in grantfile.FIELDS
        if before.get(name) != after.get(name)
    )


def compute(wanted: Sequence[tuple[int, Grant]], live: Mapping[Key, Live], *, prune: bool) -> Plan:
    """The steps that make the live registry say what the file says (grants only: service
    enrollments are not in grant files). A malformed live item at a key of the file is a change
    (the file's grant replaces it)."""
    steps: list[Step] = []
    unchanged = 0
    in_file = {grant.key for _, grant in wanted}
    for line, grant in sorted(wanted, key=lambda pair: pair[1].key):
        old = live.get(grant.key)
        if old is None:
            steps.append(Step("add", grant.key, None, grant, line, field_changes(None, grant)))
        elif old.grant is not None and grantfile.same_grant(old.grant, grant):
            unchanged += 1
        else:
            changed = field_changes(old.grant, grant)
            if old.grant is None:
                changed = (("malformed", old.error or "malformed", "replaced"), *changed)
            steps.append(Step("change", grant.key, old, grant, line, changed))
    extra = sorted(key for key in live if key not in in_file)
    if prune:
        steps += [Step("remove", key, live[key], None) for key in extra]
    plan = Plan(tuple(steps), unchanged, () if prune else tuple(extra), prune)
    return Plan(plan.steps, plan.unchanged, plan.kept, plan.prune, digest(plan))


def digest(plan: Plan) -> str:
    """What the plan does and to which versions of the items: equal digests, same writes."""
    body = [
        {
            "op": step.op,
            "key": list(step.key),
            "before": dict(step.old.snapshot) if step.old else None,
            "after": _row(step.new) if step.new else None,
        }
        for step in plan.steps
    ]
    text = json.dumps({"prune": plan.prune, "steps": body}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _gives_access(grant: Grant | None, now: datetime) -> bool:
    return grant is not None and grant.status is GrantStatus.ALLOW and not grant.expired(now)


def _whose(grant: Grant | None) -> str:
    """Whose connections a grant's revocation rejects: the account's, or an OU/organization
    grant's member accounts'."""
    return "its" if grant is None or grant.scope is Scope.ACCOUNT else "its member accounts'"


def destructive(plan: Plan, *, revoke_default: bool, now: datetime) -> list[str]:
    """The steps that remove a grant or take access away with revocation on: each needs a yes."""
    out = []
    for step in plan.steps:
        old = step.old.grant if step.old else None
        if step.op == "remove":
            revoke = old.revoke if old and old.revoke is not None else revoke_default
            whose = _whose(old)
            tail = (
                f" and rejects {whose} live connections"
                if revoke and _gives_access(old, now)
                else ""
            )
            out.append(f"removes {step.label}{tail}")
        elif step.op == "change" and _gives_access(old, now) and not _gives_access(step.new, now):
            new = step.new
            revoke = new.revoke if new and new.revoke is not None else revoke_default
            if revoke:
                out.append(
                    f"revokes {step.label} ({_whose(old)} live connections will be rejected)"
                )
    return out


# ----------------------------------------------------------------------------- reading


def read_live(allow_wildcard_principal: bool) -> dict[Key, Live]:
    """Every grant item of the registry (consistent reads), malformed ones included."""
    live: dict[Key, Live] = {}
    for item in scan_items():  # tolerant: a wrongly typed item is reported, never a traceback
        if item.consumer == SERVICE_MARKER:
            continue
        live[(item.service_id, item.consumer)] = _live(item, allow_wildcard_principal)
    return live


def _live(item: RegistryItem | Undecodable, allow_wildcard_principal: bool) -> Live:
    key = (item.service_id, item.consumer)
    if isinstance(item, Undecodable):  # never matches a condition: apply refuses to touch it
        return Live(key, None, snapshot(item), item.malformed().message)
    try:
        grant = grant_from_item(item, allow_wildcard_principal=allow_wildcard_principal)
    except RegistryError as exc:
        return Live(key, None, snapshot(item), str(exc), dict(item.attribute_values))
    return Live(key, grant, snapshot(item), raw=dict(item.attribute_values))


def _reread(key: Key) -> RegistryItem | Undecodable | None:
    return get_item(*key, consistent_read=True)


def load_file(args: argparse.Namespace, settings: Any) -> list[tuple[int, Grant]]:
    """The file, validated exactly as `registry import` validates it (plus the region names):
    any bad row -> every bad row listed on stderr and a UsageError."""
    from .registry import read_source

    text, fmt = read_source(args.file, args.file_format)
    try:
        grants, errors = grantfile.load(
            text,
            fmt,
            now=datetime.now(UTC),
            allow_wildcard_principal=settings.allow_wildcard_principal,
            known_regions=s.known_regions(settings.region),
        )
    except grantfile.GrantFileError as exc:
        raise UsageError(f"{args.file}: {exc}") from None
    if errors:
        for error in errors:
            print(f"{args.file}: {error}", file=sys.stderr)
        raise UsageError(f"{args.file}: {len(errors)} bad row(s) of {len(errors) + len(grants)}")
    return grants


def unenrolled(grants: Iterable[Grant], deps: Any) -> list[str]:
    """Services named by grants that this deployment does not manage (a typo, or enrollment
    forgotten): such a grant would never decide anything."""
    managed = {item.service_id for item in deps.registry.managed_services()}
    return sorted({g.service_id for g in grants if g.service_id != "*"} - managed)


def warn_unenrolled(services: Sequence[str], stack: str, *, force: bool, verb: str) -> None:
    """A warning on stderr; with a `verb` and no --force, a UsageError instead (one line)."""
    if not services:
        return
    what = (
        f"not enrolled in stack {stack}: {', '.join(services)} (`vpce-approver services add`"
        " enrolls a service; `services list` shows the enrolled ones)"
    )
    if verb and not force:
        raise UsageError(f"{verb} grants for a service that is not enrolled needs --force; {what}")
    print(f"warning: {what}", file=sys.stderr)


# ----------------------------------------------------------------------------- CLI


def register(cmds: Any) -> None:
    """Add `plan` and `apply` to the `registry` actions."""
    plan = cmds.add_parser(
        "plan",
        help="what `registry apply FILE` would change (exit 0: nothing, 2: changes)",
        description="The difference between FILE and the live registry: grants to add, change"
        " and (with --prune) remove. Exit code 0 when there is nothing to do, 2 when there are"
        " changes, so CI can tell.",
    )
    _file_args(plan)
    s.add_format(plan)
    plan.set_defaults(run=run_plan)

    apply = cmds.add_parser(
        "apply",
        help="make the registry say exactly what FILE says (shows the plan first)",
        description="Apply the plan of FILE: add and change grants, and with --prune remove the"
        " grants the file does not list. Removals and revocations ask for confirmation on a"
        " terminal; --yes confirms for scripts. Refused when the registry changed since the plan"
        " was shown (or, with --digest, since `registry plan` printed that digest).",
    )
    _file_args(apply)
    apply.add_argument(
        "--digest", metavar="D", help="apply only if the plan is still the one with this digest"
    )
    apply.add_argument(
        "--force", action="store_true", help="allow grants for services this stack does not manage"
    )
    s.add_yes(apply)
    apply.add_argument("--by", help="who makes the change (default: your AWS identity)")
    apply.set_defaults(run=run_apply)


def _file_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="a grant file as `registry export` writes it (- = stdin)")
    p.add_argument(
        "--file-format",
        choices=grantfile.FORMATS,
        help="the file's format (default: from the extension; needed for -)",
    )
    p.add_argument("--prune", action="store_true", help="remove live grants the file does not list")


def _make_plan(args: argparse.Namespace) -> tuple[Plan, Any, Any]:
    settings = s.settings(args)
    grants = load_file(args, settings)
    from .registry import warn_org_scopes

    scoped = any(g.scope is not Scope.ACCOUNT for _, g in grants)
    deps = s.decision_deps(args) if scoped else s.deps(args)
    warn_org_scopes((g.consumer for _, g in grants), deps.registry.directory)
    warn_unenrolled(
        unenrolled((g for _, g in grants), deps),
        args.stack,
        force=getattr(args, "force", True),
        verb="" if args.run is run_plan else "applying",
    )
    live = read_live(settings.allow_wildcard_principal)
    return compute(grants, live, prune=args.prune), settings, deps


def _describe(step: Step) -> str:
    if step.op == "add":
        return ", ".join(
            f"{name} {new}"
            for name, _, new in step.fields
            if name not in {"service_id", "consumer"}
        )
    if step.op == "change":
        return "; ".join(f"{name}: {old} -> {new}" for name, old, new in step.fields)
    old = step.old.grant if step.old else None
    return f"was {old.status.value}" if old else f"malformed: {step.old.error if step.old else ''}"


def show(plan: Plan, source: str, fmt: str) -> None:
    if fmt != "table":
        s.emit(
            {
                "file": source,
                "digest": plan.digest,
                "add": [_data(step) for step in plan.steps if step.op == "add"],
                "change": [_data(step) for step in plan.steps if step.op == "change"],
                "remove": [_data(step) for step in plan.steps if step.op == "remove"],
                "unchanged": plan.unchanged,
                "not_in_file_kept": [f"{a}/{b}" for a, b in plan.kept],
            },
            fmt,
        )
        return
    marks = {"add": "+", "change": "~", "remove": "-"}
    if plan.steps:
        s.table(
            ((f"{marks[st.op]} {st.op}", st.label, _describe(st)) for st in plan.steps),
            ("", "GRANT", "WHAT"),
        )
    print(f"{plan.unchanged} unchanged", end="")
    if plan.kept:
        print(f"; {len(plan.kept)} live grant(s) not in {source} kept (--prune removes them)")
    else:
        print()
    print(f"plan: {plan.summary()} (digest {plan.digest})")


def _data(step: Step) -> dict[str, Any]:
    out: dict[str, Any] = {"grant": step.label}
    if step.line is not None:
        out["line"] = step.line
    if step.op == "change":
        out["fields"] = {name: {"old": old, "new": new} for name, old, new in step.fields}
    elif step.new is not None:
        out["new"] = _row(step.new)
    else:
        out["old"] = _row(step.old.grant if step.old else None)
    return out


@s.aws_errors
def run_plan(args: argparse.Namespace) -> int:
    plan, _, _ = _make_plan(args)
    show(plan, args.file, args.format)
    return EXIT_CHANGES if plan.changes else 0


@s.aws_errors
def run_apply(args: argparse.Namespace) -> int:
    plan, settings, _ = _make_plan(args)
    show(plan, args.file, "table")
    if args.digest and args.digest != plan.digest:
        print(
            f"vpce-approver: refused: the plan is now {plan.digest}, not {args.digest}: the"
            " registry (or the file) changed since that plan was shown; run `registry plan`"
            " again and review it",
            file=sys.stderr,
        )
        return EXIT_REFUSED
    if not plan.changes:
        print("nothing to apply")
        return 0
    now = datetime.now(UTC)
    risky = destructive(plan, revoke_default=settings.revoke_default, now=now)
    if risky:
        s.confirm(args, f"apply {plan.summary()}; this {'; '.join(risky)}. Apply")
    stale = [step.label for step in plan.steps if not _still_as_planned(step)]
    if stale:
        print(
            f"vpce-approver: refused: the registry changed since the plan was shown"
            f" ({', '.join(stale)}); nothing was applied; run `registry plan` again",
            file=sys.stderr,
        )
        return EXIT_REFUSED
    by = s.actor(args, settings)
    for done, step in enumerate(plan.steps):
        if not _write(step, by=by, allow_wildcard=settings.allow_wildcard_principal):
            print(
                f"vpce-approver: stopped: {step.label} changed while applying; {done} of"
                f" {len(plan.steps)} change(s) applied; run `registry plan` again",
                file=sys.stderr,
            )
            return EXIT_REFUSED
    print(f"applied: {plan.summary()} (takes effect through the registry stream)")
    return 0


def _still_as_planned(step: Step) -> bool:
    current = _reread(step.key)
    if step.old is None:
        return current is None
    return current is not None and snapshot(current) == dict(step.old.snapshot)


def unchanged_since(old: Live | None) -> Any:
    """A DynamoDB condition: the item is exactly the version the plan saw (every attribute
    equal, none added), or, for an add, there is still no item."""
    if old is None:
        return RegistryItem.service_id.does_not_exist()
    condition: Any = RegistryItem.service_id.exists()
    for name, attribute in RegistryItem.get_attributes().items():
        if attribute.is_hash_key or attribute.is_range_key:
            continue
        value = old.raw.get(name)
        condition &= attribute.does_not_exist() if value is None else attribute == value
    return condition


def _write(step: Step, *, by: str, allow_wildcard: bool) -> bool:
    """One step, conditional on the item being the version the plan saw. False: it was not."""
    from pynamodb.exceptions import DeleteError, PutError, UpdateError

    from vpce_approver.registry import validate_grant

    now = datetime.now(UTC)
    condition = unchanged_since(step.old)
    try:
        if step.new is not None:
            validate_grant(step.new, now, allow_wildcard_principal=allow_wildcard)
            item_from_grant(step.new, by=by, now=now).save(condition=condition)
            return True
        # A removal: stamp who removes it first (the stream's REMOVE record names them in the
        # audit trail, as `registry remove` does), then delete exactly what was stamped.
        item = RegistryItem(*step.key)
        stamp = iso(now)
        item.update(
            actions=[RegistryItem.updated_by.set(by), RegistryItem.updated_at.set(stamp)],
            condition=condition,
        )
        item.delete(condition=RegistryItem.updated_at == stamp)
        return True
    except (PutError, UpdateError, DeleteError) as exc:
        if getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException":
            return False
        raise
