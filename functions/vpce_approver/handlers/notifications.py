"""Connection notifications: SNS -> SQS -> this Lambda (no batching window, up to 10 records).

Records are hints. They are grouped by service: a Connect hint converges everything pending on its
service, not just the endpoint it names (the same one Describe either way), so the first invocation
of a burst takes all of the burst that has arrived and later ones find little or nothing left: a
lone Connect is decided as soon as it arrives, a burst still costs a handful of Accept calls
(docs/BENCHMARKS.md, P1/P5). Accept/Reject/Delete hints close open escalations. When a service's
converge fails, all its records are reported as batch item failures, so SQS redelivers just those
(then the DLQ). Malformed records are logged and dropped: they name nothing to act on, and the sweep
converges every managed service anyway.

Imports: what the decision path needs (converge, pynamodb, botocore) is imported on first use, not
with this module (docs/BENCHMARKS.md, P3)."""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..notifications import Hint, NotificationError, parse_record
from ..observability import logger, metrics, tracer
from ..pacing import Pacer

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from ..converge import Deps, Report

FOLLOW_EVENTS = {"Accept", "Reject", "Delete"}


@functools.cache
def default_pacer() -> Pacer:
    """The container's pacer (reset with default_pacer.cache_clear())."""
    return Pacer()


class RetryableError(RuntimeError):
    """Some decisions could not be applied for a reason that may pass: retry the records."""


def mutating_calls(report: Report, ids_per_call: int) -> int:
    """Accept/Reject calls a converge made (one per action and chunk of IDs)."""
    from ..model import Action

    tried = [
        o.decision.action
        for o in report.outcomes
        if o.decision.action in (Action.ACCEPT, Action.REJECT)
        and (o.result == "done" or o.result.startswith("failed:"))
    ]
    return sum(-(-tried.count(a) // ids_per_call) for a in (Action.ACCEPT, Action.REJECT))


def paced_converge(service_id: str, deps: Deps, pacer: Pacer | None) -> Report:
    """converge() of everything pending on the service. With a pacer and no token, it waits
    before deciding, so that what arrives meanwhile is decided in the same Accept call; the
    pending connections are read first, so a hint whose connection is already decided (by this
    burst's earlier converge) costs that one Describe and no wait."""
    from ..converge import converge

    if pacer is None:
        return converge(service_id, deps, trigger="notification")
    pending = deps.ec2.connections(service_id, states=["pendingAcceptance"])
    if pending and pacer.delay() > 0:
        pacer.wait()
        pending = deps.ec2.connections(service_id, states=["pendingAcceptance"])
    report = converge(service_id, deps, trigger="notification", pending=pending)
    pacer.spend(mutating_calls(report, deps.ec2.ids_per_call))
    return report


def process(records: Sequence[object], deps: Deps, pacer: Pacer | None = None) -> list[str]:
    """Handle a batch; return the ids of records that must be retried. With a pacer (the
    Lambda handler's, one per container), a converge waits for a token (pacing.py)."""
    groups: dict[str, list[tuple[str, Hint]]] = defaultdict(list)
    for index, record in enumerate(records):
        if not isinstance(record, Mapping):  # not even a record: nothing to act on or retry
            logger.error("dropping a record that is not an object", extra={"index": index})
            metrics.add_metric("MalformedNotifications", "Count", 1)
            continue
        sns = record.get("Sns")
        sns_id = sns.get("MessageId") if isinstance(sns, Mapping) else None
        record_id = str(record.get("messageId") or sns_id or index)
        try:
            hint = parse_record(record)
        except NotificationError as exc:
            message = sns.get("Message") if isinstance(sns, Mapping) else None
            body = str(record.get("body") or message or "")[:2048]
            logger.error(
                "dropping malformed notification",
                extra={"record_id": record_id, "error": str(exc), "body": body},
            )
            metrics.add_metric("MalformedNotifications", "Count", 1)
            continue
        groups[hint.service_id].append((record_id, hint))

    failed: list[str] = []
    if groups:
        from ..converge import follow
    for service_id, items in groups.items():
        hints = [h for _, h in items]
        converge_hints = [h for h in hints if h.event not in FOLLOW_EVENTS]
        follow_ids = [
            h.endpoint_id
            for h in hints
            if h.endpoint_id and (h.event in FOLLOW_EVENTS or h.event is None)
        ]
        try:
            if converge_hints:
                # Everything pending on the service, not only the endpoints named: the same
                # Describe, and the Connects still queued behind this one are decided now, in
                # this one Accept call (their own hints then find nothing left to do).
                report = paced_converge(service_id, deps, pacer)
                if report.retryable:
                    # e.g. throttled beyond botocore's retries: redeliver these records now
                    # rather than leave the connections waiting for the next sweep.
                    raise RetryableError(f"{len(report.retryable)} decision(s) not applied yet")
            if follow_ids:
                follow(service_id, follow_ids, deps, trigger="notification")
        except Exception:
            logger.exception(
                "converge failed; records will be retried",
                extra={"service_id": service_id, "records": len(items)},
            )
            metrics.add_metric("Errors", "Count", 1)
            failed.extend(record_id for record_id, _ in items)
    return failed


@logger.inject_lambda_context(correlation_id_path="Records[0].messageId", clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: Mapping[str, Any], context: LambdaContext) -> dict[str, Any]:
    records = event.get("Records") if isinstance(event, Mapping) else None
    if not isinstance(records, list):
        logger.error("event has no Records list: ignored")
        metrics.add_metric("MalformedNotifications", "Count", 1)
        return {"batchItemFailures": []}
    from ..runtime import default_deps

    failed = process(records, default_deps(), default_pacer())
    if failed and any("Sns" in r for r in records if isinstance(r, Mapping)):
        # Direct SNS subscription: no partial batch response; fail so SNS retries the delivery.
        raise RuntimeError(f"{len(failed)} notification(s) could not be converged")
    return {"batchItemFailures": [{"itemIdentifier": i} for i in failed]}
