"""`vpce-approver sweep [--dry-run]`: run the scheduled sweep now, from the CLI, with progress.

The same routine as the SweepFunction (vpce_approver.sweep): ensure each managed service's
acceptance_required and connection notification, converge every pending connection, report drift,
post/refresh/close escalations. `--dry-run` is shadow mode: it decides and reports, and acts on
nothing (no Accept/Reject, no fix, no Slack; "would-…" audit records only). The CLI has no deadline
and ignores the Lambda's resume cursor.

Also `demo_lost_notification()`, the `make demo` step showing a lost notification recovered."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from vpce_approver.sweep import SweepReport, sweep
from vpce_tools.cli import UsageError

from . import _support as s

if TYPE_CHECKING:
    from vpce_tools.emulator.world import Consumer, EndpointService
    from vpce_tools.stack import LocalDeployment


def register(subs: Any) -> None:
    p: argparse.ArgumentParser = subs.add_parser(
        "sweep",
        help="converge every managed service now (what the scheduled sweep does)",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    p.add_argument(
        "--dry-run", action="store_true", help="shadow mode: decide and report, act on nothing"
    )
    p.add_argument(
        "--topic-arn",
        help="the deployment's notification topic (default: NOTIFICATION_TOPIC_ARN); needed to"
        " recreate a missing connection notification",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no progress lines")
    s.add_format(p)
    p.set_defaults(run=run)


@s.aws_errors
def run(args: argparse.Namespace) -> int:
    deps = s.deps(args)
    s.require_tables()
    if args.topic_arn:
        if not str(args.topic_arn).startswith("arn:") or ":sns:" not in str(args.topic_arn):
            raise UsageError(f"--topic-arn {args.topic_arn!r} is not an SNS topic ARN")
        deps = dataclasses.replace(
            deps,
            settings=dataclasses.replace(deps.settings, notification_topic_arn=args.topic_arn),
        )

    def progress(line: str) -> None:
        print(f"sweep: {line}", file=sys.stderr, flush=True)

    report = sweep(deps, dry_run=args.dry_run, progress=None if args.quiet else progress)
    if args.format != "table":
        s.emit(report.summary(), args.format)
    else:
        print_summary(report)
    return 1 if report.errors else 0


def print_summary(report: SweepReport, out: Any = None) -> None:
    out = out or sys.stdout
    mode = " (dry run: nothing was changed)" if report.dry_run else ""
    print(f"swept {len(report.services)} managed service(s){mode}", file=out)
    rows = []
    for svc in report.services:
        rows.append(
            (
                svc.service_id,
                svc.read,
                svc.pending,
                svc.results.get("accept:done", 0) + svc.results.get("accept:shadow", 0),
                svc.results.get("reject:done", 0) + svc.results.get("reject:shadow", 0),
                sum(v for k, v in svc.results.items() if k.startswith("escalate:")),
                len(svc.drift),
                "; ".join(svc.fixes + svc.warnings) or "-",
                svc.error or ("ok" if svc.complete else "cut off"),
            )
        )
    accept, reject = (
        ("would accept", "would reject") if report.dry_run else ("accepted", "rejected")
    )
    if rows:
        s.table(
            rows,
            (
                "service",
                "read",
                "pending",
                accept,
                reject,
                "escalated",
                "drift",
                "ensure",
                "status",
            ),
            out,
        )
    for item in report.drift:
        print(
            f"drift: {item.vpc_endpoint_id} ({item.consumer}) on {item.service_id} is"
            f" {item.state}: {item.reason} -> {item.outcome}",
            file=out,
        )
    for item in report.approved:  # not drift: a person's decision, kept
        print(
            f"approved by a person, no grant: {item.vpc_endpoint_id} ({item.consumer}) on"
            f" {item.service_id}: {item.reason}",
            file=out,
        )
    esc = report.escalations
    if report.dry_run:
        print(
            f"escalations: would close {esc.would_close}, post {esc.would_post},"
            f" refresh {esc.would_refresh}",
            file=out,
        )
    else:
        print(
            f"escalations: closed {esc.closed}, posted {esc.reposted}, refreshed {esc.refreshed}",
            file=out,
        )
    for where, error in report.errors.items():
        print(f"error: {where}: {error}", file=out)


def demo_lost_notification(
    deployment: LocalDeployment,
    service: EndpointService,
    consumer: Consumer,
    say: Callable[[str], None] = print,
) -> bool:
    """For `make demo`: a registered consumer connects, its notification is lost (the queue is
    purged), nothing happens; one sweep accepts it. Returns True when the sweep recovered it.
    Needs an emulated world (the demo's) with `service` enrolled in `deployment`."""
    from vpce_approver.model import Grant, GrantStatus

    provider = deployment.provider
    deps = deployment.deps(notification_topic_arn=deployment.topic_arn)
    deps.registry.put(
        Grant(
            service_id=service.service_id,
            consumer=consumer.account_id,
            status=GrantStatus.ALLOW,
            principals=(f"arn:aws:iam::{consumer.account_id}:root",),
            note="sweep demo",
        ),
        by="demo",
        now=datetime.now(UTC),
    )
    vpce = consumer.create_endpoint(service.service_name)
    provider.client("sqs").purge_queue(QueueUrl=deployment.queue_url)
    handled = deployment.poller(deps).drain()
    say(f"{consumer.account_id} (registered) created {vpce}; its notification was lost")
    say(f"notification handler invocations: {handled} -> {_state(deployment, service, vpce)}")
    report = sweep(deps)
    state = _state(deployment, service, vpce)
    say(
        f"one sweep: {report.summary()['read']} connection(s) read,"
        f" {report.total('accept:done')} accepted -> {vpce} is {state}"
    )
    return state == "available"


def _state(deployment: LocalDeployment, service: EndpointService, vpce_id: str) -> str:
    for conn in deployment.provider.connections(service.service_id):
        if conn["VpcEndpointId"] == vpce_id:
            return str(conn["VpcEndpointState"])
    return "unknown"
