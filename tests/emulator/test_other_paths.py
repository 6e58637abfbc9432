"""Interface endpoints made by other paths than the CreateVpcEndpoint API get their connection:
CloudFormation (moto's cloudformation backend) and moto's own backend method. Deleting through
the backend marks the connection deleted."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError
from moto.ec2.models import ec2_backends

from vpce_tools.emulator import add_listener, remove_listener
from vpce_tools.emulator.world import EndpointService, Provider

from .conftest import CONSUMER_ACCOUNT, Inbox


def _template(service_name: str) -> str:
    return json.dumps(
        {
            "AWSTemplateFormatVersion": "2010-09-09",
            "Resources": {
                "Vpc": {"Type": "AWS::EC2::VPC", "Properties": {"CidrBlock": "10.20.0.0/16"}},
                "Subnet": {
                    "Type": "AWS::EC2::Subnet",
                    "Properties": {"VpcId": {"Ref": "Vpc"}, "CidrBlock": "10.20.1.0/24"},
                },
                "Endpoint": {
                    "Type": "AWS::EC2::VPCEndpoint",
                    "Properties": {
                        "VpcEndpointType": "Interface",
                        "VpcId": {"Ref": "Vpc"},
                        "SubnetIds": [{"Ref": "Subnet"}],
                        "ServiceName": service_name,
                    },
                },
            },
            "Outputs": {"EndpointId": {"Value": {"Ref": "Endpoint"}}},
        }
    )


def _service_notification(provider: Provider, service: EndpointService, inbox: Inbox) -> None:
    provider.client("ec2").create_vpc_endpoint_connection_notification(
        ServiceId=service.service_id,
        ConnectionNotificationArn=inbox.topic_arn,
        ConnectionEvents=["Connect", "Accept", "Reject", "Delete"],
    )


def test_cloudformation_endpoint_gets_its_connection(
    provider: Provider, service: EndpointService, inbox: Inbox
) -> None:
    _service_notification(provider, service, inbox)
    consumer = provider.consumer(CONSUMER_ACCOUNT)
    cfn = consumer.client("cloudformation")
    cfn.create_stack(StackName="consumer", TemplateBody=_template(service.service_name))
    stack = cfn.describe_stacks(StackName="consumer")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    vpce = next(o["OutputValue"] for o in stack["Outputs"] if o["OutputKey"] == "EndpointId")

    (conn,) = provider.connections(service.service_id)
    assert (conn["VpcEndpointId"], conn["VpcEndpointOwner"], conn["VpcEndpointState"]) == (
        vpce,
        CONSUMER_ACCOUNT,
        "pendingAcceptance",
    )
    assert consumer.endpoint_state(vpce) == "pendingAcceptance"
    (msg,) = inbox.drain()
    assert (msg["Body"]["eventType"], msg["Body"]["vpcEndpointId"]) == ("Connect", vpce)

    # it is an ordinary connection from then on
    provider.client("ec2").accept_vpc_endpoint_connections(
        ServiceId=service.service_id, VpcEndpointIds=[vpce]
    )
    assert consumer.endpoint_state(vpce) == "available"


@pytest.mark.filterwarnings("ignore:Exception\\(EmulatorError\\):UserWarning")
def test_cloudformation_cannot_connect_where_the_api_cannot(provider: Provider) -> None:
    """Other paths act as the account itself: a service that does not allow it is refused
    before moto creates the endpoint (moto's CloudFormation fails CreateStack with the error)."""
    svc = provider.create_service(allowed_principals=())
    consumer = provider.consumer(CONSUMER_ACCOUNT)
    cfn = consumer.client("cloudformation")
    with pytest.raises(ClientError) as exc:
        cfn.create_stack(StackName="denied", TemplateBody=_template(svc.service_name))
    assert exc.value.response["Error"]["Code"] == "InvalidServiceName"
    assert consumer.client("ec2").describe_vpc_endpoints()["VpcEndpoints"] == []
    assert provider.connections() == []

    provider.allow(svc.service_id, f"arn:aws:iam::{CONSUMER_ACCOUNT}:root")
    cfn.create_stack(StackName="allowed", TemplateBody=_template(svc.service_name))
    assert [c["VpcEndpointOwner"] for c in provider.connections()] == [CONSUMER_ACCOUNT]


def test_moto_backend_create_and_delete_keep_the_connection_in_step(
    provider: Provider, service: EndpointService, inbox: Inbox
) -> None:
    _service_notification(provider, service, inbox)
    heard: list[str] = []

    def listener(_topic: str, message: str) -> None:
        heard.append(json.loads(message)["eventType"])

    consumer = provider.consumer(CONSUMER_ACCOUNT)
    vpc_id = consumer.client("ec2").create_vpc(CidrBlock="10.30.0.0/16")["Vpc"]["VpcId"]
    backend: Any = ec2_backends[CONSUMER_ACCOUNT]["us-east-1"]
    add_listener(listener)
    try:
        endpoint = backend.create_vpc_endpoint(
            vpc_id=vpc_id,
            service_name=service.service_name,
            endpoint_type="Interface",
            policy_document=None,
            route_table_ids=[],
        )
        assert endpoint.state == "pendingAcceptance"
        assert [c["VpcEndpointId"] for c in provider.connections()] == [endpoint.id]
        backend.delete_vpc_endpoints(vpce_ids=[endpoint.id])
        assert provider.connections()[0]["VpcEndpointState"] == "deleted"
        backend.delete_vpc_endpoints(vpce_ids=[endpoint.id])  # again: nothing more happens
    finally:
        remove_listener(listener)
    assert heard == ["Connect", "Delete"]
    assert [m["Body"]["eventType"] for m in inbox.drain()] == ["Connect", "Delete"]
