"""DynamoDB tables (pynamodb models). Table names and region are bound at runtime from Settings.

- Registry: grants, key (service_id, consumer); service_id is a vpce-svc-… ID or "*", consumer a
  12-digit account, an OU (ou-…) or an organization (o-…). The same table
  holds the enrollment of each managed service as the item (service_id, "#service"), so that one
  BatchGetItem answers both "is this service managed?" and "which grants apply?". GSI by_consumer.
- Audit: the decision trail, key (subject, sk) with subject = a vpce-… ID, or grant#svc#consumer for
  registry changes, and sk = "<ISO time>#<decision id>". GSI by_consumer (consumer, sk); GSI
  by_time (day, at): the trail newest first, one partition per UTC day of the decision (audit.py).
- Escalations: one item per connection that needs a human, key vpc_endpoint_id. GSI by_state.

template.yaml declares the same key schemas; tests build their tables from the template and a test
asserts that the two agree.
"""

from __future__ import annotations

from typing import Any

from pynamodb.attributes import (
    BooleanAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    UnicodeAttribute,
    VersionAttribute,
)
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

SERVICE_MARKER = "#service"


class RegistryByConsumer(GlobalSecondaryIndex["RegistryItem"]):
    class Meta:
        index_name = "by_consumer"
        projection = AllProjection()

    consumer = UnicodeAttribute(hash_key=True)
    service_id = UnicodeAttribute(range_key=True)


class RegistryItem(Model):
    """A grant, or (consumer == "#service") the enrollment of a managed service."""

    class Meta:
        table_name = "vpce-approver-registry"
        region = "us-east-1"

    service_id = UnicodeAttribute(hash_key=True)
    consumer = UnicodeAttribute(range_key=True)
    status = UnicodeAttribute()  # allow | deny | suspended | managed (service enrollment)
    principals = ListAttribute(of=UnicodeAttribute, null=True)
    expires_at = NumberAttribute(null=True)  # epoch seconds; the table's TTL attribute
    max_endpoints = NumberAttribute(null=True)
    regions = ListAttribute(of=UnicodeAttribute, null=True)
    owner = UnicodeAttribute(null=True)
    note = UnicodeAttribute(null=True)
    revoke = BooleanAttribute(null=True)
    principal_role = UnicodeAttribute(null=True)  # OU/organization grants: role/<name> per member
    name = UnicodeAttribute(null=True)  # service enrollment: a friendly name
    notification_id = UnicodeAttribute(null=True)  # service enrollment: vpce-nfn-…
    created_at = UnicodeAttribute(null=True)
    updated_by = UnicodeAttribute(null=True)
    updated_at = UnicodeAttribute(null=True)
    by_consumer = RegistryByConsumer()


class AuditByConsumer(GlobalSecondaryIndex["AuditItem"]):
    class Meta:
        index_name = "by_consumer"
        projection = AllProjection()

    consumer = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)


class AuditByTime(GlobalSecondaryIndex["AuditItem"]):
    """Decisions by time: partition = the UTC day ("2026-12-01"), sorted by `at`, queried newest
    day first, so `audit --limit/--since` reads what it shows, never the whole table."""

    class Meta:
        index_name = "by_time"
        projection = AllProjection()

    day = UnicodeAttribute(hash_key=True)
    at = UnicodeAttribute(range_key=True)


class AuditItem(Model):
    class Meta:
        table_name = "vpce-approver-audit"
        region = "us-east-1"

    subject = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    decision_id = UnicodeAttribute()
    at = UnicodeAttribute()
    action = UnicodeAttribute()  # accept | reject | escalate | none | would-accept | grant-… | …
    code = UnicodeAttribute(null=True)
    reason = UnicodeAttribute(null=True)
    actor = UnicodeAttribute()  # "policy", "slack:U123", "registry:<who>", "sweep"
    trigger = UnicodeAttribute(null=True)  # notification | registry | slack | sweep | cli
    outcome = UnicodeAttribute(null=True)  # done | shadow | failed:<code> | intent
    service_id = UnicodeAttribute(null=True)
    vpc_endpoint_id = UnicodeAttribute(null=True)
    consumer = UnicodeAttribute(null=True)
    region = UnicodeAttribute(null=True)
    old = MapAttribute[str, Any](null=True)
    new = MapAttribute[str, Any](null=True)
    day = UnicodeAttribute(null=True)  # by_time's partition: at[:10]; absent on pre-index records
    by_consumer = AuditByConsumer()
    by_time = AuditByTime()


class EscalationByState(GlobalSecondaryIndex["EscalationItem"]):
    class Meta:
        index_name = "by_state"
        projection = AllProjection()

    state = UnicodeAttribute(hash_key=True)
    created_at = UnicodeAttribute(range_key=True)


class EscalationItem(Model):
    class Meta:
        table_name = "vpce-approver-escalations"
        region = "us-east-1"

    vpc_endpoint_id = UnicodeAttribute(hash_key=True)
    service_id = UnicodeAttribute()
    consumer = UnicodeAttribute()
    region = UnicodeAttribute(null=True)
    code = UnicodeAttribute()
    reason = UnicodeAttribute()
    state = UnicodeAttribute()  # open | settled
    outcome = UnicodeAttribute(null=True)  # approved | rejected | accepted-by-grant | …
    created_at = UnicodeAttribute()
    connection_created_at = UnicodeAttribute(null=True)
    updated_at = UnicodeAttribute(null=True)
    decided_by = UnicodeAttribute(null=True)
    grant_owner = UnicodeAttribute(null=True)
    grant_note = UnicodeAttribute(null=True)
    slack_channel = UnicodeAttribute(null=True)
    slack_ts = UnicodeAttribute(null=True)
    posted = BooleanAttribute(default=False)
    post_attempts = NumberAttribute(default=0)
    last_post_error = UnicodeAttribute(null=True)
    claimed_by = UnicodeAttribute(null=True)  # set atomically by the first approver's click
    version = VersionAttribute()
    by_state = EscalationByState()


ALL_MODELS: tuple[type[Model], ...] = (RegistryItem, AuditItem, EscalationItem)


def bind(
    *, registry: str, audit: str, escalations: str, region: str, host: str | None = None
) -> None:
    """Point the models at this deployment's tables (idempotent)."""
    for model, name in (
        (RegistryItem, registry),
        (AuditItem, audit),
        (EscalationItem, escalations),
    ):
        meta = model.Meta
        changed = (
            getattr(meta, "table_name", None) != name
            or getattr(meta, "region", None) != region
            or getattr(meta, "host", None) != host
        )
        if changed:
            meta.table_name = name
            meta.region = region
            setattr(meta, "host", host)  # noqa: B010 - not declared on every Meta
            model._connection = None  # pynamodb caches its connection per model class


def bound_like[M: Model](model: type[M], source: type[Model] | None = None) -> type[M]:
    """`model` pointed at whatever table `source` (default: EscalationItem) is bound to now, for
    the bookkeeping items kept beside the escalations (sweep cursor and lease, limit leases,
    principal ownership). Rebinding drops the model's cached connection."""
    src, dst = (source or EscalationItem).Meta, model.Meta
    for name in ("table_name", "region", "host"):
        value = getattr(src, name, None)
        if getattr(dst, name, None) != value:
            setattr(dst, name, value)
            model._connection = None
    return model
