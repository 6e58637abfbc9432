"""Connection notifications: SNS -> SQS -> this Lambda (batches of up to 1,000 records).

Records are hints. They are grouped by service: Connect hints converge the endpoints they name (or
the whole service when one names none); Accept/Reject/Delete hints close open escalations. When a
service's converge fails, all its records are reported as batch item failures, so SQS redelivers
just those (then the DLQ). Malformed records are logged and dropped: they name nothing to act on,
and the sweep converges every managed service anyway."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from ..converge import Deps, converge, follow
from ..notifications import Hint, NotificationError, parse_record
from ..observability import logger, metrics, tracer
from ..runtime import default_deps

FOLLOW_EVENTS = {"Accept", "Reject", "Delete"}


class RetryableError(RuntimeError):
    """Some decisions could not be applied for a reason that may pass: retry the records."""


def process(records: Sequence[object], deps: Deps) -> list[str]:
    """Handle a batch; return the ids of records that must be retried."""
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
                named = [h.endpoint_id for h in converge_hints]
                ids = None if any(i is None for i in named) else [i for i in named if i]
                report = converge(service_id, deps, endpoint_ids=ids, trigger="notification")
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
    failed = process(records, default_deps())
    if failed and any("Sns" in r for r in records if isinstance(r, Mapping)):
        # Direct SNS subscription: no partial batch response; fail so SNS retries the delivery.
        raise RuntimeError(f"{len(failed)} notification(s) could not be converged")
    return {"batchItemFailures": [{"itemIdentifier": i} for i in failed]}
