"""The scheduled sweep: the backstop that makes the system converge when a hint was lost.

Notifications can be lost, Slack can be down, a Lambda can time out mid-batch. Every run:

1. escalations: close those whose connection was settled elsewhere (`converge.follow`), post the
   ones never posted (`port.opened`), refresh the stale ones (`port.refresh`); capped per run;
2. for every managed service (`Registry.managed_services()`, sorted; resuming at the cursor):
   - ensure (like a controller): `AcceptanceRequired` is on and the service's connection
     notification to the deployment's topic is in place; fix either and report the fix;
   - page through the service's pendingAcceptance/pending/available connections, 1,000 a page,
     `CHUNK_PAGES` pages per chunk; each chunk's pending connections go to one `converge()` (one
     registry read for the chunk's consumers, Accept/Reject with up to 1,000 IDs per call: a chunk
     of 10 pages needs at most 10 Accept calls, the throttle's burst), and its live connections to
     the drift check;
   - drift: a live connection whose consumer has no live allow grant is reported (metric, log,
     optional summary via the port) and rejected only when revocation is on for it.
3. stop cleanly when the Lambda's remaining time drops under the margin: the cursor (service +
   NextToken) is saved and the next run resumes there.

The cursor is the item `#sweep-cursor` in the escalations table (cursor.py says why there).

Dry run (the CLI's `--dry-run`) and SHADOW_MODE act on nothing: converge records "would-…",
ensure reports what it would fix, escalations are counted, not posted; a dry run ignores the cursor.

Modules: report.py (what a run reports), cursor.py (deadline, resume point), ensure.py (acceptance,
tag, notification), escalations.py (post/refresh/close), drift.py (live connections without a
live allow grant), run.py (the run itself).
"""

from __future__ import annotations

from .cursor import CURSOR_KEY, CursorItem, CursorStore, Deadline
from .drift import find_drift, reject_drift
from .ensure import CONNECTION_EVENTS, MANAGED_TAG_KEY, ensure_service
from .escalations import maintain_escalations
from .report import (
    Cursor,
    DriftItem,
    DriftReporter,
    DriftSummary,
    EscalationSweep,
    Progress,
    ServiceSweep,
    SweepReport,
)
from .run import CHUNK_PAGES, DEFAULT_MARGIN_MS, SWEEP_STATES, sweep, sweep_service

__all__ = [
    "CHUNK_PAGES",
    "CONNECTION_EVENTS",
    "CURSOR_KEY",
    "DEFAULT_MARGIN_MS",
    "MANAGED_TAG_KEY",
    "SWEEP_STATES",
    "Cursor",
    "CursorItem",
    "CursorStore",
    "Deadline",
    "DriftItem",
    "DriftReporter",
    "DriftSummary",
    "EscalationSweep",
    "Progress",
    "ServiceSweep",
    "SweepReport",
    "ensure_service",
    "find_drift",
    "maintain_escalations",
    "reject_drift",
    "sweep",
    "sweep_service",
]
