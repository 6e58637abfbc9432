"""`vpce-approver audit`: the decision trail (who, what, why, when), oldest first."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from vpce_approver import validation as v
from vpce_approver.audit import stamp
from vpce_approver.tables import AuditItem
from vpce_tools.cli import UsageError

from . import _support as s


def register(subs: Any) -> None:
    p: argparse.ArgumentParser = subs.add_parser("audit", help="the decision trail")
    p.add_argument("--consumer", help="only this consumer account")
    p.add_argument("--subject", help="only this subject: vpce-… or grant#<service>#<consumer>")
    p.add_argument("--since", metavar="WHEN", help="ISO time or relative (2h, 7d)")
    p.add_argument("--limit", type=int, metavar="N", help="at most the last N entries")
    s.add_format(p)
    p.set_defaults(run=run)


def _plain(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    as_dict: Any = value.as_dict  # pynamodb's MapAttribute.as_dict is untyped
    return dict(as_dict())


def _row(item: AuditItem) -> dict[str, Any]:
    row = {
        "at": item.at,
        "subject": item.subject,
        "action": item.action,
        "actor": item.actor,
        "trigger": item.trigger,
        "outcome": item.outcome,
        "code": item.code,
        "consumer": item.consumer,
        "service_id": item.service_id,
        "reason": item.reason,
        "old": _plain(item.old),
        "new": _plain(item.new),
    }
    return {k: val for k, val in row.items() if val is not None}


@s.aws_errors
def run(args: argparse.Namespace) -> int:
    if args.consumer and args.subject:
        raise UsageError("use --consumer or --subject, not both")
    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be a positive number")
    since = s.parse_time(args.since, past=True) if args.since else None
    deps = s.deps(args)
    if args.consumer:
        try:
            consumer = v.account_id(args.consumer)
        except v.ValidationError as exc:
            raise UsageError(str(exc)) from None
        items = list(deps.audit.for_consumer(consumer, since))
    elif args.subject:
        items = deps.audit.for_subject(args.subject)
        if since is not None:
            items = [i for i in items if i.sk >= stamp(since)]
    else:
        items = deps.audit.since(since)
    items.sort(key=lambda i: i.sk)
    if args.limit:
        items = items[-args.limit :]
    rows = [_row(i) for i in items]
    if args.format != "table":
        s.emit(rows, args.format)
        return 0
    s.table(
        (
            (r["at"], r["actor"], r["action"], r.get("outcome"), r["subject"], r.get("reason"))
            for r in rows
        ),
        ("AT", "ACTOR", "ACTION", "OUTCOME", "SUBJECT", "WHY"),
    )
    print(f"{len(rows)} entr{'y' if len(rows) == 1 else 'ies'}", file=sys.stderr)
    return 0
