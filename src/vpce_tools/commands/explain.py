"""`vpce-approver explain <vpce-id>`: the connection, the grants that match, the decision it gets
and why (for a connection that is already settled: what the registry would decide now)."""

from __future__ import annotations

import argparse
import builtins
import sys
import textwrap
from typing import Any

from vpce_approver.converge import preview
from vpce_approver.model import Connection, Decision, Grant
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
        "principals": list(grant.principals),
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
        "grants": {"service": _grant(specific), "wildcard": _grant(wildcard)},
        "registry_error": result.registry_errors.get(conn.owner),
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
    for label, grant in (
        ("service grant", data["grants"]["service"]),
        ("* grant", data["grants"]["wildcard"]),
    ):
        if grant is None:
            print(f"{label:<11} none")
            continue
        extra = ", ".join(
            f"{k} {s.plain(v)}" for k, v in grant.items() if k not in {"key", "status"}
        )
        print(f"{label:<11} {grant['key']}: {grant['status']}" + (f" ({extra})" if extra else ""))
    if data["registry_error"]:
        print(f"registry    MALFORMED: {data['registry_error']}")
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
    data = explanation(conn, s.deps(args))
    if args.format == "table":
        _print(data)
    else:
        s.emit(data, args.format)
    return 0
