"""CreateVpcEndpoint against endpoint services of other accounts: lookup, principals, state."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from vpce_tools.emulator.world import EndpointService, Provider, assume

from .conftest import CONSUMER_ACCOUNT, OTHER_ACCOUNT


def _error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    err = exc.value.response["Error"]
    return err["Code"], err["Message"]


def test_assumed_role_maps_to_consumer_account_end_to_end(provider: Provider) -> None:
    session = assume(boto3.Session(region_name="us-east-1"), CONSUMER_ACCOUNT, "consumer")
    sts = session.client("sts", region_name="us-east-1")
    ident = sts.get_caller_identity()
    assert ident["Account"] == CONSUMER_ACCOUNT
    assert ident["Arn"].startswith(f"arn:aws:sts::{CONSUMER_ACCOUNT}:assumed-role/consumer/")

    svc = provider.create_service()
    ec2 = session.client("ec2", region_name="us-east-1")
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]
    assert vpc["OwnerId"] == CONSUMER_ACCOUNT
    subnet = ec2.create_subnet(VpcId=vpc["VpcId"], CidrBlock="10.9.1.0/24")["Subnet"]
    ep = ec2.create_vpc_endpoint(
        VpcEndpointType="Interface",
        VpcId=vpc["VpcId"],
        ServiceName=svc.service_name,
        SubnetIds=[subnet["SubnetId"]],
    )["VpcEndpoint"]
    assert str(ep["State"]) == "pendingAcceptance"  # camelCase on the wire, unlike the enum
    assert ep["OwnerId"] == CONSUMER_ACCOUNT
    # the endpoint lives in the consumer account, not in the provider's
    assert provider.client("ec2").describe_vpc_endpoints()["VpcEndpoints"] == []
    conns = provider.connections()
    assert [(c["VpcEndpointId"], c["VpcEndpointOwner"]) for c in conns] == [
        (ep["VpcEndpointId"], CONSUMER_ACCOUNT)
    ]


def test_auto_accept_service_connects_available(provider: Provider) -> None:
    svc = provider.create_service(acceptance_required=False)
    consumer = provider.consumer(CONSUMER_ACCOUNT)
    vpce = consumer.create_endpoint(svc.service_name)
    assert consumer.endpoint_state(vpce) == "available"
    assert provider.connections()[0]["VpcEndpointState"] == "available"


def test_unknown_service_name(provider: Provider) -> None:
    consumer = provider.consumer(CONSUMER_ACCOUNT)
    name = "com.amazonaws.vpce.us-east-1.vpce-svc-0123456789abcdef0"
    with pytest.raises(ClientError) as exc:
        consumer.create_endpoint(name)
    assert _error(exc) == (
        "InvalidServiceName",
        f"The Vpc Endpoint Service '{name}' does not exist",
    )


def test_service_name_of_other_region_is_unknown(
    provider: Provider, service: EndpointService
) -> None:
    consumer = provider.consumer(CONSUMER_ACCOUNT, region="eu-west-1")
    with pytest.raises(ClientError) as exc:
        consumer.create_endpoint(service.service_name)
    assert _error(exc)[0] == "InvalidServiceName"


def test_cross_region_needs_supported_region(provider: Provider) -> None:
    plain = provider.create_service()
    multi = provider.create_service(supported_regions=["us-east-1", "eu-west-1"])
    consumer = provider.consumer(CONSUMER_ACCOUNT, region="eu-west-1")
    with pytest.raises(ClientError) as exc:
        consumer.create_endpoint(plain.service_name, service_region="us-east-1")
    assert _error(exc)[0] == "InvalidServiceName"
    vpce = consumer.create_endpoint(multi.service_name, service_region="us-east-1")
    conn = provider.connections(multi.service_id)[0]
    assert conn["VpcEndpointId"] == vpce
    assert conn["VpcEndpointRegion"] == "eu-west-1"


def _denied(consumer: Any, svc: EndpointService) -> bool:
    try:
        consumer.create_endpoint(svc.service_name)
    except ClientError as e:
        return (e.response["Error"]["Code"], e.response["Error"]["Message"]) == (
            "InvalidServiceName",
            f"The Vpc Endpoint Service '{svc.service_name}' does not exist",
        )
    return False


def test_unauthorised_consumer_is_told_service_does_not_exist(provider: Provider) -> None:
    svc = provider.create_service(allowed_principals=())
    consumer = provider.consumer(CONSUMER_ACCOUNT)
    assert _denied(consumer, svc)
    # nothing was created on either side
    assert consumer.client("ec2").describe_vpc_endpoints()["VpcEndpoints"] == []
    assert provider.connections() == []


def test_account_root_principal_allows_every_role_of_that_account(provider: Provider) -> None:
    svc = provider.create_service(allowed_principals=())
    consumer = provider.consumer(CONSUMER_ACCOUNT)
    assert _denied(consumer, svc)
    provider.allow(svc.service_id, f"arn:aws:iam::{CONSUMER_ACCOUNT}:root")
    assert not _denied(consumer, svc)
    assert not _denied(provider.consumer(CONSUMER_ACCOUNT, role_name="another"), svc)
    assert _denied(provider.consumer(OTHER_ACCOUNT), svc)


def test_role_arn_principal_allows_only_that_role(provider: Provider) -> None:
    svc = provider.create_service(
        allowed_principals=[f"arn:aws:iam::{CONSUMER_ACCOUNT}:role/consumer"]
    )
    assert not _denied(provider.consumer(CONSUMER_ACCOUNT, role_name="consumer"), svc)
    assert _denied(provider.consumer(CONSUMER_ACCOUNT, role_name="intruder"), svc)
    assert _denied(provider.consumer(OTHER_ACCOUNT, role_name="consumer"), svc)


def test_removing_principal_blocks_new_endpoints_but_keeps_existing(provider: Provider) -> None:
    root = f"arn:aws:iam::{CONSUMER_ACCOUNT}:root"
    svc = provider.create_service(allowed_principals=[root])
    consumer = provider.consumer(CONSUMER_ACCOUNT)
    vpce = consumer.create_endpoint(svc.service_name)
    provider.client("ec2").modify_vpc_endpoint_service_permissions(
        ServiceId=svc.service_id, RemoveAllowedPrincipals=[root]
    )
    assert _denied(consumer, svc)
    assert [c["VpcEndpointId"] for c in provider.connections()] == [vpce]


def test_owner_account_may_always_connect(provider: Provider) -> None:
    svc = provider.create_service(allowed_principals=())
    ec2 = provider.client("ec2")
    vpc_id = ec2.create_vpc(CidrBlock="10.5.0.0/16")["Vpc"]["VpcId"]
    ep = ec2.create_vpc_endpoint(
        VpcEndpointType="Interface", VpcId=vpc_id, ServiceName=svc.service_name
    )["VpcEndpoint"]
    assert ep["State"] == "pendingAcceptance"
    assert provider.connections()[0]["VpcEndpointOwner"] == provider.account_id


def test_other_endpoint_kinds_are_left_to_moto(provider: Provider) -> None:
    ec2 = provider.client("ec2")
    vpc_id = ec2.create_vpc(CidrBlock="10.6.0.0/16")["Vpc"]["VpcId"]
    ep = ec2.create_vpc_endpoint(
        VpcEndpointType="Gateway", VpcId=vpc_id, ServiceName="com.amazonaws.us-east-1.s3"
    )["VpcEndpoint"]
    assert ep["State"] == "available"
    assert provider.connections() == []


def test_missing_vpc_creates_no_connection(provider: Provider, service: EndpointService) -> None:
    consumer = provider.consumer(CONSUMER_ACCOUNT)
    with pytest.raises(ClientError) as exc:
        consumer.client("ec2").create_vpc_endpoint(
            VpcEndpointType="Interface", VpcId="vpc-12345678", ServiceName=service.service_name
        )
    assert _error(exc)[0] == "InvalidVpcID.NotFound"
    assert provider.connections() == []
