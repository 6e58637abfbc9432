"""The scheduled sweep: EventBridge (Scheduled Event) -> sweep every managed service.

Any other event is a trigger too, handled the same way: with OrganizationEvents, an AWS
Organizations account-lifecycle event (an account created, moved, removed, closed) starts a run
now rather than at the next schedule. It is only a hint: the run re-reads the organization and
converges everything as a scheduled one does; it is logged with what it names.

Returns the run's summary. A run cut off by the Lambda's remaining time is not a failure: the
cursor is saved and the next scheduled run resumes there. A run in which a service (or the
escalation maintenance) failed raises after finishing everything else, so the asynchronous
invocation's failure destination (the sweep DLQ) and the Errors alarm see it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from ..converge import Deps
from ..observability import logger, metrics, tracer
from ..runtime import default_deps
from ..sweep import SweepReport, sweep
from ..sweep.lease import SweepLease

ORGANIZATIONS_SOURCE = "aws.organizations"


class SweepFailed(RuntimeError):
    """Some services could not be swept (the others were)."""


def run(event: Mapping[str, Any], context: LambdaContext, deps: Deps) -> dict[str, Any]:
    logger.info("sweep started", extra=trigger(event))
    # One sweeper at a time (sweep/lease.py): a run that finds the lease held does nothing.
    lease = SweepLease(getattr(context, "aws_request_id", None))
    lifetime = timedelta(milliseconds=context.get_remaining_time_in_millis())
    held = lease.acquire(deps.clock(), lifetime)
    if held is not None:
        logger.info("sweep skipped: another run holds the lease", extra={"lease": held.as_dict()})
        deps.metrics.add_metric("SweepSkipped", "Count", 1)
        return held.as_dict()
    try:
        report: SweepReport = sweep(deps, remaining_ms=context.get_remaining_time_in_millis)
    finally:
        lease.release()
    summary = report.summary()
    summary.pop("per_service", None)
    logger.info("sweep finished", extra={"sweep": summary})
    if report.errors:
        raise SweepFailed(f"sweep failed for {', '.join(sorted(report.errors))}")
    return summary


def trigger(event: object) -> dict[str, Any]:
    """What started the run, for the log: its source and ID and, for an Organizations event,
    its name and the accounts it names (read tolerantly: a malformed event still sweeps)."""
    source = event.get("source") if isinstance(event, Mapping) else None
    out: dict[str, Any] = {"source": source, "event_id": _event_id(event)}
    detail = event.get("detail") if isinstance(event, Mapping) else None
    if source == ORGANIZATIONS_SOURCE and isinstance(detail, Mapping):
        out["organization_event"] = str(detail.get("eventName") or "")
        service = detail.get("serviceEventDetails")  # e.g. {"createAccountStatus": {...}}
        named = [
            detail.get("requestParameters"),
            *(service.values() if isinstance(service, Mapping) else ()),
        ]
        out["accounts"] = sorted(
            {str(p["accountId"]) for p in named if isinstance(p, Mapping) and p.get("accountId")}
        )
    return out


def _event_id(event: object) -> str | None:
    if isinstance(event, Mapping) and isinstance(event.get("id"), str):
        return str(event["id"])
    return None


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: Mapping[str, Any], context: LambdaContext) -> dict[str, Any]:
    return run(event, context, default_deps())
