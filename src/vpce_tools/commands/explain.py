"""`vpce-approver explain <vpce-id>`: the connection, the grants that match, the decision it gets
and why (for a connection that is already settled: what the registry would decide now).

The grants shown are the account's own (the service's and `*`) and the OU/organization grants
that were read for it (those on its path in AWS Organizations); `decided by` names the one grant
that decided and, for an OU/organization grant, the account's path that matched (Decision.via,
root side first: 'o-… / ou-parent / ou-child')."""

from __future__ import annotations

import argparse
import builtins
import sys
import textwrap
from typing import Any

from vpce_approver.converge import preview
from vpce_approver.model import (
    WILDCARD_SERVICE,
    Connection,
    Decision,
    Grant,
    Membership,
    Scope,
)
from vpce_approver.policy import matching_grants
from vpce_approver.registry import iso

from . import _support as s


def register(subs: Any) -> None:
    p: argparse.ArgumentParser = subs.add_parser(
        "explain", help="why a connection gets the decision it gets"
    )
    p.add_argument("endpoint", help="the consumer's endpoint ID (vpce-…)")
    s.add_format(p)
    p.set_defaults(run=run)


def _grant(grant: Grant | None) -> dict[str, Any] | None:
    if grant is None:
        return None
    out: dict[str, Any] = {
        "key": grant.label,
        "status": grant.status.value,
        "scope": grant.scope.value,
        "principals": list(grant.principals),
        "principal_role": grant.principal_role,
        "expires_at": iso(grant.expires_at) if grant.expires_at else None,
        "max_endpoints": grant.max_endpoints,
        "regions": sorted(grant.regions),
        "owner": grant.owner,
        "note": grant.note,
        "revoke": grant.revoke,
        "updated_by": grant.updated_by,
    }
    return {k: v for k, v in out.items() if v not in (None, [])}


def explanation(conn: Connection, deps: Any) -> dict[str, Any]:
    result = preview(conn.service_id, [conn], deps)
    decision = result.decisions[0][1] if result.decisions else None
    specific, wildcard = matching_grants(conn, result.grants.values())
    place = membership(deps, conn.owner)
    organization = sorted(
        (
            g
            for g in result.grants.values()
            if g.scope is not Scope.ACCOUNT
            and g.service_id in (conn.service_id, WILDCARD_SERVICE)
            and _may_apply(g, place)
        ),
        key=lambda g: (g.scope is Scope.ORGANIZATION, g.consumer, g.service_id == "*"),
    )
    escalation = deps.escalations.get(conn.vpc_endpoint_id)
    principals = deps.ec2.allowed_principals(conn.service_id) if result.managed else set()
    verdict: Decision | None = decision
    out: dict[str, Any] = {
        "connection": {
            "vpc_endpoint_id": conn.vpc_endpoint_id,
            "service_id": conn.service_id,
            "owner": conn.owner,
            "state": conn.state,
            "region": conn.region,
            "created": iso(conn.created) if conn.created else None,
        },
        "managed": result.managed,
        "grants": {
            "service": _grant(specific),
            "wildcard": _grant(wildcard),
            "organization": [_grant(g) for g in organization],
        },
        "membership": _membership(place),
        "registry_error": result.registry_errors.get(conn.owner),
        "decided_by": _decided_by(verdict) if result.managed else None,
        "decision": None,
        "escalation": None,
        "allowed_principals": sorted(p for p in principals if p == "*" or f"::{conn.owner}:" in p),
    }
    if not result.managed:
        out["decision"] = {
            "action": "none",
            "code": "unmanaged",
            "reason": f"{conn.service_id} is not managed by this deployment: nothing is decided",
        }
    elif verdict is not None:
        pending = conn.pending_acceptance
        out["decision"] = {
            "action": verdict.action.value,
            "code": verdict.code.value,
            "reason": verdict.reason,
            "applies": "now (the connection is pendingAcceptance)"
            if pending
            else f"if it were pending (it is {conn.state}; the registry says this today)",
        }
    if escalation is not None:
        out["escalation"] = {
            "state": escalation.state,
            "code": escalation.code,
            "outcome": escalation.outcome,
            "decided_by": escalation.decided_by,
            "posted": escalation.posted,
        }
    return out


def _decided_by(decision: Decision | None) -> dict[str, Any] | None:
    """The grant that decided and, for an OU/organization grant, the account's path that
    matched (None: no grant decided: no grant at all, a malformed item, membership unknown)."""
    if decision is None or decision.grant is None:
        return None
    out = {"grant": decision.grant.label, "scope": decision.grant.scope.value}
    if decision.via:
        out["via"] = decision.via
    return out


SCOPE_LABELS = {"account": "account", "ou": "OU", "organization": "organization"}
ROW_LABELS = {"account": "account", "ou": "OU", "organization": "org"}


def membership(deps: Any, owner: str) -> Membership | None:
    """Where the owner sits in AWS Organizations, through the registry's directory (cached by
    it, as for the decision); None: this deployment reads no organization (ORGANIZATION_GRANTS
    off)."""
    directory = deps.registry.directory
    if directory is None:
        return None
    found: Membership | None = directory.memberships([owner]).get(owner)
    return found


def _membership(found: Membership | None) -> dict[str, Any] | None:
    if found is None:
        return None
    out = {"state": found.state.value, "path": found.describe()}
    if found.error:
        out["error"] = found.error
    return out


def _may_apply(grant: Grant, found: Membership | None) -> bool:
    """An OU/organization grant on the owner's path; every one when its place is unknown (the
    policy then escalates: they may apply)."""
    if found is None or not found.known:
        return True
    return grant.consumer in found.scopes()


def _print(data: dict[str, Any]) -> None:
    width = s.table_width(sys.stdout)

    def print(line: str) -> None:
        wrapped = textwrap.wrap(
            line, width, subsequent_indent=" " * 12, break_on_hyphens=False
        ) or [""]
        builtins.print("\n".join(wrapped))

    c = data["connection"]
    print(f"connection  {c['vpc_endpoint_id']} on {c['service_id']}")
    print(f"  owner     {c['owner']}   region {c['region'] or '-'}   created {c['created'] or '-'}")
    print(f"  state     {c['state']}")
    print(f"managed     {'yes' if data['managed'] else 'no'}")
    m = data.get("membership")
    if m is not None:
        print(f"org path    {m['path']}")
    rows = [
        ("service grant", data["grants"]["service"]),
        ("* grant", data["grants"]["wildcard"]),
    ]
    rows += [(f"{ROW_LABELS[g['scope']]} grant", g) for g in data["grants"].get("organization", [])]
    for label, grant in rows:
        if grant is None:
            print(f"{label:<11} none")
            continue
        extra = ", ".join(
            f"{k} {s.plain(v)}" for k, v in grant.items() if k not in {"key", "status", "scope"}
        )
        print(f"{label:<11} {grant['key']}: {grant['status']}" + (f" ({extra})" if extra else ""))
    if data["registry_error"]:
        print(f"registry    MALFORMED: {data['registry_error']}")
    by = data.get("decided_by")
    if by:
        scope = SCOPE_LABELS[by["scope"]]
        path = f" via {by['via']}" if by.get("via") else ""
        print(f"decided by  {by['grant']} ({scope} grant){path}")
    d = data["decision"]
    if d:
        print(f"decision    {d['action']} [{d['code']}] {d.get('applies', '')}".rstrip())
        print(f"  why       {d['reason']}")
    e = data["escalation"]
    if e:
        print(
            f"escalation  {e['state']} ({e['code']})"
            + (f", {e['outcome']} by {e['decided_by']}" if e.get("outcome") else "")
        )
    listed = ", ".join(data["allowed_principals"]) or "none of this account's"
    print(f"allow-list  {listed}")


@s.aws_errors
def run(args: argparse.Namespace) -> int:
    settings = s.settings(args)
    conn = s.find_connection(s.client("ec2", settings), args.endpoint, settings)
    data = explanation(conn, s.decision_deps(args))
    if args.format == "table":
        _print(data)
    else:
        s.emit(data, args.format)
    return 0
