"""Accept / Reject / DeleteVpcEndpoints: per-ID results, errors, state transitions."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from vpce_tools.emulator import configure_acceptance
from vpce_tools.emulator.world import Consumer, EndpointService, Provider

from .conftest import OTHER_ACCOUNT


def _state(provider: Provider, vpce: str) -> str:
    conns = provider.client("ec2").describe_vpc_endpoint_connections(
        Filters=[{"Name": "vpc-endpoint-id", "Values": [vpce]}]
    )["VpcEndpointConnections"]
    return str(conns[0]["VpcEndpointState"])


def _codes(resp: dict[str, Any]) -> dict[str, str]:
    return {u["ResourceId"]: u["Error"]["Code"] for u in resp["Unsuccessful"]}


def test_accept_moves_pending_acceptance_to_available(
    provider: Provider, service: EndpointService, consumer: Consumer
) -> None:
    vpce = consumer.create_endpoint(service.service_name)
    resp = provider.client("ec2").accept_vpc_endpoint_connections(
        ServiceId=service.service_id, VpcEndpointIds=[vpce]
    )
    assert resp["Unsuccessful"] == []
    assert _state(provider, vpce) == "available"
    assert consumer.endpoint_state(vpce) == "available"


def test_pending_is_observable_when_configured(
    provider: Provider, service: EndpointService, consumer: Consumer
) -> None:
    configure_acceptance(pending_reads=2)
    vpce = consumer.create_endpoint(service.service_name)
    provider.client("ec2").accept_vpc_endpoint_connections(
        ServiceId=service.service_id, VpcEndpointIds=[vpce]
    )
    assert _state(provider, vpce) == "pending"
    assert consumer.endpoint_state(vpce) == "pending"
    assert _state(provider, vpce) == "available"
    assert consumer.endpoint_state(vpce) == "available"


def test_mixed_batch_reports_each_bad_id(provider: Provider, consumer: Consumer) -> None:
    svc = provider.create_service()
    other_svc = provider.create_service()
    good = consumer.create_endpoint(svc.service_name)
    of_other_service = consumer.create_endpoint(other_svc.service_name)
    unknown = "vpce-0123456789abcdef0"
    batch = [good, "vpce-XYZ", "not-an-id", unknown, of_other_service, "vpce-1234"]
    resp = provider.client("ec2").accept_vpc_endpoint_connections(
        ServiceId=svc.service_id, VpcEndpointIds=batch
    )
    assert _codes(resp) == {
        "vpce-XYZ": "InvalidVpcEndpointId.Malformed",
        "not-an-id": "InvalidVpcEndpointId.Malformed",
        "vpce-1234": "InvalidVpcEndpointId.Malformed",
        unknown: "InvalidVpcEndpointId.NotFound",
        of_other_service: "InvalidVpcEndpointId.NotFound",
    }
    for item in resp["Unsuccessful"]:
        assert item["ResourceId"] in item["Error"]["Message"]
    assert _state(provider, good) == "available"
    assert _state(provider, of_other_service) == "pendingAcceptance"


def test_reject_mixed_batch(
    provider: Provider, service: EndpointService, consumer: Consumer
) -> None:
    a, b = consumer.create_endpoints(service.service_name, 2)
    resp = provider.client("ec2").reject_vpc_endpoint_connections(
        ServiceId=service.service_id, VpcEndpointIds=[a, "vpce-nope", "vpce-00000000"]
    )
    assert _codes(resp) == {
        "vpce-nope": "InvalidVpcEndpointId.Malformed",
        "vpce-00000000": "InvalidVpcEndpointId.NotFound",
    }
    assert _state(provider, a) == "rejected"
    assert consumer.endpoint_state(a) == "rejected"
    assert _state(provider, b) == "pendingAcceptance"


@pytest.mark.parametrize("op", ["accept", "reject"])
def test_unknown_service_fails_the_call(provider: Provider, op: str) -> None:
    ec2 = provider.client("ec2")
    call = getattr(ec2, f"{op}_vpc_endpoint_connections")
    with pytest.raises(ClientError) as exc:
        call(ServiceId="vpce-svc-0123456789abcdef0", VpcEndpointIds=["vpce-0123456789abcdef0"])
    assert exc.value.response["Error"]["Code"] == "InvalidVpcEndpointServiceId.NotFound"


@pytest.mark.parametrize("op", ["accept", "reject"])
def test_service_of_another_account_fails_the_call(
    provider: Provider, service: EndpointService, consumer: Consumer, op: str
) -> None:
    vpce = consumer.create_endpoint(service.service_name)
    intruder = Provider.for_account(OTHER_ACCOUNT)
    call = getattr(intruder.client("ec2"), f"{op}_vpc_endpoint_connections")
    with pytest.raises(ClientError) as exc:
        call(ServiceId=service.service_id, VpcEndpointIds=[vpce])
    assert exc.value.response["Error"]["Code"] == "InvalidVpcEndpointServiceId.NotFound"
    assert _state(provider, vpce) == "pendingAcceptance"


def test_accept_outside_pending_acceptance_is_invalid_state(
    provider: Provider, service: EndpointService, consumer: Consumer
) -> None:
    ec2 = provider.client("ec2")
    accepted, rejected = consumer.create_endpoints(service.service_name, 2)
    ec2.accept_vpc_endpoint_connections(ServiceId=service.service_id, VpcEndpointIds=[accepted])
    ec2.reject_vpc_endpoint_connections(ServiceId=service.service_id, VpcEndpointIds=[rejected])
    resp = ec2.accept_vpc_endpoint_connections(
        ServiceId=service.service_id, VpcEndpointIds=[accepted, rejected]
    )
    assert _codes(resp) == {accepted: "InvalidState", rejected: "InvalidState"}
    resp = ec2.reject_vpc_endpoint_connections(
        ServiceId=service.service_id, VpcEndpointIds=[rejected]
    )
    assert _codes(resp) == {rejected: "InvalidState"}


def test_reject_an_available_connection_revokes_it(
    provider: Provider, service: EndpointService, consumer: Consumer
) -> None:
    ec2 = provider.client("ec2")
    vpce = consumer.create_endpoint(service.service_name)
    ec2.accept_vpc_endpoint_connections(ServiceId=service.service_id, VpcEndpointIds=[vpce])
    assert _state(provider, vpce) == "available"
    resp = ec2.reject_vpc_endpoint_connections(ServiceId=service.service_id, VpcEndpointIds=[vpce])
    assert resp["Unsuccessful"] == []
    assert _state(provider, vpce) == "rejected"
    assert consumer.endpoint_state(vpce) == "rejected"


def test_reject_a_pending_connection(
    provider: Provider, service: EndpointService, consumer: Consumer
) -> None:
    configure_acceptance(pending_reads=5)
    ec2 = provider.client("ec2")
    vpce = consumer.create_endpoint(service.service_name)
    ec2.accept_vpc_endpoint_connections(ServiceId=service.service_id, VpcEndpointIds=[vpce])
    assert _state(provider, vpce) == "pending"
    ec2.reject_vpc_endpoint_connections(ServiceId=service.service_id, VpcEndpointIds=[vpce])
    assert _state(provider, vpce) == "rejected"


def test_delete_endpoint_marks_connection_deleted(
    provider: Provider, service: EndpointService, consumer: Consumer
) -> None:
    keep, gone = consumer.create_endpoints(service.service_name, 2)
    assert consumer.delete_endpoints(gone) == []
    assert _state(provider, gone) == "deleted"
    assert consumer.endpoint_state(gone) == "deleted"
    assert _state(provider, keep) == "pendingAcceptance"
    resp = provider.client("ec2").accept_vpc_endpoint_connections(
        ServiceId=service.service_id, VpcEndpointIds=[gone]
    )
    assert _codes(resp) == {gone: "InvalidState"}


def test_delete_unknown_and_malformed_ids(
    provider: Provider, service: EndpointService, consumer: Consumer
) -> None:
    vpce = consumer.create_endpoint(service.service_name)
    unknown = "vpce-0123456789abcdef0"
    unsuccessful = consumer.delete_endpoints(vpce, unknown, "vpce-bad!")
    # DeleteVpcEndpoints' own code for an unknown ID (Accept/Reject use InvalidVpcEndpointId.*)
    assert {u["ResourceId"]: u["Error"] for u in unsuccessful} == {
        unknown: {
            "Code": "InvalidVpcEndpoint.NotFound",
            "Message": f"The VPC endpoint '{unknown}' does not exist",
        },
        "vpce-bad!": {
            "Code": "InvalidVpcEndpointId.Malformed",
            "Message": 'Invalid id: "vpce-bad!" (expecting "vpce-...")',
        },
    }
    assert _state(provider, vpce) == "deleted"
    # the provider cannot delete the consumer's endpoint: to the provider it does not exist
    resp = provider.client("ec2").delete_vpc_endpoints(VpcEndpointIds=[vpce])
    assert _codes(resp) == {vpce: "InvalidVpcEndpoint.NotFound"}


def test_delete_of_only_unknown_ids_is_not_an_error(consumer: Consumer) -> None:
    """The call succeeds (HTTP 200) and reports each ID; it never fails as a whole."""
    ids = ["vpce-0123456789abcdef0", "vpce-00000000"]
    resp = consumer.client("ec2").delete_vpc_endpoints(VpcEndpointIds=ids)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert [u["ResourceId"] for u in resp["Unsuccessful"]] == ids
    assert {u["Error"]["Code"] for u in resp["Unsuccessful"]} == {"InvalidVpcEndpoint.NotFound"}
