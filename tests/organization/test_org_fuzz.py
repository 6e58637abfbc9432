"""Whatever Organizations answers (well-formed, truncated, wrongly typed, hostile IDs), the
directory never raises and never places an account with an ID that is not one: an answer it
cannot read makes memberships UNKNOWN (fail closed)."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from vpce_approver.model import MemberState
from vpce_approver.organization import OrganizationsDirectory
from vpce_approver.validation import ACCOUNT_RE, ORGANIZATION_RE, OU_RE

ACCOUNTS = ["111111111111", "222222222222", "333333333333"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
garbage = st.sampled_from(["", "../x", "ou-", "o-UPPER", "1234", "r-"]) | st.text(max_size=16)


def mostly(valid: list[str]) -> st.SearchStrategy[Any]:
    """A valid ID nine times in ten, else anything (so deep trees are reached, and broken ones)."""
    return st.integers(0, 9).flatmap(
        lambda n: st.sampled_from(valid) if n else (garbage | json_values)
    )


org_ids = mostly(["o-abcdefghij"])
root_ids = mostly(["r-ab12"])
ou_ids = mostly(["ou-ab12-abcdefgh", "ou-ab12-zzzzzzzz", "ou-ab12-yyyyyyyy"])
account_ids = mostly(ACCOUNTS)
states = mostly(["ACTIVE", "ACTIVE", "SUSPENDED", "PENDING_CLOSURE", "CLOSED"])


def plausible(operation: str) -> st.SearchStrategy[Any]:
    """The right shape, with any value in it."""
    if operation == "describe_organization":
        return st.fixed_dictionaries({"Organization": st.fixed_dictionaries({"Id": org_ids})})
    if operation == "list_roots":
        roots = st.lists(st.fixed_dictionaries({"Id": root_ids}), min_size=1, max_size=2)
        return st.fixed_dictionaries({"Roots": roots})
    if operation == "list_organizational_units_for_parent":
        return st.fixed_dictionaries(
            {"OrganizationalUnits": st.lists(st.fixed_dictionaries({"Id": ou_ids}), max_size=2)}
        )
    if operation == "list_accounts_for_parent":
        account = st.fixed_dictionaries({"Id": account_ids, "State": states})
        return st.fixed_dictionaries({"Accounts": st.lists(account, max_size=3)})
    if operation == "list_parents":
        parent = st.fixed_dictionaries(
            {"Id": ou_ids | root_ids, "Type": st.sampled_from(["ROOT", "ORGANIZATIONAL_UNIT"])}
        )
        return st.fixed_dictionaries({"Parents": st.lists(parent, min_size=1, max_size=2)})
    return st.fixed_dictionaries({"Account": st.fixed_dictionaries({"State": states})})


def answers(operation: str) -> st.SearchStrategy[Any]:
    return st.integers(0, 19).flatmap(lambda n: plausible(operation) if n else json_values)


class FuzzClient:
    """Answers every Organizations operation with drawn data (a tree that ends: the directory's
    own bounds end it too, but a call budget keeps each example small)."""

    def __init__(self, data: st.DataObject) -> None:
        self.data = data
        self.budget = 40

    def __getattr__(self, operation: str) -> Any:
        def call(**_: Any) -> Any:
            self.budget -= 1
            if self.budget < 0:
                return {}
            return self.data.draw(answers(operation))

        return call


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_answer_never_raises_and_never_places_a_bad_id(data: st.DataObject) -> None:
    clock = itertools.count(0, 400)  # every look at the clock: the cache has expired
    directory = OrganizationsDirectory(FuzzClient(data), clock=lambda: float(next(clock)))

    for _ in range(2):
        got = directory.memberships(ACCOUNTS)
        assert set(got) == set(ACCOUNTS)
        for membership in got.values():
            event(f"state: {membership.state.value}")
            if membership.state is MemberState.UNKNOWN:
                assert membership.error
            if membership.state is MemberState.MEMBER:
                assert ORGANIZATION_RE.fullmatch(membership.organization or "")
                assert all(OU_RE.fullmatch(ou) for ou in membership.path)
        members = directory.members("ou-ab12-abcdefgh")
        assert members is None or all(ACCOUNT_RE.fullmatch(a) for a in members)
        change = directory.refresh()
        assert change.error is None or isinstance(change.error, str)
        assert directory.confirm() is True  # no epoch store: nothing recorded to be behind
