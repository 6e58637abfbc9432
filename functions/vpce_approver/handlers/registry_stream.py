"""Registry edits: DynamoDB Streams (NEW_AND_OLD_IMAGES) of the registry table -> this Lambda.

Powertools' BatchProcessor runs each record through grants.apply_change() in stream order and
reports the sequence numbers of failed records (ReportBatchItemFailures): Lambda retries from the
first failure (bisecting when the whole batch fails), then sends the batch's metadata to the
OnFailure destination (an SQS DLQ). apply_change is level-triggered, so records that succeeded
and are delivered again with a retried one change nothing.

A record that cannot be parsed (no keys) is logged and dropped: retrying cannot fix it. A TTL
deletion is recognised by its userIdentity {type: Service, principalId: dynamodb.amazonaws.com}.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from ..converge import Deps
from ..grants import TTL_PRINCIPAL_ID, Change, apply_change
from ..observability import logger, metrics, tracer
from ..runtime import default_deps


class StreamRecordError(ValueError):
    """A stream record that names no registry item."""


def is_ttl_deletion(record: Mapping[str, Any]) -> bool:
    identity = record.get("userIdentity") or {}
    return (
        record.get("eventName") == "REMOVE"
        and isinstance(identity, Mapping)
        and identity.get("type") == "Service"
        and identity.get("principalId") == TTL_PRINCIPAL_ID
    )


def change_from_record(record: DynamoDBRecord) -> Change:
    try:
        return _change(record)
    except StreamRecordError:
        raise
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        # Keys or images that do not deserialize can never be applied: retrying cannot help.
        raise StreamRecordError(f"record cannot be read: {type(exc).__name__}") from exc


def _change(record: DynamoDBRecord) -> Change:
    raw = record.raw_event
    section = raw.get("dynamodb")
    if not isinstance(section, Mapping) or not isinstance(section.get("Keys"), Mapping):
        raise StreamRecordError("record has no dynamodb section with Keys")
    stream = record.dynamodb
    if stream is None or record.event_name is None:
        raise StreamRecordError("record has no dynamodb section or eventName")
    keys = stream.keys
    service_id, consumer = keys.get("service_id"), keys.get("consumer")
    if not isinstance(service_id, str) or not isinstance(consumer, str):
        raise StreamRecordError(f"record keys {sorted(keys)} are not (service_id, consumer)")
    created = stream.approximate_creation_date_time
    at = datetime.fromtimestamp(created, UTC) if created is not None else datetime.now(UTC)
    has_old = "OldImage" in (raw.get("dynamodb") or {})
    has_new = "NewImage" in (raw.get("dynamodb") or {})
    return Change(
        event_id=str(record.event_id or stream.sequence_number or ""),
        event=record.event_name.name,
        service_id=service_id,
        consumer=consumer,
        old=stream.old_image if has_old else None,
        new=stream.new_image if has_new else None,
        at=at,
        by_ttl=is_ttl_deletion(raw),
    )


def process(event: Mapping[str, Any], deps: Deps) -> PartialItemFailureResponse:
    """Handle one Lambda DynamoDB Streams event; returns the partial batch response. Raises
    BatchProcessingError when every record failed (so Lambda bisects and retries)."""
    processor = BatchProcessor(event_type=EventType.DynamoDBStreams)

    def handle(record: DynamoDBRecord) -> None:
        try:
            change = change_from_record(record)
        except StreamRecordError as exc:
            logger.error(
                "dropping unusable stream record",
                extra={"event_id": record.event_id, "error": str(exc)},
            )
            metrics.add_metric("MalformedStreamRecords", "Count", 1)
            return
        try:
            report = apply_change(change, deps)
        except Exception:
            logger.exception(
                "registry change failed; the record will be retried",
                extra={"key": f"{change.service_id}/{change.consumer}", "event": change.event},
            )
            metrics.add_metric("Errors", "Count", 1)
            raise
        logger.info(
            "registry change applied",
            extra={
                "registry_change": {
                    "key": f"{change.service_id}/{change.consumer}",
                    "action": report.action,
                    "actor": change.actor,
                    "refused": report.refused,
                    "skipped": report.skipped,
                    "services": [
                        {
                            "service_id": e.service_id,
                            "added": list(e.added),
                            "removed": list(e.removed),
                            "accepted": len(e.accepted),
                            "revoked": len(e.revoked),
                        }
                        for e in report.services
                    ],
                }
            },
        )

    return process_partial_response(event=dict(event), record_handler=handle, processor=processor)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process(event, default_deps())
