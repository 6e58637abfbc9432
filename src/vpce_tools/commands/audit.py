"""`vpce-approver audit`: the decision trail (who, what, why, when), in decision-time order.

Never scans the table: without a filter it reads the by_time index newest day first and stops at
--limit (default DEFAULT_LIMIT) or --since; --consumer reads by_consumer, --subject the subject's
own partition. `--backfill-index` is the one-off scan that indexes records written before by_time
existed (docs/CLI.md)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from vpce_approver import validation as v
from vpce_approver.audit import HORIZON_DAYS, order, stamp
from vpce_approver.tables import AuditItem
from vpce_tools.cli import UsageError

from . import _support as s

DEFAULT_LIMIT = 50


def register(subs: Any) -> None:
    p: argparse.ArgumentParser = subs.add_parser("audit", help="the decision trail")
    p.add_argument(
        "--consumer", help="only this consumer: an account, or an OU/organization (its grants)"
    )
    p.add_argument("--subject", help="only this subject: vpce-… or grant#<service>#<consumer>")
    p.add_argument("--since", metavar="WHEN", help="ISO time or relative (2h, 7d)")
    p.add_argument(
        "--limit",
        type=int,
        metavar="N",
        help=f"at most the last N entries (default {DEFAULT_LIMIT} unless --since is given)",
    )
    p.add_argument(
        "--backfill-index",
        action="store_true",
        help="one-off: index records written before the by_time index existed (scans the table)",
    )
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
    if args.backfill_index:
        if args.consumer or args.subject or args.since or args.limit:
            raise UsageError("--backfill-index takes no filter")
        count = deps.audit.backfill(lambda n: print(f"indexed {n} ...", file=sys.stderr))
        print(f"indexed {count} record(s) written before the by_time index")
        return 0
    limit = args.limit or (None if since else DEFAULT_LIMIT)
    if args.consumer:
        try:
            consumer = v.consumer(args.consumer)
        except v.ValidationError as exc:
            raise UsageError(str(exc)) from None
        items = list(deps.audit.for_consumer(consumer, since, limit))
    elif args.subject:
        items = deps.audit.for_subject(args.subject)
        if since is not None:
            items = [i for i in items if str(i.at) >= stamp(since)]
    else:
        items = deps.audit.recent(limit=limit, since=since)
    items.sort(key=order)
    if limit:
        items = items[-limit:]
    rows = [_row(i) for i in items]
    if not args.limit and not since and not args.consumer and not args.subject:
        print(
            f"(the last {DEFAULT_LIMIT} at most, within {HORIZON_DAYS} days: --limit N or"
            " --since WHEN for more)",
            file=sys.stderr,
        )
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
