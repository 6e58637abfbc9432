"""Every filter botocore's model documents for the connection calls is accepted and filters.

The filter names are read from the ``Filters`` documentation in botocore's EC2 service model, so
a botocore upgrade that documents a new filter fails here until the emulator serves it.
"""

from __future__ import annotations

import re
from typing import Any

import botocore.session
import pytest

from vpce_tools.emulator.connections import CONNECTION_FILTERS
from vpce_tools.emulator.notifications import NOTIFICATION_FILTERS
from vpce_tools.emulator.world import EndpointService, Provider

from .conftest import CONSUMER_ACCOUNT

_FILTER_NAME = re.compile(r"<code>([a-z][a-z0-9:-]*)</code>\s*-")


def documented_filters(operation: str) -> set[str]:
    model = botocore.session.get_session().get_service_model("ec2")
    shape = model.operation_model(operation).input_shape
    assert shape is not None
    doc = shape.members["Filters"].documentation
    return set(_FILTER_NAME.findall(doc))


@pytest.mark.parametrize(
    ("operation", "served"),
    [
        ("DescribeVpcEndpointConnections", CONNECTION_FILTERS),
        ("DescribeVpcEndpointConnectionNotifications", NOTIFICATION_FILTERS),
    ],
)
def test_emulator_serves_exactly_the_documented_filters(
    operation: str, served: dict[str, Any]
) -> None:
    documented = documented_filters(operation)
    assert len(documented) >= 6  # the parse found the list, not nothing
    assert set(served) == documented


def _ids(ec2: Any, name: str, value: str) -> list[str]:
    resp = ec2.describe_vpc_endpoint_connections(Filters=[{"Name": name, "Values": [value]}])
    return [c["VpcEndpointId"] for c in resp["VpcEndpointConnections"]]


def test_each_connection_filter_selects(provider: Provider, service: EndpointService) -> None:
    """(matching value, non-matching value) per documented filter, against one real connection;
    ``None`` as the matching value: no emulated connection can match (transit gateway
    attachments are not endpoint connections)."""
    vpce = provider.consumer(CONSUMER_ACCOUNT).create_endpoint(service.service_name)
    cases: dict[str, tuple[str | None, str]] = {
        "ip-address-type": ("ipv4", "ipv6"),
        "service-id": (service.service_id, "vpce-svc-0123456789abcdef0"),
        "transit-gateway-attachment-id": (None, "tgw-attach-0123456789abcdef0"),
        "vpc-endpoint-owner": (CONSUMER_ACCOUNT, "999999999999"),
        "vpc-endpoint-region": ("us-east-1", "cross-region"),
        "vpc-endpoint-state": ("pendingAcceptance", "available"),
        "vpc-endpoint-id": (vpce, "vpce-0123456789abcdef0"),
    }
    assert set(cases) == documented_filters("DescribeVpcEndpointConnections")
    ec2 = provider.client("ec2")
    for name, (match, other) in cases.items():
        assert _ids(ec2, name, other) == [], name
        if match is not None:
            assert _ids(ec2, name, match) == [vpce], name


def test_each_notification_filter_selects(provider: Provider, service: EndpointService) -> None:
    ec2 = provider.client("ec2")
    vpc_id = ec2.create_vpc(CidrBlock="10.3.0.0/16")["Vpc"]["VpcId"]
    own_vpce = ec2.create_vpc_endpoint(
        VpcEndpointType="Interface", VpcId=vpc_id, ServiceName=service.service_name
    )["VpcEndpoint"]["VpcEndpointId"]
    topic = "arn:aws:sns:us-east-1:123456789012:for-service"
    by_service = ec2.create_vpc_endpoint_connection_notification(
        ServiceId=service.service_id, ConnectionNotificationArn=topic, ConnectionEvents=["Connect"]
    )["ConnectionNotification"]["ConnectionNotificationId"]
    by_endpoint = ec2.create_vpc_endpoint_connection_notification(
        VpcEndpointId=own_vpce,
        ConnectionNotificationArn="arn:aws:sns:us-east-1:123456789012:for-endpoint",
        ConnectionEvents=["Accept"],
    )["ConnectionNotification"]["ConnectionNotificationId"]
    # (value, expected IDs) per documented filter
    cases: dict[str, list[tuple[str, list[str]]]] = {
        "connection-notification-arn": [(topic, [by_service]), ("arn:aws:sns:x", [])],
        "connection-notification-id": [(by_endpoint, [by_endpoint]), ("vpce-nfn-0", [])],
        "connection-notification-state": [("Enabled", [by_service, by_endpoint]), ("Disabled", [])],
        "connection-notification-type": [("Topic", [by_service, by_endpoint]), ("Queue", [])],
        "service-id": [(service.service_id, [by_service]), ("vpce-svc-0", [])],
        "vpc-endpoint-id": [(own_vpce, [by_endpoint]), ("vpce-00000000", [])],
    }
    assert set(cases) == documented_filters("DescribeVpcEndpointConnectionNotifications")
    for name, values in cases.items():
        for value, expected in values:
            got = ec2.describe_vpc_endpoint_connection_notifications(
                Filters=[{"Name": name, "Values": [value]}]
            )["ConnectionNotificationSet"]
            assert [n["ConnectionNotificationId"] for n in got] == expected, (name, value)
