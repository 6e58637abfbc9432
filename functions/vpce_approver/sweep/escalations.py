"""Escalation maintenance: close those settled elsewhere, post the unposted, refresh the stale."""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta

from pynamodb.exceptions import UpdateError

from ..audit import stamp
from ..converge import Deps, follow
from ..tables import EscalationItem
from .cursor import Deadline
from .report import EscalationSweep

log = logging.getLogger("vpce_approver.sweep")

PORT_CALLS_PER_RUN = 50  # per kind (post, refresh): Slack's chat.* tiers allow ~50 a minute
REFRESH_AFTER = timedelta(hours=1)


def _age(item: EscalationItem, now: datetime) -> timedelta:
    raw = item.updated_at or item.created_at
    try:
        return now - datetime.fromisoformat(str(raw))
    except (TypeError, ValueError):
        return timedelta.max


def maintain_escalations(
    deps: Deps,
    deadline: Deadline,
    *,
    act: bool,
    refresh_after: timedelta = REFRESH_AFTER,
    limit: int = PORT_CALLS_PER_RUN,
) -> EscalationSweep:
    """Close escalations settled elsewhere, post the unposted, refresh the stale."""
    out = EscalationSweep()
    open_items = list(deps.escalations.open_items())
    if not open_items:
        return out
    by_service: dict[str, list[EscalationItem]] = defaultdict(list)
    for item in open_items:
        by_service[str(item.service_id)].append(item)
    closed: set[str] = set()
    for service_id, items in sorted(by_service.items()):
        if deadline.expired():
            return out
        # Only the escalated consumers' connections: one Describe, not the whole service.
        connections = deps.ec2.connections(service_id, owners={str(i.consumer) for i in items})
        ids = [str(i.vpc_endpoint_id) for i in items]
        if act:
            done = follow(service_id, ids, deps, trigger="sweep", connections=connections)
            closed.update(done)
            out.closed += len(done)
        else:
            pending = {c.vpc_endpoint_id for c in connections if c.pending_acceptance}
            out.would_close += sum(1 for i in ids if i not in pending)
            closed.update(i for i in ids if i not in pending)
    still_open = [i for i in open_items if str(i.vpc_endpoint_id) not in closed]
    now = deps.clock()
    for item in [i for i in still_open if not i.posted][:limit]:
        if deadline.expired():
            return out
        if not act:
            out.would_post += 1
            continue
        deps.port.opened(item)
        out.reposted += 1
    stale = [i for i in still_open if i.posted and _age(i, now) >= refresh_after][:limit]
    for item in stale:
        if deadline.expired():
            return out
        if not act:
            out.would_refresh += 1
            continue
        deps.port.refresh(item)
        out.refreshed += 1
        try:  # refreshed now: the next refresh is due refresh_after from here
            item.update(actions=[EscalationItem.updated_at.set(stamp(now))])
        except UpdateError:
            log.info("escalation %s changed while refreshing it", item.vpc_endpoint_id)
    if out.reposted or out.refreshed or out.closed:
        deps.metrics.add_metric("EscalationsReposted", "Count", out.reposted)
        deps.metrics.add_metric("EscalationsRefreshed", "Count", out.refreshed)
        deps.metrics.add_metric("EscalationsClosed", "Count", out.closed)
    return out
