"""The membership epoch: a refresh in one container (the sweep) makes every other container's
cached membership stale at its next confirm(); concurrent refreshers never lose an epoch; the
recorded map stays far from DynamoDB's item limit."""

from __future__ import annotations

from datetime import UTC, datetime

import boto3
import pytest

from vpce_approver import organization_epoch
from vpce_approver.config import Settings
from vpce_approver.model import MemberState
from vpce_approver.organization_epoch import EPOCH_KEY, EpochItem, EpochStore, digest

from .orgkit import MANAGEMENT, Factory, Org

NOW = datetime(2026, 12, 1, 5, 0, tzinfo=UTC)


def _epoch_items(settings: Settings) -> list[str]:
    table = boto3.resource("dynamodb", region_name=settings.region).Table(
        settings.escalations_table
    )
    return sorted(
        str(i["vpc_endpoint_id"])
        for i in table.scan()["Items"]
        if str(i["vpc_endpoint_id"]).startswith(EPOCH_KEY)
    )


def test_another_containers_refresh_makes_this_cache_stale_at_confirm(
    org: Org, make_directory: Factory
):
    granted, other = org.ou("prod"), org.ou("sandbox")
    account = org.account(granted)
    sweep, _ = make_directory()
    decider, calls = make_directory()  # another container: the notification handler's
    assert sweep.refresh().epoch == 1  # the baseline
    assert decider.memberships([account])[account].path == (granted,)
    assert decider.confirm() is True

    org.move(account, other)
    # Within max_age the decider's cache still says `granted`, but nothing recorded it yet.
    assert decider.memberships([account])[account].path == (granted,)
    assert decider.confirm() is True

    change = sweep.refresh()
    assert change.moved == (account,)
    assert change.epoch == 2
    calls.reset()
    assert decider.confirm() is False  # the deployment knows it is stale: cache dropped
    assert calls.total == 0  # one GetItem, no Organizations call
    assert decider.memberships([account])[account].path == (other,)
    assert decider.confirm() is True
    assert decider.members(granted) == frozenset()

    # A container started after the refresh holds the recorded tree: nothing to drop.
    late, _ = make_directory()
    late.memberships([account])
    assert late.confirm() is True


def test_a_cold_container_compares_with_the_recorded_map(
    org: Org, make_directory: Factory, settings: Settings
):
    ou = org.ou("prod")
    leaving, staying = org.account(ou), org.account(ou)
    first, _ = make_directory()
    first.refresh()
    org.api.remove_account_from_organization(AccountId=leaving)
    joining = org.account(ou)

    cold, _ = make_directory()  # never saw the previous tree: reads the recorded chunks
    change = cold.refresh()

    assert change.left == (leaving,)
    assert change.joined == (joining,)
    assert change.moved == ()
    assert change.epoch == 2
    assert staying in cold.members(ou)  # type: ignore[operator]
    # one head and the current chunk set; the previous set was deleted
    assert len(_epoch_items(settings)) == 2


def test_an_unchanged_tree_records_no_new_epoch(org: Org, make_directory: Factory):
    org.account(org.ou("prod"))
    one, _ = make_directory()
    two, _ = make_directory()
    assert one.refresh().epoch == 1
    again = two.refresh()
    assert again.epoch == 1
    assert not again.changed
    assert two.confirm() is True


def test_refresh_without_record_reports_but_writes_nothing(
    org: Org, make_directory: Factory, settings: Settings
):
    ou = org.ou("prod")
    directory, _ = make_directory()
    directory.refresh()
    new = org.account(ou)
    before = _epoch_items(settings)

    change = directory.refresh(record=False)

    assert change.joined == (new,)
    assert change.epoch == 1
    assert _epoch_items(settings) == before
    assert directory.refresh().epoch == 2  # now recorded


def test_two_refreshers_cannot_lose_an_epoch(org: Org, settings: Settings):
    store = EpochStore()
    organization = org.id
    a = {MANAGEMENT: ()}
    b = {MANAGEMENT: (), "111111111111": ("ou-abcd-11111111",)}
    assert store.record(None, organization, a, NOW) == 1
    head = store.head()
    assert head is not None

    # Both read epoch 1; the first to write wins, the second is refused and leaves nothing.
    assert store.record(head, organization, b, NOW) == 2
    assert store.record(head, organization, a, NOW) is None
    recorded = store.head()
    assert recorded is not None
    assert recorded.epoch == 2
    assert recorded.digest == digest(organization, b)
    assert len(_epoch_items(settings)) == 1 + recorded.chunks
    assert store.load(recorded) == (organization, b)
    # Nor can a second "first" record overwrite an existing head.
    assert store.record(None, organization, a, NOW) is None


def test_a_refresher_that_loses_the_race_compares_with_the_winner(
    org: Org, make_directory: Factory, monkeypatch: pytest.MonkeyPatch
):
    ou = org.ou("prod")
    winner, _ = make_directory()
    loser, _ = make_directory()
    winner.refresh()
    new = org.account(ou)
    real_record = EpochStore.record

    def slow_record(self: EpochStore, *args: object, **kwargs: object) -> int | None:
        # The winner records the same tree between the loser's read of the head and its write.
        monkeypatch.setattr(EpochStore, "record", real_record)
        assert winner.refresh().epoch == 2
        return real_record(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(EpochStore, "record", slow_record)
    change = loser.refresh()

    assert change.epoch == 2  # no epoch 3 for the same tree
    assert not change.changed  # the winner recorded `new` joining
    assert new in (loser.members(ou) or ())


def test_ten_thousand_accounts_fit_far_below_the_item_limit(org: Org, settings: Settings):
    ous = [f"ou-abcd-{i:08d}" for i in range(60)]
    paths = {
        f"{100000000000 + i * 7919:012d}": (ous[i % 60], ous[(i // 60) % 60], ous[0])
        for i in range(10_000)
    }
    store = EpochStore()

    epoch = store.record(None, org.id, paths, NOW)

    head = store.head()
    assert epoch == 1
    assert head is not None
    blobs = organization_epoch._encode(org.id, paths)
    assert all(len(blob) <= organization_epoch.CHUNK_BYTES for blob in blobs)
    assert sum(map(len, blobs)) < 200_000
    assert store.load(head) == (org.id, paths)


def test_a_large_map_is_chunked_and_read_back(
    org: Org, settings: Settings, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(organization_epoch, "CHUNK_BYTES", 1000)
    paths = {f"{200000000000 + i * 104729:012d}": ("ou-abcd-00000001",) for i in range(2000)}
    store = EpochStore()
    store.record(None, org.id, paths, NOW)
    head = store.head()
    assert head is not None
    assert head.chunks > 3
    assert store.load(head) == (org.id, paths)
    assert len(_epoch_items(settings)) == 1 + head.chunks


def test_a_malformed_epoch_item_is_stale_until_a_refresh_overwrites_it(
    org: Org, make_directory: Factory
):
    account = org.account(org.ou("prod"))
    directory, _ = make_directory()
    directory.memberships([account])
    EpochItem(EPOCH_KEY, epoch=-3, digest=None).save()  # hand-edited, a bug

    assert directory.confirm() is False  # cannot tell: treated as newer than the cache
    change = directory.refresh()
    assert change.error is None
    assert change.epoch == 1
    assert directory.confirm() is True
    assert directory.memberships([account])[account].state is MemberState.MEMBER


def test_missing_chunks_compare_with_nothing_and_still_record(
    org: Org, make_directory: Factory, settings: Settings
):
    ou = org.ou("prod")
    account = org.account(ou)
    make_directory()[0].refresh()
    head = EpochStore().head()
    assert head is not None
    table = boto3.resource("dynamodb", region_name=settings.region).Table(
        settings.escalations_table
    )
    assert head.chunk_set is not None
    table.delete_item(Key={"vpc_endpoint_id": organization_epoch.chunk_key(head.chunk_set, 0)})
    org.account(ou)

    change = make_directory()[0].refresh()

    assert change.error is None
    assert change.epoch == 2
    assert account in change.joined  # compared with nothing: everyone is new


def test_an_unreadable_epoch_record_drops_the_cache_and_refresh_reports_it(
    org: Org, make_directory: Factory, monkeypatch: pytest.MonkeyPatch
):
    ou = org.ou("prod")
    account = org.account(ou)
    directory, calls = make_directory()
    directory.refresh()
    assert directory.memberships([account])[account].path == (ou,)

    def down(self: EpochStore) -> None:
        raise RuntimeError("DynamoDB unavailable")

    monkeypatch.setattr(EpochStore, "head", down)
    calls.reset()
    assert directory.confirm() is False  # cannot tell whether the cache is stale: dropped
    assert directory.memberships([account])[account].path == (ou,)  # read afresh
    assert calls.operations["ListRoots"] == 1

    change = directory.refresh()
    assert change.error == "recording the membership epoch failed (RuntimeError)"
    assert directory.members(ou) == {account}  # the fresh tree still serves
