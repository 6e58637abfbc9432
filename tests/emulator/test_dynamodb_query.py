"""The emulator's DynamoDB Query reads the queried partition only, with moto's results: every write
path (put, batch, update, transaction, delete) keeps the GSI partitions right."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto.dynamodb.models.table import Table

from vpce_tools.emulator.testing import emulated_aws


@pytest.fixture
def ddb() -> Iterator[Any]:
    with emulated_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName="t",
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[
                {"AttributeName": a, "AttributeType": "S"} for a in ("pk", "sk", "day", "at")
            ],
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": "by_time",
                    "KeySchema": [
                        {"AttributeName": "day", "KeyType": "HASH"},
                        {"AttributeName": "at", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                }
            ],
        )
        yield client


def put(client: Any, pk: str, day: str | None, at: str) -> None:
    item = {"pk": {"S": pk}, "sk": {"S": "x"}, "at": {"S": at}}
    if day is not None:
        item["day"] = {"S": day}
    client.put_item(TableName="t", Item=item)


def by_day(client: Any, day: str, **extra: Any) -> list[str]:
    out: list[str] = []
    kwargs: dict[str, Any] = {
        "TableName": "t",
        "IndexName": "by_time",
        "KeyConditionExpression": "#d = :d",
        "ExpressionAttributeNames": {"#d": "day"},
        "ExpressionAttributeValues": {":d": {"S": day}},
        **extra,
    }
    while True:
        page = client.query(**kwargs)
        out += [i["pk"]["S"] for i in page["Items"]]
        if "LastEvaluatedKey" not in page:
            return out
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def test_gsi_query_follows_every_write_path(ddb: Any) -> None:
    put(ddb, "a", "d1", "1")
    assert by_day(ddb, "d1") == ["a"]  # the first GSI Query builds the partition map
    put(ddb, "b", "d1", "2")
    put(ddb, "c", "d2", "3")
    put(ddb, "n", None, "4")  # no GSI key: not in the index
    ddb.batch_write_item(
        RequestItems={
            "t": [
                {"PutRequest": {"Item": item}}
                for item in (
                    {"pk": {"S": p}, "sk": {"S": "x"}, "day": {"S": "d1"}, "at": {"S": a}}
                    for p, a in (("e", "5"), ("f", "0"))
                )
            ]
        }
    )
    assert by_day(ddb, "d1") == ["f", "a", "b", "e"]  # sorted by the index's range key
    assert by_day(ddb, "d1", ScanIndexForward=False, Limit=1) == ["e", "b", "a", "f"]
    # an update moves an item to another partition (in place, in moto)
    ddb.update_item(
        TableName="t",
        Key={"pk": {"S": "a"}, "sk": {"S": "x"}},
        UpdateExpression="SET #d = :d",
        ExpressionAttributeNames={"#d": "day"},
        ExpressionAttributeValues={":d": {"S": "d2"}},
    )
    ddb.update_item(
        TableName="t",
        Key={"pk": {"S": "n"}, "sk": {"S": "x"}},
        UpdateExpression="SET #d = :d",
        ExpressionAttributeNames={"#d": "day"},
        ExpressionAttributeValues={":d": {"S": "d2"}},
    )
    ddb.transact_write_items(
        TransactItems=[
            {
                "Update": {
                    "TableName": "t",
                    "Key": {"pk": {"S": "b"}, "sk": {"S": "x"}},
                    "UpdateExpression": "REMOVE #d",
                    "ExpressionAttributeNames": {"#d": "day"},
                }
            }
        ]
    )
    ddb.delete_item(TableName="t", Key={"pk": {"S": "e"}, "sk": {"S": "x"}})
    assert by_day(ddb, "d1") == ["f"]
    assert by_day(ddb, "d2") == ["a", "c", "n"]
    assert by_day(ddb, "d3") == []
    # a range condition and a filter are still moto's
    assert by_day(
        ddb,
        "d2",
        KeyConditionExpression="#d = :d AND #a >= :a",
        ExpressionAttributeNames={"#d": "day", "#a": "at"},
        ExpressionAttributeValues={":d": {"S": "d2"}, ":a": {"S": "3"}},
    ) == ["c", "n"]


def test_queries_do_not_read_the_whole_table(ddb: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(30):
        put(ddb, f"p{i}", f"d{i % 3}", str(i))
    seen: list[int] = []
    original = Table.all_items

    def counting(self: Table) -> list[Any]:
        items = original(self)
        seen.append(len(items))
        return items

    monkeypatch.setattr(Table, "all_items", counting)
    assert len(by_day(ddb, "d1")) == 10
    main = ddb.query(
        TableName="t",
        KeyConditionExpression="pk = :p",
        ExpressionAttributeValues={":p": {"S": "p4"}},
    )
    assert [i["pk"]["S"] for i in main["Items"]] == ["p4"]
    assert max(seen, default=0) <= 10  # the queried partition, never the 30 items
    assert len(ddb.scan(TableName="t")["Items"]) == 30  # a Scan still reads everything
