"""The one tolerant way to turn a stored item into something to decide on (registry.to_entry):
a grant, or a MalformedItem naming the key and the first bad field, whose status (and expiry)
are still read where they are readable, so a malformed deny still reads as a deny."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from vpce_approver.model import Grant, GrantStatus, MalformedItem
from vpce_approver.registry import Undecodable, decode, to_entry

SVC = "vpce-svc-0123456789abcdef0"
ACCT = "111111111111"
ROOT = f"arn:aws:iam::{ACCT}:root"


def raw(**attrs: dict[str, Any]) -> dict[str, Any]:
    return {
        "service_id": {"S": SVC},
        "consumer": {"S": ACCT},
        "status": {"S": "allow"},
        "principals": {"L": [{"S": ROOT}]},
        **attrs,
    }


def test_a_good_item_is_a_grant() -> None:
    entry = to_entry(decode(raw(max_endpoints={"N": "2"})))
    assert isinstance(entry, Grant)
    assert entry.max_endpoints == 2


@pytest.mark.parametrize(
    ("attrs", "field", "status"),
    [
        ({"max_endpoints": {"S": "lots"}}, "max_endpoints", GrantStatus.ALLOW),
        ({"status": {"S": "deny"}, "max_endpoints": {"S": "lots"}}, "max_endpoints",
         GrantStatus.DENY),
        ({"principals": {"S": ROOT}}, "principals", GrantStatus.ALLOW),
        ({"status": {"N": "1"}}, "status", None),
        ({"revoke": {"S": "yes"}}, "revoke", GrantStatus.ALLOW),
        ({"status": {"S": "alow"}}, "status", None),
        ({"regions": {"L": [{"S": "mars-1"}]}}, "regions", GrantStatus.ALLOW),
        ({"max_endpoints": {"N": "0"}}, "max_endpoints", GrantStatus.ALLOW),
        ({"principals": {"L": [{"S": "arn:aws:iam::222222222222:root"}]}}, "principals",
         GrantStatus.ALLOW),
    ],
)  # fmt: skip
def test_a_bad_item_names_its_key_and_field(
    attrs: dict[str, Any], field: str, status: GrantStatus | None
) -> None:
    entry = to_entry(decode(raw(**attrs)))
    assert isinstance(entry, MalformedItem)
    assert (entry.key, entry.field, entry.status) == ((SVC, ACCT), field, status)
    assert entry.message.startswith(f"registry item {SVC}/{ACCT} is malformed: {field}: ")


def test_an_undecodable_deny_reads_as_a_live_deny_until_its_expiry() -> None:
    now = datetime.now(UTC)
    future = str(int(now.timestamp()) + 3600)
    item = decode(raw(status={"S": "deny"}, max_endpoints={"S": "x"}, expires_at={"N": future}))
    assert isinstance(item, Undecodable)
    entry = to_entry(item)
    assert isinstance(entry, MalformedItem)
    assert entry.reads_as_live_deny(now)
    assert not entry.reads_as_live_deny(datetime.fromtimestamp(int(future) + 1, UTC))
