"""Lambda's DynamoDB Streams event source, in-process: reads the registry table's stream records
(real ones, from the emulator's dynamodbstreams API) and feeds them to the registry stream
handler as Lambda DynamoDB events, the way the event source mapping in template.yaml does:

- batches of up to `batch_size` records in stream order, starting at TRIM_HORIZON (as deployed)
  or LATEST;
- ReportBatchItemFailures: the next invocation starts again at the first failed record;
- a batch whose handler raises is retried whole (Lambda would also bisect it: not emulated);
- after `max_retries` retries the failed records go to `dead` (the OnFailure destination gets
  this metadata, not the records) and the poller moves on.

TTL: moto never expires items. `expire(service_id, consumer)` deletes the item with DeleteItem,
which writes a real REMOVE record, and marks it so that the poller adds the userIdentity AWS puts
on TTL deletions ({"type": "Service", "principalId": "dynamodb.amazonaws.com"}).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.config import Config

from .stack import drain

if TYPE_CHECKING:
    from vpce_approver.converge import Deps

    from .stack import LocalDeployment

TTL_IDENTITY = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
Process = Callable[[dict[str, Any]], Mapping[str, Any]]


def lambda_record(raw: Mapping[str, Any], stream_arn: str) -> dict[str, Any]:
    """A GetRecords record as Lambda delivers it (ApproximateCreationDateTime in epoch seconds,
    eventSourceARN set)."""
    record = {k: v for k, v in raw.items() if k != "dynamodb"}
    dynamodb = dict(raw.get("dynamodb") or {})
    created = dynamodb.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        dynamodb["ApproximateCreationDateTime"] = int(created.timestamp())
    record["dynamodb"] = dynamodb
    record["eventSourceARN"] = stream_arn
    return record


def _key(record: Mapping[str, Any]) -> tuple[str, str]:
    keys = (record.get("dynamodb") or {}).get("Keys") or {}
    return (
        str((keys.get("service_id") or {}).get("S", "")),
        str((keys.get("consumer") or {}).get("S", "")),
    )


@dataclass
class StreamPoller:
    dynamodb: Any
    streams: Any
    table_name: str
    process: Process
    batch_size: int = 100
    max_retries: int = 2
    start: str = "TRIM_HORIZON"
    invocations: int = 0
    received: int = 0
    dead: list[dict[str, Any]] = field(default_factory=list)
    _after: str | None = None  # last sequence number done
    _at: str | None = None  # first sequence number to retry
    _attempts: Counter[str] = field(default_factory=Counter)
    _ttl_keys: set[tuple[str, str]] = field(default_factory=set)
    _ttl_seqs: set[str] = field(default_factory=set)
    _stream_arn: str = ""
    _shard_id: str = ""

    def __post_init__(self) -> None:
        if self.start not in {"TRIM_HORIZON", "LATEST"}:
            raise ValueError(f"start={self.start!r}: expected TRIM_HORIZON or LATEST")
        table = self.dynamodb.describe_table(TableName=self.table_name)["Table"]
        if not table.get("LatestStreamArn"):
            raise ValueError(f"table {self.table_name} has no stream")
        self._stream_arn = str(table["LatestStreamArn"])
        shards = self.streams.describe_stream(StreamArn=self._stream_arn)["StreamDescription"][
            "Shards"
        ]
        self._shard_id = str(shards[0]["ShardId"])
        if self.start == "LATEST":
            while records := self._read():
                self._after = records[-1]["dynamodb"]["SequenceNumber"]

    @property
    def stream_arn(self) -> str:
        return self._stream_arn

    def _read(self) -> list[dict[str, Any]]:
        kwargs: dict[str, Any] = {"StreamArn": self._stream_arn, "ShardId": self._shard_id}
        if self._at is not None:
            kwargs.update(ShardIteratorType="AT_SEQUENCE_NUMBER", SequenceNumber=self._at)
        elif self._after is not None:
            kwargs.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", SequenceNumber=self._after)
        else:
            kwargs["ShardIteratorType"] = "TRIM_HORIZON"
        iterator = self.streams.get_shard_iterator(**kwargs)["ShardIterator"]
        response = self.streams.get_records(ShardIterator=iterator, Limit=self.batch_size)
        return list(response.get("Records", []))

    def _mark_ttl(self, record: dict[str, Any]) -> None:
        """The first REMOVE of a key expire() deleted is the TTL deletion (also on retries)."""
        key, seq = _key(record), str(record["dynamodb"]["SequenceNumber"])
        if record.get("eventName") == "REMOVE" and key in self._ttl_keys:
            self._ttl_keys.discard(key)
            self._ttl_seqs.add(seq)
        if seq in self._ttl_seqs:
            record["userIdentity"] = dict(TTL_IDENTITY)

    def expire(self, service_id: str, consumer: str) -> bool:
        """What DynamoDB's TTL does to an expired item: delete it as the service principal.
        Returns False when there was no such item."""
        response = self.dynamodb.delete_item(
            TableName=self.table_name,
            Key={"service_id": {"S": service_id}, "consumer": {"S": consumer}},
            ReturnValues="ALL_OLD",
        )
        if not response.get("Attributes"):
            return False
        self._ttl_keys.add((service_id, consumer))
        return True

    def poll_once(self) -> int:
        """One invocation (if there are new records). Returns the number of records handed."""
        raw = self._read()
        if not raw:
            return 0
        records = [lambda_record(r, self._stream_arn) for r in raw]
        for record in records:
            self._mark_ttl(record)
        self.invocations += 1
        self.received += len(records)
        sequence = [str(r["dynamodb"]["SequenceNumber"]) for r in records]
        try:
            response = self.process({"Records": records})
            failed = [str(f["itemIdentifier"]) for f in response.get("batchItemFailures", []) or []]
        except Exception:
            failed = list(sequence)
        if not failed:
            self._done(sequence[-1])
            return len(records)
        first = min(failed, key=int)
        self._attempts[first] += 1
        if self._attempts[first] > self.max_retries:
            self.dead.append(
                {
                    "StartSequenceNumber": first,
                    "EndSequenceNumber": sequence[-1],
                    "BatchSize": len(sequence) - sequence.index(first),
                    "StreamArn": self._stream_arn,
                }
            )
            self._done(sequence[-1])
        else:
            self._at = first
        return len(records)

    def _done(self, last: str) -> None:
        self._after, self._at = last, None
        self._attempts.clear()

    def drain(self, max_invocations: int = 100) -> int:
        """Poll until no new record is left (or the bound is hit). Returns records handled."""
        return drain(self.poll_once, max_invocations)


def streams_client(session: Any, region: str, endpoint_url: str | None) -> Any:
    """A dynamodbstreams client. Account-ID-based endpoints are off: botocore would otherwise
    send stream ARNs to <account>.streams-ddb.<region>.amazonaws.com, which moto does not serve
    (AWS serves both)."""
    config = Config(account_id_endpoint_mode="disabled", retries={"total_max_attempts": 1})
    return session.client(
        "dynamodbstreams", region_name=region, endpoint_url=endpoint_url, config=config
    )


def registry_poller(
    deployment: LocalDeployment,
    deps: Deps | None = None,
    *,
    batch_size: int = 100,
    max_retries: int = 2,
    start: str = "TRIM_HORIZON",
) -> StreamPoller:
    """The registry stream of a LocalDeployment -> handlers.registry_stream.process."""
    from vpce_approver.handlers.registry_stream import process

    deps = deps or deployment.deps()
    bound: Deps = deps

    def invoke(event: dict[str, Any]) -> Mapping[str, Any]:
        return process(event, bound)

    return StreamPoller(
        deployment.provider.client("dynamodb"),
        streams_client(
            deployment.provider.session,
            deployment.provider.region,
            deployment.provider.endpoint_url,
        ),
        deployment.settings.registry_table,
        invoke,
        batch_size=batch_size,
        max_retries=max_retries,
        start=start,
    )
