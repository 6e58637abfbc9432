"""The Slack work queue (SQS) -> the worker: one click per record, partial batch failures.

A record that fails (EC2, DynamoDB, or Slack not showing the outcome) is reported in
batchItemFailures and comes back; the job's claim on its escalation lets the retry finish what
it started. Malformed records are logged and dropped."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from ..observability import logger, metrics, tracer
from ..runtime import default_deps
from ..slack.interactivity import BadRequest, Job
from ..slack.services import SlackServices


@functools.cache
def default_services() -> SlackServices:
    return SlackServices.build(default_deps())


def process(records: Sequence[Mapping[str, Any]], services: SlackServices) -> list[str]:
    """Handle a batch; return the messageIds to retry."""
    worker = services.worker()
    failed: list[str] = []
    for index, record in enumerate(records):
        record_id = str(record.get("messageId") or index)
        try:
            job = Job.from_json(str(record.get("body") or ""))
        except BadRequest as exc:
            logger.error(
                "dropping malformed slack job", extra={"record_id": record_id, "error": str(exc)}
            )
            metrics.add_metric("MalformedSlackJobs", "Count", 1)
            continue
        try:
            result = worker.handle(job)
        except Exception:
            logger.exception("slack job failed; it will be retried", extra={"record_id": record_id})
            metrics.add_metric("SlackErrors", "Count", 1)
            failed.append(record_id)
            continue
        logger.info(
            "slack job done",
            extra={"job": job.job_id, "action": job.action, "user": job.user, "result": result},
        )
    return failed


@logger.inject_lambda_context(correlation_id_path="Records[0].messageId", clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: Mapping[str, Any], context: LambdaContext) -> dict[str, Any]:
    records = event.get("Records") if isinstance(event, Mapping) else None
    if not isinstance(records, list):
        logger.error("event has no Records list: ignored")
        return {"batchItemFailures": []}
    failed = process(records, default_services())
    return {"batchItemFailures": [{"itemIdentifier": i} for i in failed]}
