"""The membership epoch: the last AWS Organizations tree the deployment recorded (organization.py).

`refresh(record=True)` (the sweep, an Organizations event) reads the whole tree; when it differs
from the recorded one it records a new epoch here. Every decision that an OU/organization grant
decided then `confirm()`s that its cached membership is at least that new (one consistent
GetItem of the head item), so no decision keeps using a membership the deployment already knows
is stale.

Every successful `refresh(record=True)` also stamps the head with `verified_at` (when its tree
read started) and the organization's `root`, whether or not it recorded a new epoch: a record
verified at most MEMBERSHIP_MAX_AGE ago seeds a cold container's cache (organization.py) with
no Organizations call, and that cache expires at verified_at + MEMBERSHIP_MAX_AGE. The stamp
is one UpdateItem of those two attributes, conditional on the head's `chunk_set` being the one
the refresher read: it never touches the epoch, digest or chunks, and it cannot land on an
epoch recorded meanwhile (the refresher then compares with that record, as a losing writer
does). A new record carries its own stamp.

Like the sweep cursor, the limit leases and principal ownership, the record lives in the
escalations table (not the registry, whose stream drives the grant path; not the append-only
audit trail), has no `state` and so never appears in the `by_state` index:

- the head item `#org#epoch`: the epoch number, a digest of {account: OU path} (active members),
  the organization, the member count, when, which chunk set holds the map, and (stamped)
  `verified_at` and `root`;
- the map itself, zlib-compressed JSON, in chunk items `#org#epoch#<set>#<i>` of at most
  CHUNK_BYTES each: 10,000 accounts three OUs deep are ~0.6 MB of JSON but ~0.1 MB compressed,
  and the chunking means no organization size ever approaches the 400 KB item limit. The previous
  map is what `refresh` compares a fresh tree with (joined / left / moved), also in a container
  that never saw the previous tree (a cold sweep); a container whose cached tree has the
  recorded digest compares with its cache and reads no chunk.

Writers write their chunk set first (a new random set ID), then put the head with the condition
that its `chunk_set` is still the one they read (or that there is no head): of two concurrent
refreshers one wins, the other deletes its chunks and starts over against the winner's record,
so no epoch is lost or recorded twice. The winner deletes the previous set's chunks; a reader
that misses one (deleted under it) sees the head has moved and reads again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from pynamodb.attributes import BinaryAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import PutError, UpdateError
from pynamodb.models import Model

from .audit import stamp
from .tables import bound_like
from .validation import ACCOUNT_RE, ORGANIZATION_RE, OU_RE, ROOT_RE

log = logging.getLogger("vpce_approver.organization")

EPOCH_KEY = "#org#epoch"
CHUNK_BYTES = 300_000  # per chunk item (the item limit is 400 KB, key and names included)
FORMAT = 1

Paths = Mapping[str, tuple[str, ...]]


def digest(organization: str, paths: Paths) -> str:
    """A digest of the membership that decisions depend on: the organization and every active
    member's OU path (nearest first)."""
    body = json.dumps(
        [organization, sorted((account, list(path)) for account, path in paths.items())],
        separators=(",", ":"),
    )
    return hashlib.sha256(body.encode()).hexdigest()


def chunk_key(chunk_set: str, index: int) -> str:
    return f"{EPOCH_KEY}#{chunk_set}#{index}"


class EpochItem(Model):
    """The head of the membership record (see the module docstring)."""

    class Meta:
        table_name = "vpce-approver-escalations"
        region = "us-east-1"

    vpc_endpoint_id = UnicodeAttribute(hash_key=True)  # always EPOCH_KEY
    epoch = NumberAttribute(null=True)
    digest = UnicodeAttribute(null=True)
    organization = UnicodeAttribute(null=True)
    members = NumberAttribute(null=True)
    chunk_set = UnicodeAttribute(null=True)
    chunks = NumberAttribute(null=True)
    recorded_at = UnicodeAttribute(null=True)
    verified_at = UnicodeAttribute(null=True)  # when Organizations was last read and matched
    root = UnicodeAttribute(null=True)  # the organization's root (a seeded cache needs it)


class EpochChunkItem(Model):
    """One chunk of a recorded membership map."""

    class Meta:
        table_name = "vpce-approver-escalations"
        region = "us-east-1"

    vpc_endpoint_id = UnicodeAttribute(hash_key=True)  # chunk_key(set, i)
    data = BinaryAttribute(legacy_encoding=False)


@dataclass(frozen=True, slots=True)
class Head:
    """The recorded epoch as read. `valid` is False for a head item that does not read as a
    record (hand-edited, a bug): it is then treated as newer than any cache, and the next
    refresh overwrites it."""

    epoch: int
    digest: str | None
    chunk_set: str | None
    chunks: int
    valid: bool = True
    verified_at: datetime | None = None  # None: never verified, or not readable
    root: str | None = None


def _encode(organization: str, paths: Paths) -> list[bytes]:
    body = json.dumps(
        {
            "format": FORMAT,
            "organization": organization,
            "accounts": {account: list(path) for account, path in sorted(paths.items())},
        },
        separators=(",", ":"),
    ).encode()
    packed = zlib.compress(body, 9)
    return [packed[i : i + CHUNK_BYTES] for i in range(0, len(packed), CHUNK_BYTES)] or [b""]


def _decode(blob: bytes) -> tuple[str, dict[str, tuple[str, ...]]] | None:
    """(organization, {account: path}) from a recorded map, None when it does not read as one."""
    try:
        doc = json.loads(zlib.decompress(blob))
    except (zlib.error, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        return None
    organization, accounts = doc.get("organization"), doc.get("accounts")
    if not isinstance(organization, str) or not ORGANIZATION_RE.fullmatch(organization):
        return None
    if not isinstance(accounts, dict):
        return None
    out: dict[str, tuple[str, ...]] = {}
    for account, path in accounts.items():
        if not ACCOUNT_RE.fullmatch(account) or not isinstance(path, list):
            return None
        if not all(isinstance(ou, str) and OU_RE.fullmatch(ou) for ou in path):
            return None
        out[account] = tuple(path)
    return organization, out


def _instant(value: object) -> datetime | None:
    """A recorded timestamp (audit.stamp), None when it does not read as one."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


class EpochStore:
    """Read and write the membership record, bound to whatever table EscalationItem is bound
    to (tables.bind). DynamoDB errors propagate: the directory decides what they mean.

    One store per container (organization.directory()): it starts with its own DynamoDB
    client, as a new Lambda container does, rather than one pynamodb cached on the model class
    for an earlier container of the same process (tests, `vpce-approver local`)."""

    def __init__(self) -> None:
        EpochItem._connection = None
        EpochChunkItem._connection = None

    def _head_model(self) -> type[EpochItem]:
        return bound_like(EpochItem)

    def _chunk_model(self) -> type[EpochChunkItem]:
        return bound_like(EpochChunkItem)

    def head(self) -> Head | None:
        """The recorded epoch (one consistent GetItem), None when nothing was recorded yet."""
        model = self._head_model()
        try:
            item = model.get(EPOCH_KEY, consistent_read=True)
        except EpochItem.DoesNotExist:
            return None
        epoch, chunks = item.epoch, item.chunks
        chunk_set, value = item.chunk_set, item.digest
        valid = (
            isinstance(epoch, (int, float))
            and epoch >= 1
            and float(epoch).is_integer()
            and isinstance(value, str)
            and isinstance(chunk_set, str)
            and isinstance(chunks, (int, float))
            and 1 <= chunks <= 1000
        )
        if not valid:
            log.warning("the membership epoch item %s is malformed: treated as stale", EPOCH_KEY)
            number = int(epoch) if isinstance(epoch, (int, float)) and epoch >= 0 else 0
            return Head(number, None, chunk_set if isinstance(chunk_set, str) else None, 0, False)
        return Head(
            int(epoch),
            value,
            chunk_set,
            int(chunks),
            verified_at=_instant(item.verified_at),
            root=item.root if isinstance(item.root, str) and ROOT_RE.fullmatch(item.root) else None,
        )

    def load(
        self, head: Head, *, batched: bool = True
    ) -> tuple[str, dict[str, tuple[str, ...]]] | None:
        """The membership map `head` records, None when it is missing or does not read as one
        (its digest is checked). `batched`: BatchGetItem (the sweep's diff), else one
        consistent GetItem per chunk (a cold container's seed: one chunk up to ~10,000
        accounts, and every function that decides has GetItem on the table, not all have
        BatchGetItem)."""
        if not head.valid or head.chunk_set is None or head.digest is None:
            return None
        model = self._chunk_model()
        keys = [chunk_key(head.chunk_set, i) for i in range(head.chunks)]
        found: dict[str, bytes] = {}
        if batched:
            for start in range(0, len(keys), 100):
                for item in model.batch_get(keys[start : start + 100], consistent_read=True):
                    if isinstance(item.data, bytes):
                        found[str(item.vpc_endpoint_id)] = item.data
        else:
            for key in keys:
                try:
                    data: object = model.get(key, consistent_read=True).data
                except EpochChunkItem.DoesNotExist:
                    return None
                if isinstance(data, bytes):
                    found[key] = data
        if len(found) != len(keys):
            return None
        blobs = [found[k] for k in keys]
        decoded = _decode(b"".join(blobs))
        if decoded is None or digest(*decoded) != head.digest:
            return None
        return decoded

    def record(
        self,
        previous: Head | None,
        organization: str,
        paths: Paths,
        now: datetime,
        *,
        root: str | None = None,
        verified_at: datetime | None = None,
    ) -> int | None:
        """Record the map as the epoch after `previous`; the new epoch, or None when another
        refresher recorded one since `previous` was read (nothing of ours is left behind).
        `verified_at`: when the tree was read (its start), `root`: the organization's root."""
        chunk_set = uuid.uuid4().hex
        blobs = _encode(organization, paths)
        chunk_model, head_model = self._chunk_model(), self._head_model()
        with chunk_model.batch_write() as batch:
            for index, blob in enumerate(blobs):
                batch.save(chunk_model(chunk_key(chunk_set, index), data=blob))
        epoch = (previous.epoch if previous is not None else 0) + 1
        condition = (
            head_model.vpc_endpoint_id.does_not_exist()
            if previous is None
            else head_model.chunk_set == previous.chunk_set
            if previous.chunk_set is not None
            else head_model.chunk_set.does_not_exist()
        )
        try:
            head_model(
                EPOCH_KEY,
                epoch=epoch,
                digest=digest(organization, paths),
                organization=organization,
                members=len(paths),
                chunk_set=chunk_set,
                chunks=len(blobs),
                recorded_at=stamp(now),
                verified_at=stamp(verified_at) if verified_at is not None else None,
                root=root,
            ).save(condition=condition)
        except PutError as exc:
            self._delete(chunk_set, len(blobs))
            if getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException":
                return None
            raise
        if previous is not None and previous.chunk_set is not None:
            self._delete(previous.chunk_set, max(previous.chunks, 1))
        return epoch

    def verify(self, head: Head, verified_at: datetime, root: str) -> bool:
        """Stamp the recorded epoch `head` as verified against Organizations at `verified_at`
        (a tree read that started then found the recorded digest): one UpdateItem of
        `verified_at` and `root` only, on the condition that the head still names `head`'s
        chunk set, so it cannot overwrite or lose an epoch recorded meanwhile (False then: the
        caller compares with the new record). Epoch, digest and chunks are left alone."""
        if head.chunk_set is None:
            return False
        model = self._head_model()
        try:
            model(EPOCH_KEY).update(
                actions=[model.verified_at.set(stamp(verified_at)), model.root.set(root)],
                condition=model.chunk_set == head.chunk_set,
            )
        except UpdateError as exc:
            if getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def _delete(self, chunk_set: str, chunks: int) -> None:
        """Best effort: an orphaned chunk is small and never read."""
        model = self._chunk_model()
        try:
            with model.batch_write() as batch:
                for index in range(chunks):
                    batch.delete(model(chunk_key(chunk_set, index), data=b""))
        except Exception:  # cleanup only; the record itself is consistent
            log.warning("could not delete membership chunks of set %s", chunk_set)
