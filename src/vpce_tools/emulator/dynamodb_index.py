"""DynamoDB Query that reads one partition, as DynamoDB does, instead of the whole table.

moto's ``Table.query`` starts from ``all_items()`` (every item of the table, sorted) and filters
it, so a Query's time grows with the table: ~1 s for one day of a 100,000-record audit trail. This
module keeps, per table, a map from each GSI's partition-key value to its items (built on the
first GSI Query, then maintained on every put, delete and update) and hands moto's own ``query``
only that partition (the table's own partitions are ``Table.items[hash_key]`` already). Everything
else (key conditions, order, Limit, ExclusiveStartKey, filters, projections, errors) is still
moto's code on those candidates, so results are unchanged; moto re-checks the key condition on
every candidate, so a stale entry can never leak into a result. Installed by ``install()``.
"""

from __future__ import annotations

import functools
import threading
from collections import defaultdict
from typing import Any

_KEY = "_vpce_gsi_partitions"
_lock = threading.RLock()
_local = threading.local()
_patched: list[bool] = []

PrimaryKey = tuple[Any, Any]


class _Partitions:
    """Items by GSI partition-key value, for every GSI keyed by a single HASH attribute."""

    def __init__(self, table: Any, items: list[Any]) -> None:
        self.attrs = _gsi_hash_attrs(table)
        self.parts: dict[str, dict[Any, dict[PrimaryKey, Any]]] = {
            name: defaultdict(dict) for name in self.attrs
        }
        self.where: dict[PrimaryKey, dict[str, Any]] = {}
        for item in items:
            self.add(item)

    def add(self, item: Any) -> None:
        key = (item.hash_key, item.range_key)
        self.remove(key)
        placed = {}
        for name, attr in self.attrs.items():
            value = item.attrs.get(attr)
            if value is not None:
                self.parts[name][value][key] = item
                placed[name] = value
        if placed:
            self.where[key] = placed

    def remove(self, key: PrimaryKey) -> None:
        for name, value in self.where.pop(key, {}).items():
            part = self.parts[name].get(value)
            if part is not None:
                part.pop(key, None)
                if not part:
                    del self.parts[name][value]

    def candidates(self, index_name: str, value: Any) -> list[Any]:
        return list(self.parts[index_name].get(value, {}).values())


def _gsi_hash_attrs(table: Any) -> dict[str, str]:
    out = {}
    for index in table.global_indexes or []:
        hashes = [k["AttributeName"] for k in index.schema if k["KeyType"] == "HASH"]
        if len(hashes) == 1:
            out[index.name] = hashes[0]
    return out


def _partitions(table: Any, original_all_items: Any) -> _Partitions:
    """The table's map, built now if missing or if its GSIs changed (UpdateTable)."""
    found: _Partitions | None = table.__dict__.get(_KEY)
    if found is None or found.attrs != _gsi_hash_attrs(table):
        found = _Partitions(table, original_all_items(table))
        table.__dict__[_KEY] = found
    return found


def _candidates(
    table: Any, hash_key: Any, index_name: str | None, conditions: Any, orig: Any
) -> list[Any] | None:
    """The items of the queried partition, or None when moto's full path must answer."""
    if not index_name:
        if hash_key is None:
            return None
        part = table.items.get(hash_key)
        if part is None:
            return []
        return list(part.values()) if table.range_key_attr else [part]
    attr = _gsi_hash_attrs(table).get(index_name)
    if attr is None:
        return None  # an LSI, or a multi-attribute GSI key: moto's own path
    wanted = dict(conditions or []).get(attr, hash_key)
    if wanted is None or len(conditions or []) > 1:
        return None
    with _lock:
        return _partitions(table, orig).candidates(index_name, wanted)


def patch_dynamodb_query() -> None:
    """Patch moto's DynamoDB Table/backend (idempotent)."""
    if _patched:
        return
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table

    all_items = Table.all_items
    query = Table.query
    put_item = Table.put_item
    delete_item = Table.delete_item
    update_item = DynamoDBBackend.update_item

    @functools.wraps(all_items)
    def patched_all_items(self: Any) -> Any:
        if getattr(_local, "table", None) is self:
            return _local.items
        return all_items(self)

    @functools.wraps(query)
    def patched_query(self: Any, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
        conditions = kwargs.get("hash_key_conditions")
        items = _candidates(self, hash_key, index_name, conditions, all_items)
        if items is None:
            return query(self, hash_key, *args, **kwargs)
        _local.table, _local.items = self, items
        try:
            return query(self, hash_key, *args, **kwargs)
        finally:
            _local.table, _local.items = None, None

    @functools.wraps(put_item)
    def patched_put_item(self: Any, *args: Any, **kwargs: Any) -> Any:
        item = put_item(self, *args, **kwargs)
        with _lock:
            found = self.__dict__.get(_KEY)
            if found is not None:
                found.add(item)
        return item

    @functools.wraps(delete_item)
    def patched_delete_item(self: Any, *args: Any, **kwargs: Any) -> Any:
        item = delete_item(self, *args, **kwargs)
        if item is not None:
            with _lock:
                found = self.__dict__.get(_KEY)
                if found is not None:
                    found.remove((item.hash_key, item.range_key))
        return item

    @functools.wraps(update_item)
    def patched_update_item(self: Any, table_name: str, *args: Any, **kwargs: Any) -> Any:
        item = update_item(self, table_name, *args, **kwargs)  # updates the item in place
        table = self.get_table(table_name)
        with _lock:
            found = table.__dict__.get(_KEY)
            if found is not None and item is not None:
                found.add(item)
        return item

    Table.all_items = patched_all_items  # type: ignore[method-assign]
    Table.query = patched_query  # type: ignore[method-assign]
    Table.put_item = patched_put_item  # type: ignore[method-assign]
    Table.delete_item = patched_delete_item  # type: ignore[method-assign]
    DynamoDBBackend.update_item = patched_update_item  # type: ignore[method-assign]
    _patched.append(True)
