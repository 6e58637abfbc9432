"""Cold containers seed from the sweep's record instead of reading Organizations: the sweep stamps
the record with when it last verified it (`verified_at`), a cold or expired cache reads the head
and the chunks (DynamoDB GetItems only) while that stamp is at most max_age old, and the snapshot
expires at verified_at + max_age (the stated bound, measured from when Organizations was read).
Otherwise, or when the record does not read as one, the tree is read as before.
(Counts, not timings: speed is `make bench`.)"""

from __future__ import annotations

from collections import Counter
from typing import Any

import boto3
import botocore.client
import pytest

from vpce_approver import organization_epoch
from vpce_approver.config import Settings
from vpce_approver.model import MemberState
from vpce_approver.organization_epoch import EPOCH_KEY, EpochStore, chunk_key

from .orgkit import MANAGEMENT, Clock, Factory, Org
from .test_org_calls import _tree

MAX_AGE = 300


class DynamoCalls:
    """DynamoDB operations made on the epoch record (head and chunk items), by every client."""

    def __init__(self) -> None:
        self.operations: Counter[str] = Counter()

    @property
    def total(self) -> int:
        return sum(self.operations.values())

    def reset(self) -> None:
        self.operations.clear()


@pytest.fixture
def dynamo(monkeypatch: pytest.MonkeyPatch) -> DynamoCalls:
    seen = DynamoCalls()
    real = botocore.client.BaseClient._make_api_call

    def spy(self: Any, operation: str, params: dict[str, Any]) -> Any:
        if self.meta.service_model.service_name == "dynamodb" and EPOCH_KEY in repr(params):
            kind = "head" if repr(params).count(f"'{EPOCH_KEY}'") else "chunk"
            seen.operations[f"{operation}:{kind}"] += 1
        return real(self, operation, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", spy)
    return seen


def _table(settings: Settings) -> Any:
    return boto3.resource("dynamodb", region_name=settings.region).Table(settings.escalations_table)


def test_a_cold_container_after_a_sweep_makes_no_organizations_call(
    org: Org, make_directory: Factory, dynamo: DynamoCalls
):
    ous, accounts = _tree(org)
    everyone = [a for group in accounts.values() for a in group]
    sweep, sweep_calls = make_directory()
    assert sweep.refresh().error is None
    assert sweep_calls.total == 64  # the sweep reads the tree (test_org_calls.py)
    dynamo.reset()

    cold, calls = make_directory()  # a new notification / stream / Slack-worker container
    got = cold.memberships(everyone)

    assert calls.total == 0
    assert cold.calls == 0
    # One consistent GetItem of the head, one per chunk (one: 500 accounts are ~10 KB): no
    # BatchGetItem, which the Slack worker has no permission for.
    assert dynamo.operations == {"GetItem:head": 1, "GetItem:chunk": 1}
    assert all(m.state is MemberState.MEMBER for m in got.values())
    leaf = ous[-1]
    assert got[accounts[leaf][0]].path == (leaf, ous[11], ous[3])
    assert cold.members(leaf) == set(accounts[leaf])
    assert len(cold.members(org.id) or ()) == 501
    assert cold.confirm() is True  # the snapshot's epoch is the head's
    assert calls.total == 0


def test_an_unchanged_sweep_stamps_verified_at_and_keeps_the_epoch(
    org: Org, make_directory: Factory, clock: Clock
):
    org.account(org.ou("prod"))
    sweep, _ = make_directory()
    assert sweep.refresh().epoch == 1
    first = EpochStore().head()
    assert first is not None
    assert first.verified_at == clock.wall()
    assert first.root == org.root

    clock.advance(250)
    change = sweep.refresh()

    again = EpochStore().head()
    assert again is not None
    assert change.epoch == 1
    assert not change.changed
    assert (again.epoch, again.digest, again.chunk_set) == (1, first.digest, first.chunk_set)
    assert again.verified_at == clock.wall()  # verified again, nothing recorded


def test_refresh_without_record_stamps_nothing(org: Org, make_directory: Factory, clock: Clock):
    org.account(org.ou("prod"))
    sweep, _ = make_directory()
    sweep.refresh()
    verified = clock.wall()
    clock.advance(100)
    sweep.refresh(record=False)
    head = EpochStore().head()
    assert head is not None
    assert head.verified_at == verified


def test_the_bound_is_measured_from_verified_at_not_from_the_seed(
    org: Org, make_directory: Factory, clock: Clock
):
    ou = org.ou("prod")
    account = org.account(ou)
    sweep, _ = make_directory()
    sweep.refresh()  # verified at t0

    clock.advance(200)
    cold, calls = make_directory()
    assert cold.memberships([account])[account].path == (ou,)
    assert calls.total == 0  # seeded: the record is 200 s old

    clock.advance(MAX_AGE - 200 - 1)  # t0 + 299: still inside the bound
    assert cold.memberships([account])[account].path == (ou,)
    assert calls.total == 0

    clock.advance(2)  # t0 + 301: the answer would be older than max_age
    assert cold.memberships([account])[account].path == (ou,)
    assert calls.operations["ListRoots"] == 1  # read from Organizations, not reseeded


def test_a_record_older_than_max_age_falls_back_to_a_tree_read(
    org: Org, make_directory: Factory, clock: Clock, dynamo: DynamoCalls
):
    ou = org.ou("prod")
    account = org.account(ou)
    make_directory()[0].refresh()

    clock.advance(MAX_AGE + 1)
    dynamo.reset()
    cold, calls = make_directory()
    assert cold.memberships([account])[account].path == (ou,)

    assert calls.operations["DescribeOrganization"] == 1
    assert calls.operations["ListAccountsForParent"] == 2  # root + prod
    assert dynamo.operations == {"GetItem:head": 1}  # no chunk read, no second head read
    assert cold.confirm() is True


def test_a_sweep_keeps_cold_containers_seeded(org: Org, make_directory: Factory, clock: Clock):
    ou = org.ou("prod")
    account = org.account(ou)
    sweep, _ = make_directory()
    sweep.refresh()
    clock.advance(MAX_AGE + 1)
    sweep.refresh()  # nothing changed: only the stamp

    cold, calls = make_directory()
    assert cold.memberships([account])[account].path == (ou,)
    assert calls.total == 0
    # The seeded cache expires at the new stamp + max_age, and then reseeds from a newer one.
    clock.advance(MAX_AGE - 10)
    sweep.refresh()
    clock.advance(11)
    assert cold.memberships([account])[account].path == (ou,)
    assert calls.total == 0


def test_an_account_moved_and_recorded_is_seen_by_the_next_cold_container(
    org: Org, make_directory: Factory, clock: Clock
):
    granted, other = org.ou("prod"), org.ou("sandbox")
    account = org.account(granted)
    sweep, _ = make_directory()
    sweep.refresh()
    warm, _ = make_directory()
    assert warm.memberships([account])[account].path == (granted,)

    clock.advance(30)
    org.move(account, other)
    change = sweep.refresh()
    assert change.moved == (account,)
    assert change.epoch == 2

    cold, calls = make_directory()
    assert cold.memberships([account])[account].path == (other,)
    assert calls.total == 0
    assert cold.members(granted) == frozenset()
    assert cold.confirm() is True
    assert warm.confirm() is False  # unchanged: the warm cache is known to be stale


def test_a_stranger_of_a_seeded_snapshot_is_looked_up_not_outside(
    org: Org, make_directory: Factory
):
    ou = org.ou("prod")
    org.account(ou)
    make_directory()[0].refresh()
    new = org.account(ou)  # created since the record: not in it
    removed = org.account(ou)
    org.api.remove_account_from_organization(AccountId=removed)
    partner = "999999999999"

    cold, calls = make_directory()
    got = cold.memberships([new, partner, removed])

    assert got[new].state is MemberState.MEMBER
    assert got[new].path == (ou,)
    assert got[partner].state is MemberState.OUTSIDE
    assert got[removed].state is MemberState.OUTSIDE
    assert calls.operations["ListRoots"] == 0  # no tree read: bounded single lookups
    assert calls.operations["ListParents"] == 3
    assert calls.operations["DescribeAccount"] == 1


@pytest.mark.parametrize(
    "damage",
    ["corrupt chunk", "missing chunk", "digest mismatch", "verified in the future", "no root"],
)
def test_a_malformed_record_is_never_trusted(
    org: Org, make_directory: Factory, settings: Settings, damage: str
):
    ou, other = org.ou("prod"), org.ou("sandbox")
    account = org.account(ou)
    make_directory()[0].refresh()
    head = EpochStore().head()
    assert head is not None
    assert head.chunk_set is not None
    table = _table(settings)
    chunk = {"vpc_endpoint_id": chunk_key(head.chunk_set, 0)}
    if damage == "corrupt chunk":
        table.put_item(Item={**chunk, "data": b"not zlib"})
    elif damage == "missing chunk":
        table.delete_item(Key=chunk)
    elif damage == "digest mismatch":
        # A well-formed map that widens access (the account in `other`), but not the digest's.
        forged = organization_epoch._encode(org.id, {account: (other,), MANAGEMENT: ()})
        table.put_item(Item={**chunk, "data": forged[0]})
    elif damage == "verified in the future":
        table.update_item(
            Key={"vpc_endpoint_id": EPOCH_KEY},
            UpdateExpression="SET verified_at = :v",
            ExpressionAttributeValues={":v": "2999-01-01T00:00:00.000Z"},
        )
    else:
        table.update_item(Key={"vpc_endpoint_id": EPOCH_KEY}, UpdateExpression="REMOVE root")

    cold, calls = make_directory()
    got = cold.memberships([account])[account]

    assert got.path == (ou,)  # read from Organizations
    assert calls.operations["ListRoots"] == 1
    assert cold.confirm() is True


def test_an_inconsistent_tree_in_a_record_is_never_trusted(
    org: Org, make_directory: Factory, settings: Settings
):
    ou = org.ou("prod")
    account = org.account(ou)
    make_directory()[0].refresh()
    # A record whose digest matches but whose paths do not form a tree (an OU under two parents).
    a, b = "ou-abcd-11111111", "ou-abcd-22222222"
    paths = {account: (a, b), "222222222222": (a,), MANAGEMENT: ()}
    store = EpochStore()
    head = store.head()
    assert store.record(head, org.id, paths, Clock.EPOCH, root=org.root, verified_at=None) == 2
    recorded = store.head()
    assert recorded is not None
    assert store.verify(recorded, Clock().wall(), org.root) is True

    cold, calls = make_directory()
    assert cold.memberships([account])[account].path == (ou,)
    assert calls.operations["ListRoots"] == 1


def test_a_stamp_never_lands_on_an_epoch_recorded_meanwhile(org: Org, settings: Settings):
    store = EpochStore()
    a = {MANAGEMENT: ()}
    b = {MANAGEMENT: (), "111111111111": ("ou-abcd-11111111",)}
    assert store.record(None, org.id, a, Clock.EPOCH, root=org.root) == 1
    stale = store.head()
    assert stale is not None
    assert stale.verified_at is None
    assert store.record(stale, org.id, b, Clock.EPOCH, root=org.root) == 2

    assert store.verify(stale, Clock().wall(), org.root) is False

    head = store.head()
    assert head is not None
    assert head.epoch == 2
    assert head.verified_at is None  # epoch 2's record was not stamped as verified by a's read
    assert store.load(head) == (org.id, b)


def test_concurrent_refresh_and_stamp_lose_no_epoch(
    org: Org, make_directory: Factory, clock: Clock, monkeypatch: pytest.MonkeyPatch
):
    ou, other = org.ou("prod"), org.ou("sandbox")
    account = org.account(ou)
    stamper, _ = make_directory()
    recorder, _ = make_directory()
    assert stamper.refresh().epoch == 1
    real_verify = EpochStore.verify
    stamped: list[bool] = []

    def racing_verify(self: EpochStore, *args: Any, **kwargs: Any) -> bool:
        # Between the stamper's head read and its stamp, the tree changes and another
        # container records epoch 2.
        monkeypatch.setattr(EpochStore, "verify", real_verify)
        org.move(account, other)
        assert recorder.refresh().epoch == 2
        stamped.append(real_verify(self, *args, **kwargs))
        return stamped[-1]

    monkeypatch.setattr(EpochStore, "verify", racing_verify)
    clock.advance(10)
    change = stamper.refresh()  # read the tree before the move: the recorded epoch 1's

    assert stamped == [False]  # the stamp did not land on epoch 2
    # It compared with the winner's record and recorded its own (older) read after it: epochs
    # 1, 2, 3, none lost or overwritten; the next sweep records the move again.
    assert change.error is None
    assert change.epoch == 3
    assert change.moved == (account,)
    head = EpochStore().head()
    assert head is not None
    assert head.epoch == 3
    assert recorder.confirm() is False  # epoch 2's readers see the newer record
    assert recorder.refresh().epoch == 4
    cold, calls = make_directory()
    assert cold.memberships([account])[account].path == (other,)
    assert calls.total == 0


def test_a_failed_stamp_is_no_error_and_cold_containers_read_organizations(
    org: Org, make_directory: Factory, clock: Clock, monkeypatch: pytest.MonkeyPatch
):
    ou = org.ou("prod")
    account = org.account(ou)
    sweep, _ = make_directory()
    sweep.refresh()
    clock.advance(MAX_AGE + 1)

    def denied(self: EpochStore, *args: Any) -> bool:
        raise RuntimeError("AccessDenied on UpdateItem")

    monkeypatch.setattr(EpochStore, "verify", denied)
    change = sweep.refresh()

    assert change.error is None  # the record is right; only its stamp is old
    assert change.epoch == 1
    cold, calls = make_directory()
    assert cold.memberships([account])[account].path == (ou,)
    assert calls.operations["ListRoots"] == 1  # the old stamp is not trusted


def test_a_chunked_record_seeds_with_one_get_item_per_chunk(
    org: Org, make_directory: Factory, dynamo: DynamoCalls, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(organization_epoch, "CHUNK_BYTES", 200)
    _, accounts = _tree(org)
    everyone = [a for group in accounts.values() for a in group]
    make_directory()[0].refresh()
    head = EpochStore().head()
    assert head is not None
    assert head.chunks > 3
    dynamo.reset()

    cold, calls = make_directory()
    assert all(m.state is MemberState.MEMBER for m in cold.memberships(everyone).values())

    assert calls.total == 0
    assert dynamo.operations == {"GetItem:head": 1, "GetItem:chunk": head.chunks}


def test_with_no_cache_every_cold_read_asks_organizations(
    org: Org, make_directory: Factory, clock: Clock
):
    account = org.account(org.ou("prod"))
    make_directory()[0].refresh()
    # A stamp a second ahead of this clock (skew) would be "0 s old": still never a cache.
    clock.advance(-1)
    cold, calls = make_directory(max_age=0)
    cold.memberships([account])
    assert calls.operations["ListRoots"] == 1
