"""DescribeVpcEndpointConnections: typed fields, filters, pagination, limits, visibility."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from vpce_tools.emulator import seed_connections
from vpce_tools.emulator.world import EndpointService, Provider

from .conftest import CONSUMER_ACCOUNT, OTHER_ACCOUNT


def _all(ec2: Any, max_results: int, filters: list[dict[str, Any]]) -> tuple[list[str], int]:
    ids: list[str] = []
    pages = 0
    kwargs: dict[str, Any] = {"MaxResults": max_results, "Filters": filters}
    while True:
        page = ec2.describe_vpc_endpoint_connections(**kwargs)
        pages += 1
        assert len(page["VpcEndpointConnections"]) <= max_results
        ids += [c["VpcEndpointId"] for c in page["VpcEndpointConnections"]]
        if "NextToken" not in page:
            return ids, pages
        kwargs["NextToken"] = page["NextToken"]


def test_fields_are_typed_by_botocore(provider: Provider, service: EndpointService) -> None:
    consumer = provider.consumer(CONSUMER_ACCOUNT)
    vpce = consumer.create_endpoint(service.service_name)
    resp = provider.client("ec2").describe_vpc_endpoint_connections()
    assert "NextToken" not in resp
    (conn,) = resp["VpcEndpointConnections"]
    assert isinstance(conn["CreationTimestamp"], datetime)
    assert conn["ServiceId"] == service.service_id
    assert conn["VpcEndpointId"] == vpce
    assert conn["VpcEndpointOwner"] == CONSUMER_ACCOUNT
    assert conn["VpcEndpointState"] == "pendingAcceptance"
    assert conn["VpcEndpointConnectionId"].startswith("vpce-con-")
    assert conn["NetworkLoadBalancerArns"] == [service.load_balancer_arn]
    assert conn["GatewayLoadBalancerArns"] == []
    assert conn["IpAddressType"] == "ipv4"
    assert conn["VpcEndpointRegion"] == "us-east-1"
    assert conn["Tags"] == []
    assert conn["DnsEntries"]
    assert conn["DnsEntries"][0]["DnsName"].startswith(vpce)


def test_only_the_service_owner_sees_connections(
    provider: Provider, service: EndpointService
) -> None:
    consumer = provider.consumer(CONSUMER_ACCOUNT)
    consumer.create_endpoint(service.service_name)
    assert (
        consumer.client("ec2").describe_vpc_endpoint_connections()["VpcEndpointConnections"] == []
    )
    other = Provider.for_account(OTHER_ACCOUNT)
    assert other.connections() == []
    assert len(provider.connections()) == 1


@pytest.mark.parametrize("bad", [0, 4, -1])
def test_max_results_below_five_is_an_error(ec2: Any, bad: int) -> None:
    with pytest.raises(ClientError) as exc:
        ec2.describe_vpc_endpoint_connections(MaxResults=bad)
    err = exc.value.response["Error"]
    assert err["Code"] == "InvalidParameterValue"
    assert f"Value ( {bad} ) for parameter maxResults is invalid" in err["Message"]
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


@pytest.mark.parametrize("ok", [5, 1000])
def test_max_results_bounds_are_inclusive(ec2: Any, ok: int) -> None:
    assert ec2.describe_vpc_endpoint_connections(MaxResults=ok)["VpcEndpointConnections"] == []


@pytest.mark.parametrize("big", [1001, 5000, 2**31 - 1])
def test_max_results_above_1000_returns_at_most_1000(
    provider: Provider, ec2: Any, big: int
) -> None:
    """AWS: "if MaxResults is given a value larger than 1,000, only 1,000 results are returned"."""
    svc = provider.create_service()
    ids = seed_connections(svc.service_id, [CONSUMER_ACCOUNT], 1005)
    first = ec2.describe_vpc_endpoint_connections(MaxResults=big)
    assert [c["VpcEndpointId"] for c in first["VpcEndpointConnections"]] == ids[:1000]
    rest = ec2.describe_vpc_endpoint_connections(MaxResults=big, NextToken=first["NextToken"])
    assert [c["VpcEndpointId"] for c in rest["VpcEndpointConnections"]] == ids[1000:]
    assert "NextToken" not in rest


def test_notifications_max_results_follow_the_same_rule(ec2: Any) -> None:
    assert (
        ec2.describe_vpc_endpoint_connection_notifications(MaxResults=5000)[
            "ConnectionNotificationSet"
        ]
        == []
    )
    with pytest.raises(ClientError) as exc:
        ec2.describe_vpc_endpoint_connection_notifications(MaxResults=4)
    assert exc.value.response["Error"]["Code"] == "InvalidParameterValue"


@pytest.mark.parametrize("token", ["garbage!", "eyJ4IjogMX0", "bm90IGpzb24"])
def test_invalid_next_token(ec2: Any, token: str) -> None:
    with pytest.raises(ClientError) as exc:
        ec2.describe_vpc_endpoint_connections(NextToken=token)
    assert exc.value.response["Error"]["Code"] == "InvalidPaginationToken"


def test_unknown_filter(ec2: Any) -> None:
    with pytest.raises(ClientError) as exc:
        ec2.describe_vpc_endpoint_connections(Filters=[{"Name": "nope", "Values": ["x"]}])
    assert exc.value.response["Error"]["Code"] == "InvalidParameterValue"
    assert "nope" in exc.value.response["Error"]["Message"]


@pytest.fixture
def population(provider: Provider) -> dict[str, Any]:
    """Two services; connections with mixed owners, states and regions (seeded + real)."""
    svc_a = provider.create_service()
    svc_b = provider.create_service()
    a_pending = seed_connections(svc_a.service_id, [CONSUMER_ACCOUNT, OTHER_ACCOUNT], 12)
    a_avail = seed_connections(svc_a.service_id, [CONSUMER_ACCOUNT], 7, state="available")
    a_cross = seed_connections(
        svc_a.service_id, [OTHER_ACCOUNT], 6, state="available", consumer_region="eu-west-1"
    )
    b_pending = seed_connections(svc_b.service_id, [OTHER_ACCOUNT], 9)
    real = provider.consumer(CONSUMER_ACCOUNT).create_endpoints(svc_b.service_name, 3)
    return {
        "a": svc_a,
        "b": svc_b,
        "a_pending": a_pending,
        "a_avail": a_avail,
        "a_cross": a_cross,
        "b_pending": b_pending,
        "real": real,
        "all": a_pending + a_avail + a_cross + b_pending + real,
    }


def test_pagination_without_filters_is_complete_and_ordered(
    ec2: Any, population: dict[str, Any]
) -> None:
    ids, pages = _all(ec2, 5, [])
    assert ids == population["all"]
    assert pages == 8  # 37 connections in pages of 5


def test_pagination_with_each_filter(ec2: Any, population: dict[str, Any]) -> None:
    p = population
    a_pending = p["a_pending"]
    cases: list[tuple[list[dict[str, Any]], list[str]]] = [
        (
            [{"Name": "service-id", "Values": [p["a"].service_id]}],
            a_pending + p["a_avail"] + p["a_cross"],
        ),
        (
            [{"Name": "vpc-endpoint-owner", "Values": [OTHER_ACCOUNT]}],
            a_pending[1::2] + p["a_cross"] + p["b_pending"],
        ),
        (
            [{"Name": "vpc-endpoint-state", "Values": ["PendingAcceptance"]}],
            a_pending + p["b_pending"] + p["real"],
        ),
        (
            [{"Name": "vpc-endpoint-state", "Values": ["available", "rejected"]}],
            p["a_avail"] + p["a_cross"],
        ),
        (
            [{"Name": "vpc-endpoint-id", "Values": [*a_pending[:6], p["real"][0]]}],
            [*a_pending[:6], p["real"][0]],
        ),
        ([{"Name": "vpc-endpoint-region", "Values": ["cross-region"]}], p["a_cross"]),
        ([{"Name": "vpc-endpoint-region", "Values": ["eu-west-1"]}], p["a_cross"]),
        (
            [{"Name": "vpc-endpoint-region", "Values": ["us-east-1"]}],
            a_pending + p["a_avail"] + p["b_pending"] + p["real"],
        ),
        ([{"Name": "ip-address-type", "Values": ["ipv4"]}], p["all"]),
        ([{"Name": "ip-address-type", "Values": ["dualstack"]}], []),
        (
            [
                {"Name": "service-id", "Values": [p["b"].service_id]},
                {"Name": "vpc-endpoint-owner", "Values": [CONSUMER_ACCOUNT]},
            ],
            p["real"],
        ),
    ]
    for filters, expected in cases:
        ids, pages = _all(ec2, 5, filters)
        assert ids == expected, filters
        assert pages == max(1, -(-len(expected) // 5)), filters


def test_seeded_bulk_is_fast_and_pages_by_1000(provider: Provider, ec2: Any) -> None:
    svc = provider.create_service()
    owners = [f"{i:012d}" for i in range(1, 51)]
    ids = seed_connections(svc.service_id, owners, 10_000)
    assert len(set(ids)) == 10_000
    got, pages = _all(ec2, 1000, [{"Name": "vpc-endpoint-state", "Values": ["pendingacceptance"]}])
    assert got == ids
    assert pages == 10
