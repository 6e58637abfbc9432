"""The registry of grants (and managed-service enrollments), on top of tables.RegistryItem."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pynamodb.exceptions import AttributeDeserializationError
from pynamodb.pagination import ResultIterator

from . import validation as v
from .model import WILDCARD_SERVICE, Grant, GrantStatus
from .tables import SERVICE_MARKER, RegistryItem

BATCH_GET_MAX = 100


class RegistryError(ValueError):
    """A registry item that must not be used (malformed: never turned into an allow-list entry)."""


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def validate_grant(grant: Grant, now: datetime, *, allow_wildcard_principal: bool = False) -> Grant:
    """Raise ValidationError naming the first bad field; return the grant unchanged when valid."""
    v.service_id(grant.service_id, allow_wildcard=True)
    v.account_id(grant.consumer)
    if not isinstance(grant.status, GrantStatus):
        raise v.ValidationError("status", grant.status, "must be allow, deny or suspended")
    for principal in grant.principals:
        v.principal(principal, allow_wildcard=allow_wildcard_principal)
        account = v.principal_account(principal)
        if account is not None and account != grant.consumer:
            raise v.ValidationError(
                "principals",
                principal,
                f"belongs to account {account}, not consumer {grant.consumer}",
            )
    for region in grant.regions:
        v.region(region, field="regions")
    if grant.expires_at is not None:
        if grant.expires_at.tzinfo is None:
            raise v.ValidationError("expires_at", grant.expires_at, "needs a time zone (use UTC)")
        if grant.expires_at <= now:
            raise v.ValidationError("expires_at", iso(grant.expires_at), "is in the past")
    if grant.max_endpoints is not None and (
        isinstance(grant.max_endpoints, bool) or grant.max_endpoints < 1
    ):
        raise v.ValidationError("max_endpoints", grant.max_endpoints, "must be a positive integer")
    return grant


def grant_from_item(
    item: RegistryItem | Mapping[str, Any], *, allow_wildcard_principal: bool = False
) -> Grant:
    """Build a Grant from a stored item, re-validating every field that reaches AWS.

    Raises RegistryError for an item that is not a usable grant (hand-edited, corrupted...).
    A `*` principal is refused unless the deployment allows it (ALLOW_WILDCARD_PRINCIPAL)."""
    data = item.attribute_values if isinstance(item, RegistryItem) else dict(item)
    try:
        status = GrantStatus(str(data.get("status", "")).lower())
        service = v.service_id(data.get("service_id"), allow_wildcard=True)
        consumer = v.account_id(data.get("consumer"))
        principals = tuple(str(p) for p in data.get("principals") or ())
        for principal in principals:
            v.principal(principal, allow_wildcard=allow_wildcard_principal)
        regions = frozenset(v.region(r, field="regions") for r in data.get("regions") or ())
        expires = data.get("expires_at")
        max_endpoints = data.get("max_endpoints")
        grant = Grant(
            service_id=service,
            consumer=consumer,
            status=status,
            principals=principals,
            expires_at=datetime.fromtimestamp(float(expires), UTC) if expires is not None else None,
            max_endpoints=int(max_endpoints) if max_endpoints is not None else None,
            regions=regions,
            owner=data.get("owner"),
            note=data.get("note"),
            revoke=data.get("revoke"),
            updated_by=data.get("updated_by"),
            updated_at=datetime.fromisoformat(data["updated_at"])
            if data.get("updated_at")
            else None,
        )
    except (ValueError, TypeError, KeyError) as exc:
        key = f"{data.get('service_id')!r}/{data.get('consumer')!r}"
        raise RegistryError(f"registry item {key} is malformed: {exc}") from exc
    for principal in grant.principals:
        if v.principal_account(principal) not in (None, grant.consumer):
            raise RegistryError(
                f"registry item {grant.label}: principal {principal} is another account's"
            )
    return grant


def item_from_grant(grant: Grant, *, by: str, now: datetime) -> RegistryItem:
    return RegistryItem(
        grant.service_id,
        grant.consumer,
        status=grant.status.value,
        principals=list(grant.principals) or None,
        expires_at=int(grant.expires_at.timestamp()) if grant.expires_at else None,
        max_endpoints=grant.max_endpoints,
        regions=sorted(grant.regions) or None,
        owner=grant.owner,
        note=grant.note,
        revoke=grant.revoke,
        updated_by=by,
        updated_at=iso(now),
    )


@dataclass(frozen=True, slots=True)
class Undecodable:
    """A stored item whose attributes do not even have the table schema's types (written around
    the CLI: e.g. max_endpoints stored as a string). pynamodb cannot build it; it is malformed."""

    service_id: str
    consumer: str
    error: str


def decode(raw: Mapping[str, Any]) -> RegistryItem | Undecodable:
    try:
        return RegistryItem.from_raw_data(dict(raw))
    except AttributeDeserializationError as exc:
        keys = {k: str((raw.get(k) or {}).get("S", "")) for k in ("service_id", "consumer")}
        return Undecodable(keys["service_id"], keys["consumer"], str(exc))


def batch_get_items(
    keys: Iterable[tuple[str, str]], *, consistent_read: bool | None = None
) -> list[RegistryItem | Undecodable]:
    """RegistryItem.batch_get, except that one undecodable item cannot fail the whole read (and
    with it every other consumer's decision): it comes back as Undecodable. The plain read is
    tried first; only when an item does not decode is the read repeated item by item."""
    keys = list(dict.fromkeys(keys))
    try:
        return list(RegistryItem.batch_get(keys, consistent_read=consistent_read))
    except AttributeDeserializationError:
        pass
    out: list[RegistryItem | Undecodable] = []
    wanted = [{"service_id": s, "consumer": c} for s, c in keys]
    for start in range(0, len(wanted), BATCH_GET_MAX):
        page_keys: Any = wanted[start : start + BATCH_GET_MAX]
        while page_keys:
            page, page_keys = RegistryItem._batch_get_page(  # type: ignore[no-untyped-call]
                page_keys, consistent_read=consistent_read, attributes_to_get=None
            )
            out.extend(decode(raw) for raw in page)
    return out


def query_items(
    service_id: str, *, consistent_read: bool = False
) -> list[RegistryItem | Undecodable]:
    """RegistryItem.query(service_id), tolerant of undecodable items like batch_get_items."""
    try:
        return list(RegistryItem.query(service_id, consistent_read=consistent_read))
    except AttributeDeserializationError:
        pass
    results: Iterator[RegistryItem | Undecodable] = ResultIterator(
        RegistryItem._get_connection().query,
        (service_id,),
        {"consistent_read": consistent_read},
        map_fn=decode,
    )
    return list(results)


class Registry:
    """Reads and writes of the registry table (the models must be bound: tables.bind)."""

    def __init__(self, *, allow_wildcard_principal: bool = False) -> None:
        self.allow_wildcard_principal = allow_wildcard_principal

    def lookup(
        self, service_ids: Iterable[str], consumers: Iterable[str]
    ) -> tuple[set[str], dict[tuple[str, str], Grant], dict[str, str]]:
        """One BatchGetItem per 100 keys: (managed services among service_ids, grants by key,
        {consumer: error} for malformed items). Keys: (svc, c), (*, c), (svc, #service).

        With more than 100 consumers (a sweep chunk, a burst) the `*` grants come from one Query
        of the `*` partition instead of one key per consumer: that partition holds only the few
        grants meant for every service, so one call replaces len(consumers) / 100 of them."""
        services = sorted(set(service_ids))
        consumers = sorted(set(consumers))
        query_wildcard = len(consumers) > BATCH_GET_MAX
        keys: list[tuple[str, str]] = [(s, SERVICE_MARKER) for s in services]
        key_services = services if query_wildcard else [*services, WILDCARD_SERVICE]
        keys += [(s, c) for s in key_services for c in consumers]
        managed: set[str] = set()
        grants: dict[tuple[str, str], Grant] = {}
        errors: dict[str, str] = {}
        # Strongly consistent: a grant suspended or denied a moment ago must not be read as the
        # allow it was (an eventually consistent read could); it costs two read units, not one.
        items: Iterable[RegistryItem | Undecodable] = batch_get_items(keys, consistent_read=True)
        if query_wildcard:
            wanted = set(consumers)
            wildcard = (
                i
                for i in query_items(WILDCARD_SERVICE, consistent_read=True)
                if i.consumer in wanted
            )
            items = itertools.chain(items, wildcard)
        for item in items:
            if item.consumer == SERVICE_MARKER:  # enrolled, even if the item is damaged
                managed.add(item.service_id)
                continue
            if isinstance(item, Undecodable):
                key = f"{item.service_id!r}/{item.consumer!r}"
                errors[item.consumer] = f"registry item {key} is malformed: {item.error}"
                continue
            try:
                grant = grant_from_item(
                    item, allow_wildcard_principal=self.allow_wildcard_principal
                )
            except RegistryError as exc:
                errors[str(item.consumer)] = str(exc)
                continue
            grants[grant.key] = grant
        return managed, grants, errors

    def get(self, service_id: str, consumer: str) -> Grant | None:
        try:
            item = RegistryItem.get(service_id, consumer)
        except RegistryItem.DoesNotExist:
            return None
        return grant_from_item(item, allow_wildcard_principal=self.allow_wildcard_principal)

    def put(self, grant: Grant, *, by: str, now: datetime) -> Grant:
        validate_grant(grant, now, allow_wildcard_principal=self.allow_wildcard_principal)
        item_from_grant(grant, by=by, now=now).save()
        return grant

    def delete(self, service_id: str, consumer: str) -> bool:
        try:
            item = RegistryItem.get(service_id, consumer)
        except RegistryItem.DoesNotExist:
            return False
        item.delete()
        return True

    def grants_of(self, consumer: str) -> list[Grant]:
        out = []
        for item in RegistryItem.by_consumer.query(consumer):
            try:
                out.append(
                    grant_from_item(item, allow_wildcard_principal=self.allow_wildcard_principal)
                )
            except RegistryError:
                continue
        return out

    def all_items(self) -> Iterable[RegistryItem]:
        return RegistryItem.scan()

    def managed_services(self) -> list[RegistryItem]:
        return sorted(RegistryItem.by_consumer.query(SERVICE_MARKER), key=lambda i: i.service_id)

    def is_managed(self, service_id: str) -> bool:
        try:
            RegistryItem.get(service_id, SERVICE_MARKER)
        except RegistryItem.DoesNotExist:
            return False
        return True

    def enroll(
        self,
        service_id: str,
        *,
        name: str | None,
        notification_id: str | None,
        by: str,
        now: datetime,
    ) -> RegistryItem:
        v.service_id(service_id)
        item = RegistryItem(
            service_id,
            SERVICE_MARKER,
            status="managed",
            name=name,
            notification_id=notification_id,
            created_at=iso(now),
            updated_by=by,
            updated_at=iso(now),
        )
        item.save()
        return item

    def unenroll(self, service_id: str) -> bool:
        """Remove the service's enrollment item (its grants stay). False if it was not enrolled."""
        try:
            item = RegistryItem.get(service_id, SERVICE_MARKER)
        except RegistryItem.DoesNotExist:
            return False
        item.delete()
        return True
