"""OrganizationsDirectory against moto's Organizations: where accounts sit, how answers are cached
and what membership changes (join, move out, close, remove) look like."""

from __future__ import annotations

from botocore.awsrequest import AWSResponse

from vpce_approver.model import MemberState

from .orgkit import MANAGEMENT, Clock, Factory, Org

STRANGER = "999999999999"


def test_nested_ous_three_deep_give_the_path_nearest_first(org: Org, make_directory: Factory):
    top = org.ou("workloads")
    mid = org.ou("prod", top)
    leaf = org.ou("payments", mid)
    deep, shallow, at_root = org.account(leaf), org.account(top), org.account()
    directory, _ = make_directory()

    got = directory.memberships([deep, shallow, at_root, MANAGEMENT])

    assert got[deep].state is MemberState.MEMBER
    assert got[deep].organization == org.id
    assert got[deep].path == (leaf, mid, top)
    assert got[deep].describe() == f"{org.id} / {top} / {mid} / {leaf}"
    assert got[deep].level(leaf) == 1
    assert got[deep].level(top) == 3
    assert got[deep].level(org.id) == 4
    assert got[shallow].path == (top,)
    assert got[at_root].path == ()
    assert got[MANAGEMENT].path == ()
    assert directory.members(top) == {deep, shallow}
    assert directory.members(mid) == {deep}
    assert directory.members(leaf) == {deep}
    assert directory.members(org.id) == {deep, shallow, at_root, MANAGEMENT}
    assert directory.members("o-otherorg000") == frozenset()
    assert directory.members("ou-zzzz-nonexist") == frozenset()


def test_a_new_account_in_an_ou_is_found_by_one_lookup_and_joins_on_refresh(
    org: Org, make_directory: Factory
):
    ou = org.ou("workloads")
    directory, calls = make_directory()
    assert directory.refresh().error is None  # the baseline
    assert directory.members(ou) == frozenset()

    new = org.account(ou)  # created after the snapshot: nobody edits anything
    calls.reset()
    got = directory.memberships([new])

    assert got[new].state is MemberState.MEMBER
    assert got[new].path == (ou,)
    # its parent is an OU the snapshot knows: one ListParents, then its state
    assert calls.operations == {"ListParents": 1, "DescribeAccount": 1}
    calls.reset()
    assert directory.memberships([new])[new].path == (ou,)
    assert calls.total == 0  # cached

    change = directory.refresh()
    assert change.joined == (new,)
    assert change.left == ()
    assert change.moved == ()
    assert change.changed
    assert change.epoch == 2
    assert directory.members(ou) == {new}
    assert directory.members(org.id) == {new, MANAGEMENT}


def test_a_lookup_walks_up_through_ous_created_after_the_snapshot(
    org: Org, make_directory: Factory
):
    top = org.ou("workloads")
    directory, calls = make_directory()
    directory.memberships([MANAGEMENT])  # the snapshot: only `top`
    mid = org.ou("dev", top)
    leaf = org.ou("sandbox", mid)
    new = org.account(leaf)
    calls.reset()

    got = directory.memberships([new])[new]

    assert got.state is MemberState.MEMBER
    assert got.path == (leaf, mid, top)
    assert calls.operations == {"ListParents": 3, "DescribeAccount": 1}


def test_moving_out_of_an_ou(org: Org, make_directory: Factory):
    granted, other = org.ou("prod"), org.ou("sandbox")
    account = org.account(granted)
    directory, _ = make_directory()
    directory.refresh()
    assert directory.members(granted) == {account}

    org.move(account, other)
    change = directory.refresh()

    assert change.moved == (account,)
    assert change.joined == change.left == ()
    assert directory.memberships([account])[account].path == (other,)
    assert directory.members(granted) == frozenset()
    assert directory.members(other) == {account}


def test_a_closed_or_removed_account_is_outside(org: Org, make_directory: Factory):
    ou = org.ou("prod")
    closed, removed, stays = org.account(ou), org.account(ou), org.account(ou)
    directory, calls = make_directory()
    directory.refresh()

    org.api.close_account(AccountId=closed)  # SUSPENDED, still in the tree for 90 days
    org.api.remove_account_from_organization(AccountId=removed)
    change = directory.refresh()

    assert set(change.left) == {closed, removed}
    assert change.joined == ()
    assert directory.members(ou) == {stays}
    calls.reset()
    got = directory.memberships([closed, removed, stays])
    assert got[closed].state is MemberState.OUTSIDE
    assert got[closed].organization == org.id
    assert got[closed].level(ou) is None
    assert got[removed].state is MemberState.OUTSIDE
    assert got[stays].state is MemberState.MEMBER
    # the closed account is in the tree (not a stranger); the removed one is looked up once
    assert calls.operations == {"ListParents": 1}


def test_an_external_account_is_outside_after_one_cached_lookup(
    org: Org, make_directory: Factory, clock: Clock
):
    org.account(org.ou("prod"))
    directory, calls = make_directory()
    directory.memberships([MANAGEMENT])
    calls.reset()

    got = directory.memberships([STRANGER])[STRANGER]

    assert got.state is MemberState.OUTSIDE
    assert got.level(org.id) is None
    assert got.scopes() == ()
    assert calls.operations == {"ListParents": 1}  # AccountNotFoundException
    calls.reset()
    for _ in range(5):
        assert directory.memberships([STRANGER])[STRANGER].state is MemberState.OUTSIDE
    assert calls.total == 0

    clock.advance(directory.max_age)  # the bound: the tree is read again, once
    directory.memberships([STRANGER])
    tree = calls.total
    assert calls.operations["ListParents"] == 0  # a tree read just now answers strangers
    calls.reset()
    directory.memberships([STRANGER])
    assert calls.total == 0
    assert tree > 0


def test_many_strangers_at_once_cost_one_tree_read_not_one_lookup_each(
    org: Org, make_directory: Factory
):
    org.account(org.ou("prod"))
    directory, calls = make_directory(lookup_limit=3)
    directory.memberships([MANAGEMENT])
    calls.reset()
    strangers = [f"99999999{i:04d}" for i in range(12)]

    got = directory.memberships(strangers)

    assert {m.state for m in got.values()} == {MemberState.OUTSIDE}
    assert calls.operations["ListParents"] == 0
    assert calls.operations["ListRoots"] == 1  # one tree read instead
    calls.reset()
    assert len(directory.memberships(strangers[:3])) == 3
    assert calls.total == 0


def test_answers_are_used_for_at_most_max_age_seconds(
    org: Org, make_directory: Factory, clock: Clock
):
    first, second = org.ou("prod"), org.ou("dev")
    account = org.account(first)
    directory, calls = make_directory(max_age=300)
    assert directory.memberships([account])[account].path == (first,)

    org.move(account, second)
    clock.advance(299)
    calls.reset()
    assert directory.memberships([account])[account].path == (first,)  # within the bound
    assert directory.members(first) == {account}
    assert calls.total == 0

    clock.advance(1)
    assert directory.memberships([account])[account].path == (second,)
    assert calls.operations["ListRoots"] == 1


def test_max_age_zero_reads_organizations_every_time(org: Org, make_directory: Factory):
    account = org.account(org.ou("prod"))
    directory, calls = make_directory(max_age=0)
    directory.memberships([account])
    directory.memberships([account])
    assert calls.operations["DescribeOrganization"] == 2


def test_an_invalid_account_id_is_unknown_never_placed(org: Org, make_directory: Factory):
    directory, _calls = make_directory()
    got = directory.memberships(["12345", MANAGEMENT])
    assert got["12345"].state is MemberState.UNKNOWN
    assert "12-digit" in (got["12345"].error or "")
    assert got[MANAGEMENT].state is MemberState.MEMBER
    assert directory.memberships([]) == {}


def test_aws_answer_for_an_account_outside_the_organization_is_outside(
    org: Org, make_directory: Factory
):
    """AWS answers ListParents for an account it cannot find with ChildNotFoundException (moto
    with AccountNotFoundException, which the tests above use)."""
    directory, calls = make_directory()
    directory.memberships([MANAGEMENT])

    def not_found(**_: object) -> tuple[AWSResponse, dict[str, object]]:
        error = {"Code": "ChildNotFoundException", "Message": "We can't find an OU or account"}
        return AWSResponse("https://organizations", 400, {}, None), {"Error": error}

    directory.client.meta.events.register("before-call.organizations.ListParents", not_found)
    before = directory.calls
    calls.reset()

    got = directory.memberships([STRANGER])[STRANGER]

    assert got.state is MemberState.OUTSIDE
    assert directory.calls == before + 1  # the one ListParents (answered by the stub)
    assert calls.total == 0  # nothing reached the emulator
    assert directory.memberships([STRANGER])[STRANGER].state is MemberState.OUTSIDE
    assert directory.calls == before + 1  # cached
