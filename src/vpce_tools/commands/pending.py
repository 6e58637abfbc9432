"""`vpce-approver pending`: pendingAcceptance connections across the managed services, with the
decision each would get now and the grant that decides it (for an OU/organization grant, with
the account's path that matched)."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

from vpce_approver.converge import preview
from vpce_approver.registry import iso
from vpce_tools.cli import UsageError

from . import _support as s


def register(subs: Any) -> None:
    p: argparse.ArgumentParser = subs.add_parser(
        "pending", help="waiting connections across managed services and their decisions"
    )
    p.add_argument("--service", action="append", default=[], help="only these services (repeat)")
    s.add_format(p)
    p.set_defaults(run=run)


def grant_cell(label: str | None, via: str | None) -> str | None:
    """The deciding grant; for an OU/organization grant, the account's path that matched."""
    if label is None:
        return None
    return f"{label} via {via}" if via else label


@s.aws_errors
def run(args: argparse.Namespace) -> int:
    deps = s.decision_deps(args)
    services = [i.service_id for i in deps.registry.managed_services()]
    if args.service:
        unknown = sorted(set(args.service) - set(services))
        if unknown:
            raise UsageError(
                f"not managed by stack {args.stack}: {', '.join(unknown)}"
                " (`vpce-approver services list` shows the managed services)"
            )
        services = [x for x in services if x in set(args.service)]
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    for service_id in services:
        waiting = deps.ec2.connections(service_id, states=["pendingAcceptance"])
        if not waiting:
            continue
        for conn, decision in preview(service_id, waiting, deps).decisions:
            escalation = deps.escalations.get(conn.vpc_endpoint_id)
            rows.append(
                {
                    "service_id": service_id,
                    "vpc_endpoint_id": conn.vpc_endpoint_id,
                    "owner": conn.owner,
                    "region": conn.region,
                    "created": iso(conn.created) if conn.created else None,
                    "age": s.age(conn.created, now),
                    "action": decision.action.value,
                    "code": decision.code.value,
                    "reason": decision.reason,
                    "grant": decision.grant.label if decision.grant else None,
                    "via": decision.via,
                    "escalation": escalation.state if escalation else None,
                }
            )
    if args.format != "table":
        s.emit(rows, args.format)
        return 0
    s.table(
        (
            (
                r["service_id"],
                r["vpc_endpoint_id"],
                r["owner"],
                r["region"],
                r["age"],
                r["action"],
                r["code"],
                r["escalation"],
                grant_cell(r["grant"], r["via"]),
                r["reason"],
            )
            for r in rows
        ),
        (
            "SERVICE",
            "ENDPOINT",
            "OWNER",
            "REGION",
            "AGE",
            "DECISION",
            "CODE",
            "ESCALATION",
            "GRANT",
            "WHY",
        ),
    )
    print(
        f"{len(rows)} pending connection(s) on {len(services)} managed service(s)", file=sys.stderr
    )
    return 0
