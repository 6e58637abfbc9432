"""One sweep run: escalations, then every managed service in rotation (ensure, converge
chunk by chunk, drift), stopping cleanly at the deadline with a cursor to resume."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator
from typing import Any

from botocore.exceptions import ClientError

from ..converge import Deps, converge
from ..membership import MembershipChange
from ..model import Connection
from ..tables import RegistryItem
from .cursor import CursorStore, Deadline, _rotation
from .drift import find_drift, reject_drift
from .ensure import ensure_service
from .escalations import maintain_escalations
from .principals import reconcile_or_report
from .report import (
    HUMAN_APPROVED,
    Cursor,
    DriftReporter,
    DriftSummary,
    Progress,
    ServiceSweep,
    SweepReport,
)

log = logging.getLogger("vpce_approver.sweep")

CHUNK_PAGES = 10  # 10 pages x 1,000 IDs = 10 Accept calls at most: the throttle's burst
SWEEP_STATES = ("pendingAcceptance", "pending", "available")
DEFAULT_MARGIN_MS = 60_000  # room to finish the chunk in hand (registry read, audit, accepts)
DRIFT_LOG_LIMIT = 100
BAD_TOKEN_CODES = frozenset({"InvalidPaginationToken", "InvalidNextToken"})


def _pages(
    deps: Deps, service_id: str, start_token: str | None
) -> Iterator[tuple[list[Connection], str | None]]:
    """The service's pages from start_token; a token that no longer works restarts at page 1."""
    pages = deps.ec2.connection_pages(service_id, states=SWEEP_STATES, start_token=start_token)
    try:
        first = next(pages)
    except StopIteration:
        return
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if not start_token or code not in BAD_TOKEN_CODES:
            raise
        log.warning("sweep cursor for %s no longer valid (%s): from page 1", service_id, code)
        pages = deps.ec2.connection_pages(service_id, states=SWEEP_STATES)
        first = next(pages)
    yield first
    yield from pages


def _process_chunk(
    service_id: str,
    chunk: list[Connection],
    deps: Deps,
    result: ServiceSweep,
    *,
    act: bool,
) -> None:
    pending = [c for c in chunk if c.pending_acceptance]
    live = [c for c in chunk if c.live]
    result.pending += len(pending)
    if pending:
        report = converge(service_id, deps, pending=pending, trigger="sweep")
        result.add_results(report.summary())
    drift = find_drift(service_id, live, deps)
    result.approved.extend(d for d in drift if d.outcome == HUMAN_APPROVED)
    drift = [d for d in drift if d.outcome != HUMAN_APPROVED]
    if drift:
        reject_drift(service_id, drift, deps, act=act)
        result.drift.extend(drift)


def sweep_service(
    enrollment: RegistryItem,
    deps: Deps,
    deadline: Deadline,
    *,
    act: bool,
    start_token: str | None = None,
    chunk_pages: int = CHUNK_PAGES,
    progress: Progress | None = None,
) -> tuple[ServiceSweep, Cursor | None]:
    """Ensure, then converge and check drift chunk by chunk. Returns the service's result and,
    when the deadline cut it off, where to resume."""
    service_id = str(enrollment.service_id)
    result = ServiceSweep(service_id)
    ensure_service(enrollment, deps, act=act, result=result)
    result.allow_list = reconcile_or_report(service_id, deps, act=act)
    for fix in result.fixes:
        log.warning("sweep fixed %s: %s", service_id, fix)
    for warning in result.warnings:
        log.warning("sweep found on %s: %s", service_id, warning)
    chunk: list[Connection] = []
    pages_in_chunk = 0
    token = start_token
    pages = _pages(deps, service_id, start_token)
    while True:
        if deadline.expired():
            if chunk:  # already read: the margin is sized to finish it
                _process_chunk(service_id, chunk, deps, result, act=act)
            return result, Cursor(service_id, token)
        try:
            page, token = next(pages)
        except StopIteration:
            token = None
            break
        chunk.extend(page)
        pages_in_chunk += 1
        result.pages += 1
        result.read += len(page)
        if progress:
            progress(f"{service_id}: page {result.pages}, {result.read} connections read")
        if token is None:
            break
        if pages_in_chunk >= chunk_pages:
            _process_chunk(service_id, chunk, deps, result, act=act)
            chunk, pages_in_chunk = [], 0
    if chunk:
        _process_chunk(service_id, chunk, deps, result, act=act)
    result.complete = True
    return result, None


# ------------------------------------------------------------------ the sweep
def sweep(
    deps: Deps,
    *,
    remaining_ms: Callable[[], int] | None = None,
    margin_ms: int = DEFAULT_MARGIN_MS,
    dry_run: bool = False,
    chunk_pages: int = CHUNK_PAGES,
    progress: Progress | None = None,
    cursors: CursorStore | None = None,
) -> SweepReport:
    """One sweep run over every managed service (see the module docstring)."""
    if chunk_pages < 1:
        raise ValueError("chunk_pages must be >= 1")
    act = not (dry_run or deps.settings.shadow_mode)
    if dry_run and not deps.settings.shadow_mode:
        deps = dataclasses.replace(
            deps, settings=dataclasses.replace(deps.settings, shadow_mode=True)
        )
    deadline = Deadline(remaining_ms, margin_ms)
    store = cursors or CursorStore()
    report = SweepReport(dry_run=dry_run or deps.settings.shadow_mode)

    try:
        report.escalations = maintain_escalations(deps, deadline, act=act)
    except Exception as exc:
        log.exception("sweep: escalation maintenance failed")
        report.escalations.error = f"{type(exc).__name__}: {exc}"

    report.membership = refresh_membership(deps, record=not dry_run)

    cursor = None if dry_run else store.load()
    report.resumed_from = cursor
    services, token = _rotation(deps.registry.managed_services(), cursor)
    if progress:
        where = f" (resuming at {cursor.service_id})" if cursor else ""
        progress(f"{len(services)} managed service(s){where}")
    for position, enrollment in enumerate(services):
        service_id = str(enrollment.service_id)
        if deadline.expired():
            report.stopped_at = Cursor(service_id)
            break
        try:
            result, stopped = sweep_service(
                enrollment,
                deps,
                deadline,
                act=act,
                start_token=token if position == 0 else None,
                chunk_pages=chunk_pages,
                progress=progress,
            )
        except Exception as exc:
            log.exception("sweep of %s failed; the other services go on", service_id)
            result, stopped = ServiceSweep(service_id, error=f"{type(exc).__name__}: {exc}"), None
        report.services.append(result)
        if progress:
            progress(f"{service_id}: {_one_line(result)}")
        if stopped is not None:
            report.stopped_at = stopped
            break

    if not dry_run:
        if report.stopped_at is not None:
            store.save(report.stopped_at, deps.clock())
        elif cursor is not None:
            store.clear()
    _emit(report, deps)
    return report


def refresh_membership(deps: Deps, *, record: bool) -> MembershipChange | None:
    """With OU/organization grants on: read the organization afresh before any service, so this
    run's allow-lists and decisions place every account where it is now (a new account in a
    granted OU is accepted, a moved one no longer is), and record the change, so that every
    container's cached membership is known stale (membership.py). Never raises: an unreadable
    organization is reported, and decisions on OU grants then fail closed."""
    directory = deps.registry.directory
    if directory is None:
        return None
    try:
        change = directory.refresh(record=record)
    except Exception as exc:  # the adapter should not raise; never fail the sweep over it
        log.exception("sweep: the organization could not be read")
        change = MembershipChange(error=f"{type(exc).__name__}: {exc}")
    if change.error:
        log.error("sweep: the organization could not be read: %s", change.error)
        deps.metrics.add_metric("MembershipUnknown", "Count", 1)
    elif change.changed:
        moves = len(change.joined) + len(change.left) + len(change.moved)
        deps.metrics.add_metric("MembershipChanges", "Count", moves)
        log.warning(
            "organization changed: %d joined, %d left, %d moved (epoch %d)",
            len(change.joined),
            len(change.left),
            len(change.moved),
            change.epoch,
            extra={"membership": {"joined": change.joined[:100], "left": change.left[:100]}},
        )
    return change


def _one_line(result: ServiceSweep) -> str:
    if result.error:
        return f"error: {result.error}"
    parts = [f"{result.read} read", f"{result.pending} pending"]
    parts += [f"{k}={v}" for k, v in sorted(result.results.items())]
    if result.drift:
        parts.append(f"drift={len(result.drift)}")
    if result.approved:
        parts.append(f"approved-by-person={len(result.approved)}")
    parts += result.fixes
    if result.allow_list is not None and result.allow_list.drifted:
        drift = result.allow_list
        parts.append(f"principals +{len(drift.missing)} -{len(drift.extra)} ({drift.outcome})")
    if not result.complete:
        parts.append("cut off")
    return ", ".join(parts)


def _emit(report: SweepReport, deps: Deps) -> None:
    metrics = deps.metrics
    metrics.add_metric("SweepServices", "Count", len(report.services))
    metrics.add_metric("SweepConnectionsRead", "Count", sum(s.read for s in report.services))
    drift = report.drift
    metrics.add_metric("Drift", "Count", len(drift))
    metrics.add_metric("ApprovedNoGrant", "Count", len(report.approved))
    if any(d.outcome == "rejected" for d in drift):
        metrics.add_metric("DriftRejected", "Count", sum(d.outcome == "rejected" for d in drift))
    fixes = sum(len(s.fixes) for s in report.services)
    if fixes:
        metrics.add_metric("EnsureFixed", "Count", fixes)
    if report.cut_off:
        metrics.add_metric("SweepCutOff", "Count", 1)
    if report.errors:
        metrics.add_metric("SweepErrors", "Count", len(report.errors))
    if drift:
        log.warning(
            "drift: %d live connection(s) without a live allow grant",
            len(drift),
            extra={"drift": [d.as_dict() for d in drift[:DRIFT_LOG_LIMIT]]},
        )
        if isinstance(deps.port, DriftReporter):
            try:
                deps.port.drift(DriftSummary(tuple(drift)))
            except Exception:  # optional: never fail the sweep over a summary
                log.exception("drift summary could not be sent")
    log.info("sweep done", extra={"sweep": _compact(report)})


def _compact(report: SweepReport) -> dict[str, Any]:
    summary = report.summary()
    summary.pop("per_service", None)
    return summary
