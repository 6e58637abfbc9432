"""Connection notifications: CRUD, validation, and delivery via SNS -> SQS and listeners."""

from __future__ import annotations

import re
from typing import Any

import pytest
from botocore.exceptions import ClientError

from vpce_tools.emulator import SUBJECT, add_listener, remove_listener
from vpce_tools.emulator.world import Consumer, EndpointService, Provider

from .conftest import CONSUMER_ACCOUNT, Inbox

TOPIC = "arn:aws:sns:us-east-1:123456789012:vpce-events"


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def _create(ec2: Any, **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("ConnectionNotificationArn", TOPIC)
    kwargs.setdefault("ConnectionEvents", ["Connect", "Accept", "Reject", "Delete"])
    return dict(ec2.create_vpc_endpoint_connection_notification(**kwargs))


def test_create_for_service(ec2: Any, service: EndpointService) -> None:
    resp = _create(ec2, ServiceId=service.service_id, ClientToken="tok-1")
    n = resp["ConnectionNotification"]
    assert re.fullmatch(r"vpce-nfn-[0-9a-f]{17}", n["ConnectionNotificationId"])
    assert n["ServiceId"] == service.service_id
    assert n["ConnectionNotificationArn"] == TOPIC
    assert n["ConnectionEvents"] == ["Connect", "Accept", "Reject", "Delete"]
    assert n["ConnectionNotificationType"] == "Topic"
    assert n["ConnectionNotificationState"] == "Enabled"
    assert n["ServiceRegion"] == "us-east-1"
    assert resp["ClientToken"] == "tok-1"


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({}, "InvalidParameterCombination"),
        (
            {"ServiceId": "SVC", "VpcEndpointId": "vpce-0123456789abcdef0"},
            "InvalidParameterCombination",
        ),
        ({"ServiceId": "vpce-svc-0123456789abcdef0"}, "InvalidVpcEndpointServiceId.NotFound"),
        ({"VpcEndpointId": "vpce-0123456789abcdef0"}, "InvalidVpcEndpointId.NotFound"),
        ({"ServiceId": "SVC", "ConnectionEvents": ["Connect", "Explode"]}, "InvalidParameterValue"),
        ({"ServiceId": "SVC", "ConnectionEvents": []}, "MissingParameter"),
        (
            {"ServiceId": "SVC", "ConnectionNotificationArn": "arn:aws:sqs:us-east-1:1:q"},
            "InvalidParameterValue",
        ),
        ({"ServiceId": "SVC", "ConnectionNotificationArn": ""}, "MissingParameter"),
    ],
)
def test_create_validation(
    ec2: Any, service: EndpointService, kwargs: dict[str, Any], code: str
) -> None:
    if kwargs.get("ServiceId") == "SVC":
        kwargs["ServiceId"] = service.service_id
    with pytest.raises(ClientError) as exc:
        _create(ec2, **kwargs)
    assert _code(exc) == code


def test_cannot_attach_to_a_service_of_another_account(
    service: EndpointService, consumer: Consumer
) -> None:
    with pytest.raises(ClientError) as exc:
        _create(consumer.client("ec2"), ServiceId=service.service_id)
    assert _code(exc) == "InvalidVpcEndpointServiceId.NotFound"


def test_describe_modify_delete(
    provider: Provider, service: EndpointService, consumer: Consumer
) -> None:
    ec2 = provider.client("ec2")
    other = provider.create_service()
    ids = [
        _create(ec2, ServiceId=service.service_id)["ConnectionNotification"][
            "ConnectionNotificationId"
        ]
        for _ in range(7)
    ]
    other_id = _create(ec2, ServiceId=other.service_id, ConnectionEvents=["Connect"])[
        "ConnectionNotification"
    ]["ConnectionNotificationId"]

    # pagination in creation order
    seen: list[str] = []
    kwargs: dict[str, Any] = {"MaxResults": 5}
    while True:
        page = ec2.describe_vpc_endpoint_connection_notifications(**kwargs)
        seen += [n["ConnectionNotificationId"] for n in page["ConnectionNotificationSet"]]
        if "NextToken" not in page:
            break
        kwargs["NextToken"] = page["NextToken"]
    assert seen == [*ids, other_id]

    def ids_for(*filters: tuple[str, list[str]]) -> list[str]:
        resp = ec2.describe_vpc_endpoint_connection_notifications(
            Filters=[{"Name": k, "Values": v} for k, v in filters]
        )
        return [n["ConnectionNotificationId"] for n in resp["ConnectionNotificationSet"]]

    assert ids_for(("service-id", [other.service_id])) == [other_id]
    assert ids_for(("connection-notification-id", [ids[2]])) == [ids[2]]
    assert ids_for(("connection-notification-arn", [TOPIC])) == [*ids, other_id]
    assert ids_for(("connection-notification-state", ["Enabled"])) == [*ids, other_id]
    assert ids_for(("connection-notification-type", ["Topic"])) == [*ids, other_id]
    assert ids_for(("vpc-endpoint-id", ["vpce-0123456789abcdef0"])) == []

    one = ec2.describe_vpc_endpoint_connection_notifications(ConnectionNotificationId=ids[0])
    assert [n["ConnectionNotificationId"] for n in one["ConnectionNotificationSet"]] == [ids[0]]
    with pytest.raises(ClientError) as exc:
        ec2.describe_vpc_endpoint_connection_notifications(
            ConnectionNotificationId="vpce-nfn-0123456789abcdef0"
        )
    assert _code(exc) == "InvalidConnectionNotification"
    with pytest.raises(ClientError) as exc:
        ec2.describe_vpc_endpoint_connection_notifications(MaxResults=2)
    assert _code(exc) == "InvalidParameterValue"

    new_topic = "arn:aws:sns:us-east-1:123456789012:other"
    assert (
        ec2.modify_vpc_endpoint_connection_notification(
            ConnectionNotificationId=ids[0],
            ConnectionNotificationArn=new_topic,
            ConnectionEvents=["Reject"],
        )["ReturnValue"]
        is True
    )
    n = ec2.describe_vpc_endpoint_connection_notifications(ConnectionNotificationId=ids[0])[
        "ConnectionNotificationSet"
    ][0]
    assert (n["ConnectionNotificationArn"], n["ConnectionEvents"]) == (new_topic, ["Reject"])
    with pytest.raises(ClientError) as exc:
        ec2.modify_vpc_endpoint_connection_notification(
            ConnectionNotificationId=ids[0], ConnectionEvents=["Nope"]
        )
    assert _code(exc) == "InvalidParameterValue"
    with pytest.raises(ClientError) as exc:
        ec2.modify_vpc_endpoint_connection_notification(
            ConnectionNotificationId="vpce-nfn-0123456789abcdef0", ConnectionEvents=["Accept"]
        )
    assert _code(exc) == "InvalidConnectionNotification"

    unknown = "vpce-nfn-0123456789abcdef0"
    resp = ec2.delete_vpc_endpoint_connection_notifications(
        ConnectionNotificationIds=[ids[0], unknown]
    )
    assert [(u["ResourceId"], u["Error"]["Code"]) for u in resp["Unsuccessful"]] == [
        (unknown, "InvalidConnectionNotification")
    ]
    assert ids_for() == [*ids[1:], other_id]
    # another account sees none of them
    assert (
        consumer.client("ec2").describe_vpc_endpoint_connection_notifications()[
            "ConnectionNotificationSet"
        ]
        == []
    )


def test_events_are_delivered_to_sqs(
    provider: Provider, service: EndpointService, consumer: Consumer, inbox: Inbox
) -> None:
    ec2 = provider.client("ec2")
    nfn = _create(ec2, ServiceId=service.service_id, ConnectionNotificationArn=inbox.topic_arn)
    nfn_arn = nfn["ConnectionNotification"]["ConnectionNotificationArn"]
    a, b = consumer.create_endpoints(service.service_name, 2)
    ec2.accept_vpc_endpoint_connections(ServiceId=service.service_id, VpcEndpointIds=[a])
    ec2.reject_vpc_endpoint_connections(ServiceId=service.service_id, VpcEndpointIds=[b])
    consumer.delete_endpoints(a)
    # failed transitions publish nothing
    ec2.accept_vpc_endpoint_connections(ServiceId=service.service_id, VpcEndpointIds=[b])

    got = inbox.drain()
    assert [(m["Body"]["eventType"], m["Body"]["vpcEndpointId"]) for m in got] == [
        ("Connect", a),
        ("Connect", b),
        ("Accept", a),
        ("Reject", b),
        ("Delete", a),
    ]
    states = [m["Body"]["vpcEndpointState"] for m in got]
    assert states == ["pendingAcceptance", "pendingAcceptance", "pending", "rejected", "deleted"]
    for m in got:
        assert m["Type"] == "Notification"
        assert m["TopicArn"] == inbox.topic_arn
        assert m["Subject"] == SUBJECT
        body = m["Body"]
        assert set(body) == {
            "subject",
            "eventType",
            "serviceId",
            "vpcEndpointId",
            "vpcEndpointOwner",
            "vpcEndpointState",
            "vpcEndpointRegion",
            "connectionNotificationArn",
            "timestamp",
        }
        assert body["subject"] == SUBJECT
        assert body["serviceId"] == service.service_id
        assert body["vpcEndpointOwner"] == CONSUMER_ACCOUNT
        assert body["vpcEndpointRegion"] == "us-east-1"
        assert body["connectionNotificationArn"] == nfn_arn
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body["timestamp"])


def test_only_subscribed_events_are_sent(
    provider: Provider, service: EndpointService, consumer: Consumer, inbox: Inbox
) -> None:
    ec2 = provider.client("ec2")
    _create(
        ec2,
        ServiceId=service.service_id,
        ConnectionNotificationArn=inbox.topic_arn,
        ConnectionEvents=["Accept"],
    )
    vpce = consumer.create_endpoint(service.service_name)
    ec2.accept_vpc_endpoint_connections(ServiceId=service.service_id, VpcEndpointIds=[vpce])
    assert [m["Body"]["eventType"] for m in inbox.drain()] == ["Accept"]
    other = provider.create_service()
    consumer.create_endpoint(other.service_name)
    assert inbox.drain() == []


def test_endpoint_level_notification_in_consumer_account(
    provider: Provider, service: EndpointService, consumer: Consumer
) -> None:
    consumer_inbox = Inbox(provider, "consumer-side")  # topic may live in any account
    vpce = consumer.create_endpoint(service.service_name)
    resp = _create(
        consumer.client("ec2"),
        VpcEndpointId=vpce,
        ConnectionNotificationArn=consumer_inbox.topic_arn,
        ConnectionEvents=["Accept", "Reject"],
    )
    assert resp["ConnectionNotification"]["VpcEndpointId"] == vpce
    provider.client("ec2").accept_vpc_endpoint_connections(
        ServiceId=service.service_id, VpcEndpointIds=[vpce]
    )
    assert [m["Body"]["eventType"] for m in consumer_inbox.drain()] == ["Accept"]


def test_listeners_receive_topic_and_message(
    provider: Provider, service: EndpointService, consumer: Consumer
) -> None:
    received: list[tuple[str, str]] = []

    def listener(topic_arn: str, message: str) -> None:
        received.append((topic_arn, message))

    _create(provider.client("ec2"), ServiceId=service.service_id)  # topic does not exist
    add_listener(listener)
    add_listener(listener)  # idempotent
    try:
        consumer.create_endpoint(service.service_name)
    finally:
        remove_listener(listener)
    consumer.create_endpoint(service.service_name)
    assert len(received) == 1
    assert received[0][0] == TOPIC
    assert '"eventType": "Connect"' in received[0][1]
