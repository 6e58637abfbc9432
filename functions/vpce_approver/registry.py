"""The registry of grants (and managed-service enrollments), on top of tables.RegistryItem."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from pynamodb.exceptions import AttributeDeserializationError, UpdateError
from pynamodb.pagination import ResultIterator

from . import validation as v
from .membership import Directory
from .model import (
    WILDCARD_SERVICE,
    Grant,
    GrantStatus,
    MalformedItem,
    Membership,
    Scope,
    scope_of,
)
from .tables import SERVICE_MARKER, RegistryItem

BATCH_GET_MAX = 100
ORG_KEY_FROM = "o-"  # the smallest OU/organization consumer key ("o-…" < "ou-…")

log = logging.getLogger("vpce_approver.registry")


class RegistryError(ValueError):
    """A registry item that must not be used (malformed: never turned into an allow-list entry).
    `malformed` says which item and which field."""

    def __init__(self, message: str, malformed: MalformedItem | None = None) -> None:
        super().__init__(message)
        self.malformed = malformed


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def validate_grant(grant: Grant, now: datetime, *, allow_wildcard_principal: bool = False) -> Grant:
    """Raise ValidationError naming the first bad field; return the grant unchanged when valid."""
    v.service_id(grant.service_id, allow_wildcard=True)
    v.consumer(grant.consumer)
    if not isinstance(grant.status, GrantStatus):
        raise v.ValidationError("status", grant.status, "must be allow, deny or suspended")
    _check_scope(grant.consumer, grant.principals, grant.principal_role)
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


def _check_scope(consumer: str, principals: tuple[str, ...], role: str | None) -> None:
    """An account grant lists its own principals; an OU/organization grant names at most a role
    (principals are per member account: Grant.principals_for)."""
    if scope_of(consumer) is Scope.ACCOUNT:
        if role is not None:
            raise v.ValidationError(
                "principal_role", role, "is for OU/organization grants (use principals)"
            )
        return
    if principals:
        raise v.ValidationError(
            "principals",
            list(principals),
            "must be empty for an OU/organization grant (each member account's root, or"
            " principal_role, goes on the allow-list)",
        )
    if role is not None:
        v.role_name(role)


def _strings(value: Any, field: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise v.ValidationError(field, value, "must be a list of strings")
    out = tuple(value)
    for entry in out:
        if not isinstance(entry, str):
            raise v.ValidationError(field, entry, "must be a string")
    return out


def _number(value: Any, field: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise v.ValidationError(field, value, "must be a number")
    return float(value)


def _text(value: Any, field: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise v.ValidationError(field, value, "must be a string")
    return value


def _status(value: Any) -> GrantStatus:
    try:
        return GrantStatus(str(value).lower()) if isinstance(value, str) else GrantStatus("")
    except ValueError:
        raise v.ValidationError("status", value, "must be allow, deny or suspended") from None


def _best_effort(data: Mapping[str, Any]) -> tuple[GrantStatus | None, datetime | None]:
    """What a malformed item's status and expiry read as, where they are readable."""
    status = expires = None
    with contextlib.suppress(v.ValidationError):
        status = _status(data.get("status"))
    try:
        stamp = _number(data.get("expires_at"), "expires_at")
        expires = datetime.fromtimestamp(stamp, UTC) if stamp is not None else None
    except (v.ValidationError, ValueError, OverflowError, OSError):
        pass
    return status, expires


def _malformed(data: Mapping[str, Any], field: str, error: str) -> MalformedItem:
    status, expires = _best_effort(data)
    return MalformedItem(
        service_id=str(data.get("service_id")),
        consumer=str(data.get("consumer")),
        field=field,
        error=error,
        status=status,
        expires_at=expires,
    )


def grant_from_item(
    item: RegistryItem | Mapping[str, Any], *, allow_wildcard_principal: bool = False
) -> Grant:
    """Build a Grant from a stored item (or a stream image), re-validating every field that
    reaches AWS and the type of every other one.

    Raises RegistryError (naming the key and the first bad field, with `.malformed`) for an item
    that is not a usable grant (hand-edited, corrupted...). A `*` principal is refused unless the
    deployment allows it (ALLOW_WILDCARD_PRINCIPAL)."""
    data = item.attribute_values if isinstance(item, RegistryItem) else dict(item)
    try:
        service = v.service_id(data.get("service_id"), allow_wildcard=True)
        consumer = v.consumer(data.get("consumer"))
        status = _status(data.get("status"))
        principals = _strings(data.get("principals"), "principals")
        role = _text(data.get("principal_role"), "principal_role")
        _check_scope(consumer, principals, role)
        for principal in principals:
            v.principal(principal, allow_wildcard=allow_wildcard_principal)
            if v.principal_account(principal) not in (None, consumer):
                raise v.ValidationError("principals", principal, "is another account's")
        regions = frozenset(
            v.region(r, field="regions") for r in _strings(data.get("regions"), "regions")
        )
        expires = _number(data.get("expires_at"), "expires_at")
        limit = _number(data.get("max_endpoints"), "max_endpoints")
        if limit is not None and (limit != int(limit) or limit < 1):
            raise v.ValidationError("max_endpoints", limit, "must be a positive integer")
        revoke = data.get("revoke")
        if revoke is not None and not isinstance(revoke, bool):
            raise v.ValidationError("revoke", revoke, "must be true or false")
        expires_at = _when(expires, "expires_at", lambda x: datetime.fromtimestamp(x, UTC))
        updated_at = _text(data.get("updated_at"), "updated_at")
        changed = _when(updated_at or None, "updated_at", datetime.fromisoformat)
        grant = Grant(
            service_id=service,
            consumer=consumer,
            status=status,
            principals=principals,
            expires_at=expires_at,
            max_endpoints=int(limit) if limit is not None else None,
            regions=regions,
            owner=_text(data.get("owner"), "owner"),
            note=_text(data.get("note"), "note"),
            revoke=revoke,
            updated_by=_text(data.get("updated_by"), "updated_by"),
            updated_at=changed,
            principal_role=role,
        )
    except v.ValidationError as exc:
        bad = _malformed(data, exc.field, f"{exc.value!r} {exc.why}")
        raise RegistryError(bad.message, bad) from exc
    return grant


def _when[T](value: T | None, field: str, parse: Callable[[T], datetime]) -> datetime | None:
    try:
        return parse(value) if value is not None else None
    except (ValueError, OverflowError, OSError) as exc:
        raise v.ValidationError(field, value, str(exc)) from None


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
        principal_role=grant.principal_role,
        updated_by=by,
        updated_at=iso(now),
    )


@dataclass(frozen=True, slots=True)
class Undecodable:
    """A stored item whose attributes do not even have the table schema's types (written around
    the CLI: e.g. max_endpoints stored as a string). pynamodb cannot build it; it is malformed.
    `raw` is the item as DynamoDB returned it (for `registry show`)."""

    service_id: str
    consumer: str
    error: str
    field: str = "item"
    raw: Mapping[str, Any] | None = None

    def malformed(self) -> MalformedItem:
        """The item as the policy sees it: its status and expiry are read where they have the
        right type, so an undecodable deny still reads as a deny."""
        raw = self.raw or {}
        plain: dict[str, Any] = {"service_id": self.service_id, "consumer": self.consumer}
        if isinstance(raw.get("status"), Mapping) and "S" in raw["status"]:
            plain["status"] = raw["status"]["S"]
        if isinstance(raw.get("expires_at"), Mapping) and "N" in raw["expires_at"]:
            with contextlib.suppress(ArithmeticError):
                plain["expires_at"] = Decimal(str(raw["expires_at"]["N"]))
        return _malformed(plain, self.field, self.error)


DESERIALIZE_FIELD = re.compile(r"deserialize '(?P<field>[^']+)' attribute from type: (?P<t>\S+)")


def decode(raw: Mapping[str, Any]) -> RegistryItem | Undecodable:
    try:
        return RegistryItem.from_raw_data(dict(raw))
    except (AttributeDeserializationError, TypeError, ValueError, KeyError) as exc:
        keys = {k: str((raw.get(k) or {}).get("S", "")) for k in ("service_id", "consumer")}
        match = DESERIALIZE_FIELD.search(str(exc))
        field, error = "item", str(exc)
        if match:
            field = match["field"]
            kinds = sorted(raw.get(field) or {}) if isinstance(raw.get(field), Mapping) else []
            error = f"stored as DynamoDB type {'/'.join(kinds) or match['t']}, not the table's"
        log.error("registry item %s/%s is malformed: %s: %s", *keys.values(), field, error)
        return Undecodable(keys["service_id"], keys["consumer"], error, field, dict(raw))


# ----------------------------------------------------------------------------- tolerant reads
# Every read of the registry goes through these: one wrongly typed item comes back as Undecodable
# (reported: which key, which field) instead of failing the whole read for everyone.

StoredItem = RegistryItem | Undecodable


def batch_get_items(
    keys: Iterable[tuple[str, str]], *, consistent_read: bool | None = None
) -> list[StoredItem]:
    """RegistryItem.batch_get, except that one undecodable item cannot fail the whole read (and
    with it every other consumer's decision): it comes back as Undecodable. The plain read is
    tried first; only when an item does not decode is the read repeated item by item."""
    keys = list(dict.fromkeys(keys))
    try:
        return list(RegistryItem.batch_get(keys, consistent_read=consistent_read))
    except AttributeDeserializationError:
        pass
    out: list[StoredItem] = []
    wanted = [{"service_id": s, "consumer": c} for s, c in keys]
    for start in range(0, len(wanted), BATCH_GET_MAX):
        page_keys: Any = wanted[start : start + BATCH_GET_MAX]
        while page_keys:
            page, page_keys = RegistryItem._batch_get_page(  # type: ignore[no-untyped-call]
                page_keys, consistent_read=consistent_read, attributes_to_get=None
            )
            out.extend(decode(raw) for raw in page)
    return out


def _tolerant(operation: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[StoredItem]:
    connection = RegistryItem._get_connection()
    results: Iterator[StoredItem] = ResultIterator(
        getattr(connection, operation), args, kwargs, map_fn=decode
    )
    return list(results)


def query_items(service_id: str, *, consistent_read: bool = False) -> list[StoredItem]:
    """RegistryItem.query(service_id), tolerant of undecodable items like batch_get_items."""
    return _tolerant("query", (service_id,), {"consistent_read": consistent_read})


def org_items(service_id: str) -> list[StoredItem]:
    """The OU/organization items of one service partition (or `*`): consumers `o-…` and `ou-…`
    sort after every account ID and after `#service`, so one range Query reads them all."""
    return _tolerant(
        "query",
        (service_id,),
        {"consistent_read": True, "range_key_condition": RegistryItem.consumer >= ORG_KEY_FROM},
    )


def consumer_items(consumer: str) -> list[StoredItem]:
    """RegistryItem.by_consumer.query(consumer): every service's item for one consumer."""
    return _tolerant("query", (consumer,), {"index_name": RegistryItem.by_consumer.Meta.index_name})


def scan_items() -> list[StoredItem]:
    """RegistryItem.scan() (the operator's CLI only: no function scans)."""
    return _tolerant("scan", (), {})


def get_item(service_id: str, consumer: str, *, consistent_read: bool = True) -> StoredItem | None:
    """RegistryItem.get, tolerant: None when there is no such item."""
    connection = RegistryItem._get_connection()
    raw = connection.get_item(service_id, consumer, consistent_read=consistent_read).get("Item")
    return decode(raw) if raw else None


def to_entry(item: StoredItem, *, allow_wildcard_principal: bool = False) -> Grant | MalformedItem:
    """The one way a stored item becomes something to decide on: a Grant, or a MalformedItem
    naming its key and bad field (logged). Never raises for bad data."""
    if isinstance(item, Undecodable):
        return item.malformed()
    try:
        return grant_from_item(item, allow_wildcard_principal=allow_wildcard_principal)
    except RegistryError as exc:
        log.error("%s", exc)
        return exc.malformed or _malformed(item.attribute_values, "item", str(exc))


@dataclass
class Lookup:
    """One registry read for a converge: managed services, grants and malformed items by key,
    and (with OU/organization grants on) where each consumer sits in the organization."""

    managed: set[str] = dataclasses.field(default_factory=set)
    grants: dict[tuple[str, str], Grant] = dataclasses.field(default_factory=dict)
    malformed: dict[tuple[str, str], MalformedItem] = dataclasses.field(default_factory=dict)
    memberships: dict[str, Membership] = dataclasses.field(default_factory=dict)

    @property
    def errors(self) -> dict[str, str]:
        """{consumer: message} for every consumer (account, OU, organization) with a malformed
        item."""
        return {m.consumer: m.message for m in self.malformed.values()}

    def membership(self, consumer: str) -> Membership | None:
        """Where the account sits in the organization; None when the deployment reads none."""
        return self.memberships.get(consumer)

    def _wanted(self, consumer: str) -> Callable[[str], bool]:
        found = self.memberships.get(consumer)
        if found is None:  # no organization read: only the account's own items
            return lambda key: key == consumer
        if not found.known:  # every OU/organization item read may apply: the policy decides
            return lambda key: key == consumer or scope_of(key) is not Scope.ACCOUNT
        scopes = {consumer, *found.scopes()}
        return lambda key: key in scopes

    def entries(self, consumer: str) -> list[Grant | MalformedItem]:
        """What the policy decides on for one consumer: its own items and those of its OUs and
        organization (all OU/organization items read, when its membership is unknown)."""
        wanted = self._wanted(consumer)
        found: list[Grant | MalformedItem] = [g for k, g in self.grants.items() if wanted(k[1])]
        return found + [m for k, m in self.malformed.items() if wanted(k[1])]

    def org_items(self) -> bool:
        """Whether any OU/organization item was read (membership then matters)."""
        return any(scope_of(k[1]) is not Scope.ACCOUNT for k in (*self.grants, *self.malformed))


class Registry:
    """Reads and writes of the registry table (the models must be bound: tables.bind). Every
    read is tolerant: a malformed item is reported (key, field) and skipped or returned as a
    MalformedItem, never a crash for everyone."""

    def __init__(
        self, *, allow_wildcard_principal: bool = False, directory: Directory | None = None
    ) -> None:
        self.allow_wildcard_principal = allow_wildcard_principal
        self.directory = directory  # OU/organization grants: where accounts sit (membership.py)

    def entry(self, item: StoredItem) -> Grant | MalformedItem:
        return to_entry(item, allow_wildcard_principal=self.allow_wildcard_principal)

    def read(self, service_ids: Iterable[str], consumers: Iterable[str]) -> Lookup:
        """One BatchGetItem per 100 keys: managed services among service_ids, grants and
        malformed items by key. Keys: (svc, c), (*, c), (svc, #service), and with a directory
        (OU/organization grants on) (svc, scope) and (*, scope) for every OU on the consumers'
        paths and their organization, in the same call.

        With more than 100 consumers (a sweep chunk, a burst) the `*` grants come from one Query
        of the `*` partition instead of one key per consumer: that partition holds only the few
        grants meant for every service, so one call replaces len(consumers) / 100 of them.

        When an OU/organization item was read, the directory confirms that its memberships are
        not older than the last change the deployment recorded (membership.py); if they are,
        they are read again, and so is the registry. A consumer whose membership is unknown
        gets every OU/organization item of the services (one Query each): the policy then
        escalates rather than guess."""
        services = sorted(set(service_ids))
        consumers = sorted(set(consumers))
        directory = self.directory
        memberships = directory.memberships(consumers) if directory is not None else {}
        found = self._read(services, consumers, memberships)
        if directory is not None and found.org_items() and not directory.confirm():
            log.info("organization membership changed since it was read: reading it again")
            memberships = directory.memberships(consumers)
            found = self._read(services, consumers, memberships)
        return found

    def _read(
        self, services: list[str], consumers: list[str], memberships: Mapping[str, Membership]
    ) -> Lookup:
        scopes = sorted({s for m in memberships.values() for s in m.scopes()})
        unknown = any(not m.known for m in memberships.values())
        query_wildcard = len(consumers) > BATCH_GET_MAX
        keys: list[tuple[str, str]] = [(s, SERVICE_MARKER) for s in services]
        key_services = services if query_wildcard else [*services, WILDCARD_SERVICE]
        keys += [(s, c) for s in key_services for c in consumers]
        keys += [(s, c) for s in [*services, WILDCARD_SERVICE] for c in scopes]
        found = Lookup(memberships=dict(memberships))
        # Strongly consistent: a grant suspended or denied a moment ago must not be read as the
        # allow it was (an eventually consistent read could); it costs two read units, not one.
        items: Iterable[StoredItem] = batch_get_items(keys, consistent_read=True)
        if query_wildcard:
            wanted = set(consumers) | set(scopes)
            wildcard = (
                i
                for i in query_items(WILDCARD_SERVICE, consistent_read=True)
                if i.consumer in wanted
            )
            items = itertools.chain(items, wildcard)
        if unknown:
            items = itertools.chain(items, *(org_items(s) for s in [*services, WILDCARD_SERVICE]))
        for item in items:
            if item.consumer == SERVICE_MARKER:  # enrolled, even if the item is damaged
                found.managed.add(item.service_id)
                continue
            entry = self.entry(item)
            if isinstance(entry, MalformedItem):
                found.malformed[entry.key] = entry
            else:
                found.grants[entry.key] = entry
        return found

    def lookup(
        self, service_ids: Iterable[str], consumers: Iterable[str]
    ) -> tuple[set[str], dict[tuple[str, str], Grant], dict[str, str]]:
        """read() as (managed services, grants by key, {consumer: error} for malformed items)."""
        found = self.read(service_ids, consumers)
        return found.managed, found.grants, found.errors

    def find(self, service_id: str, consumer: str) -> Grant | MalformedItem | None:
        """The item at one key, read consistently: a grant, a malformed item, or None."""
        item = get_item(service_id, consumer)
        return None if item is None else self.entry(item)

    def get(self, service_id: str, consumer: str) -> Grant | None:
        """The grant at one key; raises RegistryError (naming the field) for a malformed item."""
        found = self.find(service_id, consumer)
        if isinstance(found, MalformedItem):
            raise RegistryError(found.message, found)
        return found

    def put(self, grant: Grant, *, by: str, now: datetime) -> Grant:
        validate_grant(grant, now, allow_wildcard_principal=self.allow_wildcard_principal)
        item_from_grant(grant, by=by, now=now).save()
        return grant

    def remove(self, service_id: str, consumer: str, *, by: str | None = None) -> bool:
        """Delete the item at one key, however malformed it is (the documented repair). With
        `by`, who removes it is stamped first, so the stream's REMOVE record (whose old image is
        this item) names them; then only what was stamped is deleted. False if absent."""
        connection = RegistryItem._get_connection()
        if by is None:
            if get_item(service_id, consumer) is None:
                return False
            connection.delete_item(service_id, consumer)
            return True
        stamp = iso(datetime.now(UTC))
        try:
            connection.update_item(
                service_id,
                consumer,
                actions=[RegistryItem.updated_by.set(by), RegistryItem.updated_at.set(stamp)],
                condition=RegistryItem.service_id.exists(),
            )
        except UpdateError as exc:
            if _condition_failed(exc):
                return False
            raise
        connection.delete_item(service_id, consumer, condition=RegistryItem.updated_at == stamp)
        return True

    def delete(self, service_id: str, consumer: str) -> bool:
        return self.remove(service_id, consumer)

    def entries(
        self, *, service: str | None = None, consumer: str | None = None
    ) -> list[Grant | MalformedItem]:
        """Every grant (not enrollments), of one service and/or consumer, malformed ones included
        as MalformedItem. Without a filter this scans (the operator's CLI only)."""
        if consumer is not None:
            items = consumer_items(consumer)
        elif service is not None:
            items = query_items(service, consistent_read=True)
        else:
            items = scan_items()
        out = [
            self.entry(i)
            for i in items
            if i.consumer != SERVICE_MARKER and (service is None or i.service_id == service)
        ]
        return sorted(out, key=lambda e: e.key)

    def grants_of(self, consumer: str) -> list[Grant]:
        return [g for g in self.entries(consumer=consumer) if isinstance(g, Grant)]

    def all_items(self) -> list[StoredItem]:
        return scan_items()

    def managed_services(self) -> list[RegistryItem]:
        """Enrollment items, sorted. A damaged one still counts (reported, keys only)."""
        out = []
        for item in consumer_items(SERVICE_MARKER):
            if isinstance(item, Undecodable):
                item = RegistryItem(item.service_id, SERVICE_MARKER, status="managed")
            out.append(item)
        return sorted(out, key=lambda i: i.service_id)

    def is_managed(self, service_id: str) -> bool:
        return get_item(service_id, SERVICE_MARKER) is not None

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
        return self.remove(service_id, SERVICE_MARKER)


def _condition_failed(exc: Exception) -> bool:
    cause = getattr(exc, "cause_response_code", None)
    return cause == "ConditionalCheckFailedException"
