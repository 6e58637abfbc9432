"""DryRun: every call the emulator serves answers DryRunOperation (HTTP 412) and changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from vpce_tools.emulator import add_listener, remove_listener
from vpce_tools.emulator.world import Consumer, EndpointService, Provider

from .conftest import CONSUMER_ACCOUNT, Inbox
from .strict_xml import served_operations

DRY_RUN = {
    "Code": "DryRunOperation",
    "Message": "Request would have succeeded, but DryRun flag is set.",
}


def _dry_run_error(call: Callable[[], Any]) -> None:
    with pytest.raises(ClientError) as exc:
        call()
    assert exc.value.response["Error"] == DRY_RUN
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412


def _world(consumer: Consumer) -> dict[str, Any]:
    ec2 = consumer.client("ec2")
    return {
        "endpoints": ec2.describe_vpc_endpoints()["VpcEndpoints"],
        "enis": ec2.describe_network_interfaces()["NetworkInterfaces"],
    }


def test_create_vpc_endpoint_dry_run_creates_nothing(
    provider: Provider, service: EndpointService, consumer: Consumer, inbox: Inbox
) -> None:
    provider.client("ec2").create_vpc_endpoint_connection_notification(
        ServiceId=service.service_id,
        ConnectionNotificationArn=inbox.topic_arn,
        ConnectionEvents=["Connect", "Accept", "Reject", "Delete"],
    )
    heard: list[tuple[str, str]] = []

    def listener(topic: str, message: str) -> None:
        heard.append((topic, message))

    add_listener(listener)
    try:
        ec2 = consumer.client("ec2")
        vpc_id = ec2.create_vpc(CidrBlock="10.7.0.0/16")["Vpc"]["VpcId"]
        subnet_id = ec2.create_subnet(VpcId=vpc_id, CidrBlock="10.7.1.0/24")["Subnet"]["SubnetId"]
        kwargs: dict[str, Any] = {
            "VpcEndpointType": "Interface",
            "VpcId": vpc_id,
            "ServiceName": service.service_name,
            "SubnetIds": [subnet_id],
        }
        before = _world(consumer)
        _dry_run_error(lambda: ec2.create_vpc_endpoint(DryRun=True, **kwargs))
        assert _world(consumer) == before
        assert before["endpoints"] == []
        assert provider.connections() == []
        assert inbox.drain() == []
        assert heard == []

        # the same request without DryRun does all three: the checks above could fail
        vpce = ec2.create_vpc_endpoint(DryRun=False, **kwargs)["VpcEndpoint"]["VpcEndpointId"]
        assert [e["VpcEndpointId"] for e in _world(consumer)["endpoints"]] == [vpce]
        assert [c["VpcEndpointId"] for c in provider.connections()] == [vpce]
        assert [m["Body"]["eventType"] for m in inbox.drain()] == ["Connect"]
        assert len(heard) == 1
    finally:
        remove_listener(listener)


def test_dry_run_answers_before_the_service_is_resolved(provider: Provider) -> None:
    """DryRun checks permission to call the action (not evaluated here), not the request."""
    svc = provider.create_service(allowed_principals=())
    consumer = provider.consumer(CONSUMER_ACCOUNT)
    ec2 = consumer.client("ec2")
    vpc_id = ec2.create_vpc(CidrBlock="10.8.0.0/16")["Vpc"]["VpcId"]
    for name in (svc.service_name, "com.amazonaws.vpce.us-east-1.vpce-svc-0123456789abcdef0"):
        _dry_run_error(
            lambda name=name: ec2.create_vpc_endpoint(
                DryRun=True, VpcEndpointType="Interface", VpcId=vpc_id, ServiceName=name
            )
        )
    assert ec2.describe_vpc_endpoints()["VpcEndpoints"] == []


def _state(provider: Provider, vpce: str) -> str:
    conns = provider.connections()
    return str(next(c["VpcEndpointState"] for c in conns if c["VpcEndpointId"] == vpce))


def test_every_other_served_call_honours_dry_run(
    provider: Provider, service: EndpointService, consumer: Consumer
) -> None:
    ec2 = provider.client("ec2")
    vpce = consumer.create_endpoint(service.service_name)
    nfn = ec2.create_vpc_endpoint_connection_notification(
        ServiceId=service.service_id,
        ConnectionNotificationArn="arn:aws:sns:us-east-1:123456789012:t",
        ConnectionEvents=["Connect"],
    )["ConnectionNotification"]["ConnectionNotificationId"]
    ids = {"ServiceId": service.service_id, "VpcEndpointIds": [vpce]}
    calls: dict[str, Callable[[], Any]] = {
        "DescribeVpcEndpointConnections": lambda: ec2.describe_vpc_endpoint_connections(
            DryRun=True
        ),
        "AcceptVpcEndpointConnections": lambda: ec2.accept_vpc_endpoint_connections(
            DryRun=True, **ids
        ),
        "RejectVpcEndpointConnections": lambda: ec2.reject_vpc_endpoint_connections(
            DryRun=True, **ids
        ),
        "DeleteVpcEndpoints": lambda: consumer.client("ec2").delete_vpc_endpoints(
            DryRun=True, VpcEndpointIds=[vpce]
        ),
        "CreateVpcEndpointConnectionNotification": (
            lambda: ec2.create_vpc_endpoint_connection_notification(
                DryRun=True,
                ServiceId=service.service_id,
                ConnectionNotificationArn="arn:aws:sns:us-east-1:123456789012:other",
                ConnectionEvents=["Accept"],
            )
        ),
        "DescribeVpcEndpointConnectionNotifications": (
            lambda: ec2.describe_vpc_endpoint_connection_notifications(DryRun=True)
        ),
        "ModifyVpcEndpointConnectionNotification": (
            lambda: ec2.modify_vpc_endpoint_connection_notification(
                DryRun=True, ConnectionNotificationId=nfn, ConnectionEvents=["Delete"]
            )
        ),
        "DeleteVpcEndpointConnectionNotifications": (
            lambda: ec2.delete_vpc_endpoint_connection_notifications(
                DryRun=True, ConnectionNotificationIds=[nfn]
            )
        ),
    }
    # every handler the emulator adds is here; CreateVpcEndpoint is tested above and
    # DescribeVpcEndpoints is moto's own handler (the emulator only counts it as a read)
    assert set(calls) | {"CreateVpcEndpoint", "DescribeVpcEndpoints"} == served_operations()
    for name, call in calls.items():
        try:
            _dry_run_error(call)
        except AssertionError as e:  # pragma: no cover - names the call that failed
            raise AssertionError(f"{name}: {e}") from e
    assert _state(provider, vpce) == "pendingAcceptance"
    assert consumer.endpoint_state(vpce) == "pendingAcceptance"
    notes = ec2.describe_vpc_endpoint_connection_notifications()["ConnectionNotificationSet"]
    assert [(n["ConnectionNotificationId"], n["ConnectionEvents"]) for n in notes] == [
        (nfn, ["Connect"])
    ]
