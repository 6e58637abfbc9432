"""The strict raw-XML check (autouse in these tests) finds what botocore's parser lets through."""

from __future__ import annotations

import botocore.session
import pytest

from vpce_tools.emulator.world import Consumer, EndpointService, Provider

from .conftest import RawChecks
from .strict_xml import check_response, served_operations

NS = 'xmlns="http://ec2.amazonaws.com/doc/2016-11-15"'
_MODEL = botocore.session.get_session().get_service_model("ec2")
DESCRIBE = _MODEL.operation_model("DescribeVpcEndpointConnections")


def _describe_body(connection: str) -> bytes:
    return (
        f"<DescribeVpcEndpointConnectionsResponse {NS}><requestId>r</requestId>"
        f"<vpcEndpointConnectionSet><item>{connection}</item></vpcEndpointConnectionSet>"
        "</DescribeVpcEndpointConnectionsResponse>"
    ).encode()


def test_a_well_formed_body_passes() -> None:
    body = _describe_body(
        "<vpcEndpointId>vpce-0123456789abcdef0</vpcEndpointId>"
        "<vpcEndpointState>pendingAcceptance</vpcEndpointState>"
        "<creationTimestamp>2026-12-01T00:00:00.000Z</creationTimestamp>"
        "<tagSet/>"
    )
    assert check_response(DESCRIBE, 200, body) == []


@pytest.mark.parametrize(
    ("connection", "problem"),
    [
        ("<vpcEndpointid>vpce-1</vpcEndpointid>", "not in shape"),  # wrong case: parser drops it
        ("<vpcEndpointState>connected</vpcEndpointState>", "is not one of"),
        ("<creationTimestamp>yesterday</creationTimestamp>", "is not a timestamp"),
        ("<tagSet><tag><key>k</key></tag></tagSet>", "list items must be <item>"),
        ("<vpcEndpointId><x/></vpcEndpointId>", "has child elements"),
    ],
)
def test_what_the_parser_ignores_is_reported(connection: str, problem: str) -> None:
    problems = check_response(DESCRIBE, 200, _describe_body(connection))
    assert len(problems) == 1
    assert problem in problems[0]


@pytest.mark.parametrize(
    "body",
    [
        b"<Response><Errors><Error><Code>X</Code></Error></Errors><RequestID>r</RequestID></Response>",
        b"<Response><Errors><Error><Code>X</Code><Message>m</Message></Error></Errors></Response>",
        b"<ErrorResponse><Error><Code>X</Code><Message>m</Message></Error></ErrorResponse>",
        b"not xml",
    ],
)
def test_malformed_error_bodies_are_reported(body: bytes) -> None:
    assert check_response(DESCRIBE, 400, body) != []


def test_every_served_operation_is_checked(
    provider: Provider,
    service: EndpointService,
    consumer: Consumer,
    raw_xml_checks: RawChecks,
) -> None:
    ec2 = provider.client("ec2")
    vpce = consumer.create_endpoint(service.service_name)
    consumer.endpoint_state(vpce)
    ec2.describe_vpc_endpoint_connections()
    ec2.accept_vpc_endpoint_connections(ServiceId=service.service_id, VpcEndpointIds=[vpce])
    ec2.reject_vpc_endpoint_connections(ServiceId=service.service_id, VpcEndpointIds=[vpce])
    nfn = ec2.create_vpc_endpoint_connection_notification(
        ServiceId=service.service_id,
        ConnectionNotificationArn="arn:aws:sns:us-east-1:123456789012:t",
        ConnectionEvents=["Connect"],
    )["ConnectionNotification"]["ConnectionNotificationId"]
    ec2.describe_vpc_endpoint_connection_notifications()
    ec2.modify_vpc_endpoint_connection_notification(
        ConnectionNotificationId=nfn, ConnectionEvents=["Accept"]
    )
    ec2.delete_vpc_endpoint_connection_notifications(ConnectionNotificationIds=[nfn, "x"])
    consumer.delete_endpoints(vpce, "vpce-0123456789abcdef0")
    assert set(raw_xml_checks.checked) == served_operations()
