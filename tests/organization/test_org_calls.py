"""What reading the organization costs in Organizations calls: a tree of 20 OUs three levels deep
with 500 accounts is read in a number of calls bounded by the OUs (plus pages of 20 accounts),
never by the accounts; a warm cache costs nothing. (Counts, not timings: speed is `make bench`.)"""

from __future__ import annotations

import math

from vpce_approver.model import MemberState

from .orgkit import MANAGEMENT, Factory, Org


def _tree(org: Org) -> tuple[list[str], dict[str, list[str]]]:
    """4 top OUs, 8 below them, 8 below those: 20 OUs three levels deep, 25 accounts in each."""
    tops = [org.ou(f"top{i}") for i in range(4)]
    mids = [org.ou(f"mid{i}", tops[i % 4]) for i in range(8)]
    leaves = [org.ou(f"leaf{i}", mids[i]) for i in range(8)]
    ous = tops + mids + leaves
    accounts = {ou: [org.account(ou) for _ in range(25)] for ou in ous}
    return ous, accounts


def test_a_tree_read_is_bounded_by_ous_and_a_warm_cache_costs_nothing(
    org: Org, make_directory: Factory
):
    ous, accounts = _tree(org)
    everyone = [a for group in accounts.values() for a in group]
    assert len(ous) == 20
    assert len(everyone) == 500
    directory, calls = make_directory()

    got = directory.memberships(everyone)

    assert all(m.state is MemberState.MEMBER for m in got.values())
    # DescribeOrganization + ListRoots, then per parent (root + 20 OUs) one page of child OUs
    # and ceil(accounts / 20) pages of accounts (the root holds the management account).
    pages = 1 + sum(math.ceil(len(group) / 20) for group in accounts.values())
    assert calls.operations == {
        "DescribeOrganization": 1,
        "ListRoots": 1,
        "ListOrganizationalUnitsForParent": len(ous) + 1,
        "ListAccountsForParent": pages,
    }
    assert calls.total == 2 + (len(ous) + 1) + pages == 64
    assert calls.total == directory.calls
    assert calls.sends == calls.total  # nothing was retried

    calls.reset()
    for _ in range(3):
        assert len(directory.memberships(everyone)) == 500
    for ou in ous:
        assert directory.members(ou) is not None
    assert len(directory.members(org.id) or ()) == 501
    assert calls.total == 0

    # A leaf's members are its own; a top OU's include the two levels below it.
    leaf = ous[-1]
    assert directory.members(leaf) == set(accounts[leaf])
    top = ous[0]
    below = [ous[4], ous[8], ous[12], ous[16]]  # mids 0 and 4, and their leaves
    assert directory.members(top) == set(accounts[top]).union(*(accounts[o] for o in below))
    assert got[accounts[leaf][0]].path == (leaf, ous[11], ous[3])  # leaf 7 < mid 7 < top 3
    assert MANAGEMENT not in (directory.members(top) or ())
