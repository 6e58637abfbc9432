"""moto's own VPC-endpoint and Organizations behaviour, recorded call by call (run as a script,
in a fresh process).

``python moto_scenario.py plain``    -- moto alone; fails if anything imported the emulator
``python moto_scenario.py emulator`` -- the same with ``vpce_tools.emulator`` installed first

Prints one JSON document: every call's name, HTTP status, parsed result (or error) and raw XML
body, with random IDs, timestamps and request IDs replaced by stable placeholders, so the two
runs can be compared for equality (tests/emulator/test_moto_unchanged.py).
"""

from __future__ import annotations

import json
import os
import random
import re
import sys
from collections.abc import Callable
from typing import Any

_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:?\d\d)?")
_REQUEST_ID = re.compile(r"(<requestId>|<RequestID>)[^<]*(</requestId>|</RequestID>)")
_HEX_RUN = re.compile(r"[0-9a-f]{8,}")
_EPOCH = re.compile(r"\b\d{10}\.\d+\b")  # JSON-protocol timestamps (Organizations)


class Normaliser:
    """Random hex runs (IDs, DNS labels) become ``<n>`` in order of first appearance."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}

    def __call__(self, text: str) -> str:
        text = _REQUEST_ID.sub(r"\1<request-id>\2", text)
        text = _TIMESTAMP.sub("<ts>", text)
        text = _EPOCH.sub("<epoch>", text)
        return _HEX_RUN.sub(self._name, text)

    def _name(self, m: re.Match[str]) -> str:
        return self.names.setdefault(m.group(0), f"<{len(self.names)}>")


def run(mode: str) -> dict[str, Any]:
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        MOTO_EC2_LOAD_DEFAULT_AMIS="false",
    )
    if mode == "emulator":
        import vpce_tools.emulator

        assert vpce_tools.emulator.is_installed()
    import boto3
    import botocore.endpoint
    from botocore.exceptions import ClientError
    from moto import mock_aws
    from moto.ec2.responses import EC2Response
    from moto.moto_api._internal import mock_random

    installed = EC2Response.create_vpc_endpoint.__module__.startswith("vpce_tools")
    assert installed == (mode == "emulator"), (mode, installed)
    if mode == "plain":
        assert not any(m.startswith("vpce_tools") for m in sys.modules), "emulator was imported"

    raw: list[tuple[int, str]] = []
    convert = botocore.endpoint.convert_to_response_dict

    def capture(http_response: Any, operation_model: Any) -> Any:
        response = convert(http_response, operation_model)
        raw.append((response["status_code"], response["body"].decode()))
        return response

    botocore.endpoint.convert_to_response_dict = capture
    # the same random choices in both runs (moto picks some values at random)
    random.seed(0)
    mock_random.seed(0)
    records: list[dict[str, Any]] = []

    with mock_aws():
        ec2 = boto3.client("ec2", region_name="us-east-1")

        def call(name: str, fn: Callable[..., Any], **kwargs: Any) -> Any:
            raw.clear()
            record: dict[str, Any] = {"call": name, "kwargs": kwargs}
            try:
                result = dict(fn(**kwargs))
                result.pop("ResponseMetadata", None)
                record["result"] = result
            except ClientError as e:
                result = None
                record["error"] = e.response["Error"]
            record["raw"] = raw[-1] if raw else None
            records.append(record)
            return result

        vpc = call("CreateVpc", ec2.create_vpc, CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        rtb = call("CreateRouteTable", ec2.create_route_table, VpcId=vpc)["RouteTable"]
        rtb2 = call("CreateRouteTable", ec2.create_route_table, VpcId=vpc)["RouteTable"]
        subnet = call(
            "CreateSubnet",
            ec2.create_subnet,
            VpcId=vpc,
            CidrBlock="10.0.1.0/24",
            AvailabilityZone="us-east-1a",
        )
        subnet_id = subnet["Subnet"]["SubnetId"]
        gw = call(
            "CreateVpcEndpoint",
            ec2.create_vpc_endpoint,
            VpcEndpointType="Gateway",
            VpcId=vpc,
            ServiceName="com.amazonaws.us-east-1.s3",
            RouteTableIds=[rtb["RouteTableId"]],
        )["VpcEndpoint"]["VpcEndpointId"]
        # no type: moto treats it as a Gateway endpoint (but crashes deleting it: not deleted here)
        untyped = call(
            "CreateVpcEndpoint",
            ec2.create_vpc_endpoint,
            VpcId=vpc,
            ServiceName="com.amazonaws.us-east-1.dynamodb",
        )["VpcEndpoint"]["VpcEndpointId"]
        gw2 = call(
            "CreateVpcEndpoint",
            ec2.create_vpc_endpoint,
            VpcEndpointType="Gateway",
            VpcId=vpc,
            ServiceName="com.amazonaws.us-east-1.dynamodb",
        )["VpcEndpoint"]["VpcEndpointId"]
        iface = call(
            "CreateVpcEndpoint",
            ec2.create_vpc_endpoint,
            VpcEndpointType="Interface",
            VpcId=vpc,
            ServiceName="com.amazonaws.us-east-1.ec2",
            SubnetIds=[subnet_id],
        )["VpcEndpoint"]["VpcEndpointId"]
        call("CreateVpcEndpoint", ec2.create_vpc_endpoint, VpcId="vpc-12345678", ServiceName="x")
        call("DescribeVpcEndpoints", ec2.describe_vpc_endpoints)
        call("DescribeVpcEndpoints", ec2.describe_vpc_endpoints, VpcEndpointIds=[iface])
        call(
            "DescribeVpcEndpoints",
            ec2.describe_vpc_endpoints,
            Filters=[{"Name": "vpc-endpoint-type", "Values": ["Gateway"]}],
        )
        call(
            "DescribeVpcEndpoints",
            ec2.describe_vpc_endpoints,
            VpcEndpointIds=["vpce-0123456789abcdef0"],
        )
        call(
            "ModifyVpcEndpoint",
            ec2.modify_vpc_endpoint,
            VpcEndpointId=gw,
            AddRouteTableIds=[rtb2["RouteTableId"]],
            PolicyDocument=json.dumps({"Statement": [{"Effect": "Allow", "Action": "s3:*"}]}),
        )
        call("DescribeVpcEndpoints", ec2.describe_vpc_endpoints, VpcEndpointIds=[gw])
        call("DescribeRouteTables", ec2.describe_route_tables)
        call("DeleteVpcEndpoints", ec2.delete_vpc_endpoints, VpcEndpointIds=[gw2])
        call("DescribeVpcEndpoints", ec2.describe_vpc_endpoints)
        # moto quirk, kept: ModifyVpcEndpoint adds the route table without the route, so the
        # delete fails with InvalidRoute.NotFound
        call("DeleteVpcEndpoints", ec2.delete_vpc_endpoints, VpcEndpointIds=[gw])
        call("DeleteVpcEndpoints", ec2.delete_vpc_endpoints, VpcEndpointIds=[iface])
        call("DeleteVpcEndpoints", ec2.delete_vpc_endpoints, VpcEndpointIds=[iface])
        call("DescribeVpcEndpoints", ec2.describe_vpc_endpoints, VpcEndpointIds=[iface, gw2])
        call("DescribeVpcEndpoints", ec2.describe_vpc_endpoints, VpcEndpointIds=[untyped])
        call("DescribeRouteTables", ec2.describe_route_tables)
        call("DescribeNetworkInterfaces", ec2.describe_network_interfaces)
        # endpoint services (the emulator builds on these)
        nlb = boto3.client("elbv2", region_name="us-east-1").create_load_balancer(
            Name="nlb", Subnets=[subnet_id], Scheme="internal", Type="network"
        )["LoadBalancers"][0]["LoadBalancerArn"]
        svc = call(
            "CreateVpcEndpointServiceConfiguration",
            ec2.create_vpc_endpoint_service_configuration,
            NetworkLoadBalancerArns=[nlb],
            AcceptanceRequired=True,
        )["ServiceConfiguration"]["ServiceId"]
        call(
            "ModifyVpcEndpointServicePermissions",
            ec2.modify_vpc_endpoint_service_permissions,
            ServiceId=svc,
            AddAllowedPrincipals=["arn:aws:iam::111111111111:root"],
        )
        call(
            "DescribeVpcEndpointServicePermissions",
            ec2.describe_vpc_endpoint_service_permissions,
            ServiceId=svc,
        )
        call(
            "DescribeVpcEndpointServiceConfigurations",
            ec2.describe_vpc_endpoint_service_configurations,
        )
        call(
            "DeleteVpcEndpointServiceConfigurations",
            ec2.delete_vpc_endpoint_service_configurations,
            ServiceIds=[svc],
        )
        organizations(call, boto3.client("organizations", region_name="us-east-1"))

    norm = Normaliser()
    text = norm(json.dumps(records, default=str))
    return {"mode": mode, "records": json.loads(text)}


def organizations(call: Callable[..., Any], org: Any) -> None:
    """Valid Organizations requests (the emulator checks invalid ones; valid ones are moto's)."""
    call("DescribeOrganization", org.describe_organization)  # not in use yet: an error
    call("CreateOrganization", org.create_organization, FeatureSet="ALL")
    root = call("ListRoots", org.list_roots)["Roots"][0]["Id"]
    top = call("CreateOrganizationalUnit", org.create_organizational_unit, ParentId=root, Name="w")
    top_id = top["OrganizationalUnit"]["Id"]
    child = call(
        "CreateOrganizationalUnit", org.create_organizational_unit, ParentId=top_id, Name="p"
    )["OrganizationalUnit"]["Id"]
    status = call("CreateAccount", org.create_account, AccountName="a", Email="a@example.com")
    account = status["CreateAccountStatus"]["AccountId"]
    second = call("CreateAccount", org.create_account, AccountName="b", Email="b@example.com")
    other = second["CreateAccountStatus"]["AccountId"]
    call(
        "DescribeCreateAccountStatus",
        org.describe_create_account_status,
        CreateAccountRequestId=status["CreateAccountStatus"]["Id"],
    )
    call(
        "MoveAccount",
        org.move_account,
        AccountId=account,
        SourceParentId=root,
        DestinationParentId=child,
    )
    call("ListParents", org.list_parents, ChildId=account)
    call("ListParents", org.list_parents, ChildId=child)
    call("ListParents", org.list_parents, ChildId=top_id)
    ous = org.list_organizational_units_for_parent
    call("ListOrganizationalUnitsForParent", ous, ParentId=root)
    call("ListAccountsForParent", org.list_accounts_for_parent, ParentId=child)
    call("ListAccountsForParent", org.list_accounts_for_parent, ParentId=root)
    call("ListChildren", org.list_children, ParentId=top_id, ChildType="ORGANIZATIONAL_UNIT")
    call("DescribeAccount", org.describe_account, AccountId=account)
    call("DescribeAccount", org.describe_account, AccountId="000000000000")
    call("DescribeOrganizationalUnit", org.describe_organizational_unit, OrganizationalUnitId=child)
    call(
        "MoveAccount",
        org.move_account,
        AccountId=account,
        SourceParentId=child,
        DestinationParentId=top_id,
    )
    call("CloseAccount", org.close_account, AccountId=account)
    call("ListAccountsForParent", org.list_accounts_for_parent, ParentId=top_id)
    call("RemoveAccountFromOrganization", org.remove_account_from_organization, AccountId=other)
    call("ListAccounts", org.list_accounts)
    call("DescribeOrganization", org.describe_organization)


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1])))
