"""P7 in small (issue 15, "Performance"): a burst of Connects from accounts spread over nested OUs
under one OU grant reads AWS Organizations once per container, in calls bounded by the OUs, and
not at all from a warm cache; every connection is accepted in a few Accept calls. (Counts only:
the speed goals are `make bench`'s.)"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from vpce_tools.bench.counting import COUNTER
from vpce_tools.bench.org_p7 import Burst, OrgRun, Tree, met, run_p7

PER_ACCOUNT = {"ListParents", "DescribeAccount"}  # what a lookup per account would call


@pytest.fixture
def counted() -> Iterator[None]:
    COUNTER.install()  # before the scenario's botocore sessions exist
    yield
    COUNTER.uninstall()


def test_an_ou_grant_burst_reads_the_organization_per_ou_once_and_never_when_warm(
    counted: None,
) -> None:
    run = run_p7(ous=4, accounts=20, concurrency=1)
    tree = run.tree
    cold, warm = run.bursts

    # 4 OUs three levels deep under the root, 5 accounts in each, all under the granted top OU.
    assert len(tree.ous) == 4
    assert tree.children == {tree.root: 1, tree.top: 1, tree.ous[1]: 2}
    assert len(tree.members) == 20
    assert all(len(tree.accounts[ou]) == 5 for ou in tree.ous)

    # Cold: one read of the tree by the one container, per OU, no lookup per account.
    assert cold.cold_reads == 1
    assert 0 < cold.org_total <= tree.read_bound() < len(tree.members)
    assert cold.org_total == cold.cold_calls  # botocore's count and the directory's agree
    assert not PER_ACCOUNT & set(cold.org_calls)
    assert cold.org_calls["ListAccountsForParent"] == len(tree.ous) + 1  # root + each OU
    # Warm: the same container answers every membership from its cache.
    assert warm.org_calls == {}
    assert warm.cold_reads == warm.warm_calls == 0

    for burst in run.bursts:
        assert burst.not_available == 0
        assert burst.until_all is not None
        assert 1 <= burst.accept_calls <= 10
    assert run.lost == 0
    assert met(run)


def _run(**burst: object) -> OrgRun:
    tree = Tree("o-abcdefghij", "r-ab12", "ou-ab12-top00000", ("ou-ab12-top00000",), 1, {}, {}, 0)
    good = Burst(
        org_calls={"ListRoots": 1},
        cold_reads=1,
        cold_calls=1,
        warm_calls=0,
        accept_calls=3,
        until_all=1.0,
        not_available=0,
        issued=0.1,
        settled=1.0,
    )
    return OrgRun(tree, [good, replace(good, **burst)], lost=0, containers=1, invocations=2)


def test_p7_is_missed_by_a_warm_call_too_many_reads_or_accepts_or_a_lost_connection() -> None:
    assert _run(cold_reads=0, cold_calls=0, org_calls={}).bursts[1].org_total == 0
    assert met(_run(cold_reads=0, cold_calls=0, org_calls={}))
    assert not met(_run(cold_reads=0, cold_calls=0, warm_calls=1))  # a warm cache called
    assert not met(_run(org_calls={"ListRoots": 1, "ListParents": 20}))  # past one tree read
    assert not met(_run(accept_calls=11))
    assert not met(_run(not_available=1))
    assert not met(_run(until_all=None))
    assert not met(replace(_run(), lost=1))


def test_one_tree_read_is_bounded_by_the_ous_not_the_accounts() -> None:
    root, ous = "r-ab12", ("ou-ab12-a0000000", "ou-ab12-b0000000")
    children = {root: 1, ous[0]: 1}

    def tree(per_ou: int) -> Tree:
        accounts = {root: ("111111111111",)} | dict.fromkeys(ous, ("0" * 12,) * per_ou)
        return Tree("o-abcdefghij", root, ous[0], ous, 2, children, accounts, 0)

    # DescribeOrganization + ListRoots + 3 parents x (child OUs page + accounts page)
    assert tree(1).read_bound() == tree(20).read_bound() == 2 + 3 * 2
    assert tree(21).read_bound() == 2 + 3 * 2 + 2  # one more page of 20 in each OU
