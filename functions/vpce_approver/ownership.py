"""Which allowed principals this deployment added: the record that lets the registry stream and the
sweep remove what they added and never touch the provider's own entries.

One item per (service, principal) in the escalations table, key
`vpc_endpoint_id = "#principal#<service-id>#<principal>"` (docs/SWEEP.md, "Allow-list ownership"):

- not in the registry, whose stream drives the grant path: an ownership write would wake the
  registry-stream function and mix bookkeeping into the grant history;
- not one item per service with a set of principals: 10,000 principals (ARNs of up to ~110 bytes)
  would approach DynamoDB's 400 KB item limit; one small item each never does;
- the items have no `state`, so they never appear in the escalations' `by_state` index.

Readers only ever ask about principals that are on the allow-list now and that no live grant needs
(the removal candidates): a BatchGetItem of those keys, usually none. Writers claim a principal
*before* adding it (a crash in between leaves a claim and no principal: the retry or the sweep adds
it, and releasing a principal that is not listed clears a stale claim) and release it after
removing it. A principal that was on the list before this deployment wanted it is never claimed.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from pynamodb.attributes import UnicodeAttribute
from pynamodb.models import Model

from .audit import stamp
from .tables import bound_like

KEY_PREFIX = "#principal#"
BATCH_GET_MAX = 100


def key(service_id: str, principal: str) -> str:
    return f"{KEY_PREFIX}{service_id}#{principal}"


class OwnedPrincipalItem(Model):
    """One allowed principal this deployment added to one service (see the module docstring)."""

    class Meta:
        table_name = "vpce-approver-escalations"
        region = "us-east-1"

    vpc_endpoint_id = UnicodeAttribute(hash_key=True)  # key(service_id, principal)
    service_id = UnicodeAttribute()
    principal = UnicodeAttribute()
    added_at = UnicodeAttribute()
    added_by = UnicodeAttribute()


def _model() -> type[OwnedPrincipalItem]:
    return bound_like(OwnedPrincipalItem)


def owned(service_id: str, principals: Iterable[str]) -> set[str]:
    """Those of `principals` this deployment added to the service (consistent reads)."""
    wanted = sorted(set(principals))
    if not wanted:
        return set()
    model = _model()
    out: set[str] = set()
    for start in range(0, len(wanted), BATCH_GET_MAX):
        keys = [key(service_id, p) for p in wanted[start : start + BATCH_GET_MAX]]
        for item in model.batch_get(keys, consistent_read=True):
            principal = getattr(item, "principal", None)
            if isinstance(principal, str) and item.vpc_endpoint_id == key(service_id, principal):
                out.add(principal)
    return out


def claim(service_id: str, principals: Iterable[str], *, by: str, now: datetime) -> None:
    """Record that this deployment adds these principals (before the Modify call)."""
    items = sorted(set(principals))
    if not items:
        return
    model = _model()
    at = stamp(now)
    with model.batch_write() as batch:
        for principal in items:
            batch.save(
                model(
                    key(service_id, principal),
                    service_id=service_id,
                    principal=principal,
                    added_at=at,
                    added_by=by[:256],
                )
            )


def release(service_id: str, principals: Iterable[str]) -> None:
    """Forget these principals (after the Modify call removed them, or a stale claim)."""
    items = sorted(set(principals))
    if not items:
        return
    model = _model()
    with model.batch_write() as batch:
        for principal in items:
            batch.delete(
                model(
                    key(service_id, principal),
                    service_id=service_id,
                    principal=principal,
                    added_at="",
                    added_by="",
                )
            )
