"""Grant files (YAML/CSV) and the pure helpers of registry changes: no AWS needed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from vpce_approver.grants import (
    Change,
    allowing_grant,
    candidate_principals,
    describe_diff,
    plain,
)
from vpce_approver.model import Grant, GrantStatus
from vpce_tools import grantfile

NOW = datetime(2026, 11, 30, tzinfo=UTC)
SVC = "vpce-svc-0123456789abcdef0"
C = "111111111111"


def g(service: str, status: GrantStatus = GrantStatus.ALLOW, **kw: object) -> Grant:
    return Grant(service_id=service, consumer=C, status=status, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("specific", "wildcard", "expected"),
    [
        (None, None, None),
        (g(SVC), None, SVC),
        (None, g("*"), "*"),
        (g(SVC), g("*"), SVC),  # the service's own grant is more specific
        (g(SVC, GrantStatus.SUSPENDED), g("*"), None),  # ... even when suspended
        (g(SVC), g("*", GrantStatus.DENY), None),  # deny wins
        (g(SVC, GrantStatus.DENY), g("*"), None),
        (g(SVC, expires_at=NOW - timedelta(1)), None, None),  # expired
        (g(SVC, GrantStatus.DENY, expires_at=NOW - timedelta(1)), g("*"), None),
    ],
)
def test_allowing_grant_follows_the_policy(
    specific: Grant | None, wildcard: Grant | None, expected: str | None
) -> None:
    grants = {(SVC, C): specific, ("*", C): wildcard}
    found = allowing_grant(SVC, C, grants, NOW)
    assert (found.service_id if found else None) == expected


def test_allowing_grant_without_a_clock_ignores_expiry() -> None:
    grants = {(SVC, C): g(SVC, expires_at=NOW - timedelta(1))}
    assert allowing_grant(SVC, C, grants, None) is not None


def test_candidate_principals_only_the_consumers_well_formed_ones() -> None:
    images = [
        {"principals": [f"arn:aws:iam::{C}:root", "arn:aws:iam::222222222222:root", "junk", "*"]},
        {"principals": f"arn:aws:iam::{C}:role/x"},  # a string, not a list: ignored
        None,
    ]
    assert candidate_principals(C, images, allow_wildcard=False) == {f"arn:aws:iam::{C}:root"}
    assert candidate_principals(C, images, allow_wildcard=True) == {
        f"arn:aws:iam::{C}:root",
        "*",
    }


def test_audit_images_and_diff() -> None:
    old = {"status": "allow", "expires_at": Decimal(1893456000), "principals": ["a"]}
    new = {"status": "suspended", "revoke": True, "principals": ["a"], "updated_by": "x"}
    assert plain(old) == {
        "status": "allow",
        "principals": ["a"],
        "expires_at": "2030-01-01T00:00:00Z",
    }
    assert describe_diff(plain(old), plain(new)) == (
        "status: allow -> suspended; expires_at: 2030-01-01T00:00:00Z -> -; revoke: - -> True"
    )


def test_change_actor() -> None:
    base = {"event_id": "1", "event": "MODIFY", "service_id": SVC, "consumer": C, "at": NOW}
    assert Change(**base, old=None, new={"updated_by": "alice"}).actor == "registry:alice"  # type: ignore[arg-type]
    assert Change(**base, old={"updated_by": "bob"}, new=None).actor == "registry:bob"  # type: ignore[arg-type]
    assert Change(**base, old=None, new=None, by_ttl=True).actor == "ttl"  # type: ignore[arg-type]


def test_csv_round_trip_and_defaults() -> None:
    text = (
        "service_id,consumer,status,principals,expires_at,max_endpoints,regions,owner,note,revoke\n"
        f'{SVC},{C},,,2027-01-31,2,"eu-west-1;us-east-1",team,"a, note",yes\n'
    )
    grants, errors = grantfile.load(text, "csv", now=NOW)
    assert errors == []
    [(line, grant)] = grants
    assert line == 2
    assert grant.status is GrantStatus.ALLOW
    assert grant.principals == (f"arn:aws:iam::{C}:root",)
    assert grant.expires_at == datetime(2027, 1, 31, tzinfo=UTC)
    assert (grant.max_endpoints, grant.regions, grant.note, grant.revoke) == (
        2, frozenset({"eu-west-1", "us-east-1"}), "a, note", True,
    )  # fmt: skip
    again, _ = grantfile.load(grantfile.dump([grant], "csv"), "csv", now=NOW)
    assert grantfile.same_grant(again[0][1], grant)
    again, _ = grantfile.load(grantfile.dump([grant], "yaml"), "yaml", now=NOW)
    assert grantfile.same_grant(again[0][1], grant)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("grants: [", "not valid YAML"),
        ("grants: 3", "expected a list"),
        ("a: 1\nb: 2", "one key, grants"),
    ],
)
def test_unreadable_yaml_is_a_file_error(text: str, message: str) -> None:
    with pytest.raises(grantfile.GrantFileError, match=message):
        grantfile.load(text, "yaml", now=NOW)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"consumer": C}, "service_id: None is required"),
        ({"service_id": SVC}, "consumer: None is required"),
        ({"service_id": SVC, "consumer": C, "status": "maybe"}, "must be allow, deny"),
        ({"service_id": SVC, "consumer": C, "max_endpoints": "two"}, "positive integer"),
        ({"service_id": SVC, "consumer": C, "revoke": "perhaps"}, "not true or false"),
        ({"service_id": SVC, "consumer": C, "expires_at": "2027-01-31T00:00"}, "time zone"),
        ({"service_id": SVC, "consumer": C, "note": ["a", "b"]}, "single value"),
    ],
)
def test_bad_rows_name_the_field(row: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        grantfile.grant_from_row(row, now=NOW)


def test_detect_format() -> None:
    assert grantfile.detect_format("a.YML") == "yaml"
    assert grantfile.detect_format("a.csv") == "csv"
    assert grantfile.detect_format("a.txt", "csv") == "csv"
    with pytest.raises(grantfile.GrantFileError, match="--format"):
        grantfile.detect_format("a.txt")
