"""Registry writes are validated: every bad field is a clear error and nothing is written."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from conftest import CONSUMER, grant
from vpce_approver.model import Grant, GrantStatus
from vpce_approver.registry import Registry, RegistryError, grant_from_item, item_from_grant
from vpce_approver.tables import RegistryItem
from vpce_approver.validation import ValidationError
from vpce_tools.stack import LocalDeployment

SVC = "vpce-svc-0123456789abcdef0"
NOW = datetime(2026, 11, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"consumer": "12345"}, "consumer", "12-digit AWS account ID"),
        ({"service_id": "svc-123"}, "service_id", "vpce-svc-"),
        ({"principals": ("arn:aws:iam::111111111111:role/path/to/role",)}, "principals", "no path"),
        ({"principals": ("not-an-arn",)}, "principals", "IAM principal ARN"),
        ({"principals": ("*",)}, "principals", "every AWS account"),
        ({"principals": ("arn:aws:iam::999999999999:root",)}, "principals", "not consumer"),
        ({"regions": frozenset({"mars-1"})}, "regions", "region name"),
        ({"expires_at": NOW - timedelta(seconds=1)}, "expires_at", "in the past"),
        ({"expires_at": datetime(2027, 1, 1)}, "expires_at", "time zone"),
        ({"max_endpoints": 0}, "max_endpoints", "positive integer"),
    ],
)
def test_bad_fields_are_refused_with_a_clear_error(
    deployment: LocalDeployment, change: dict[str, object], field: str, message: str
) -> None:
    base = {
        "service_id": SVC,
        "consumer": CONSUMER,
        "status": GrantStatus.ALLOW,
        "principals": (f"arn:aws:iam::{CONSUMER}:root",),
    }
    bad = Grant(**{**base, **change})  # type: ignore[arg-type]
    with pytest.raises(ValidationError) as error:
        Registry().put(bad, by="test", now=NOW)
    assert error.value.field == field
    assert message in str(error.value)
    assert list(RegistryItem.scan()) == []


def test_valid_grants_round_trip(deployment: LocalDeployment) -> None:
    registry = Registry()
    original = grant(
        SVC,
        expires_at=NOW + timedelta(days=3),
        max_endpoints=2,
        regions=frozenset({"eu-west-1"}),
        owner="team@example.com",
        note="n",
    )
    registry.put(original, by="alice", now=NOW)
    stored = registry.get(SVC, CONSUMER)
    assert stored is not None
    assert stored.principals == original.principals
    assert stored.expires_at == original.expires_at
    assert (stored.max_endpoints, stored.regions, stored.updated_by) == (
        2,
        original.regions,
        "alice",
    )
    registry.put(grant("*", principals=(f"arn:aws:iam::{CONSUMER}:role/app",)), by="bob", now=NOW)
    assert {g.service_id for g in registry.grants_of(CONSUMER)} == {SVC, "*"}


def test_wildcard_principal_only_when_configured(deployment: LocalDeployment) -> None:
    g = grant(SVC, principals=("*",))
    with pytest.raises(ValidationError):
        Registry().put(g, by="t", now=NOW)
    Registry(allow_wildcard_principal=True).put(g, by="t", now=NOW)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda i: setattr(i, "status", "maybe"),
        lambda i: setattr(i, "principals", ["arn:aws:iam::111111111111:root", "bogus"]),
        lambda i: setattr(i, "regions", ["nowhere"]),
    ],
)
def test_stored_items_are_revalidated_on_read(mutate: object) -> None:
    item = item_from_grant(grant(SVC), by="t", now=NOW)
    mutate(item)  # type: ignore[operator]
    with pytest.raises(RegistryError, match="malformed"):
        grant_from_item(item)
