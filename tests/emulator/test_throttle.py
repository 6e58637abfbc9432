"""The optional Accept/Reject token bucket (RequestLimitExceeded, HTTP 503)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from vpce_tools.emulator import throttle
from vpce_tools.emulator.throttle import FakeClock, throttled
from vpce_tools.emulator.world import Consumer, EndpointService, Provider

from .conftest import OTHER_ACCOUNT
from .strict_xml import served_operations


def _accept(provider: Provider, service: EndpointService) -> None:
    provider.client("ec2").accept_vpc_endpoint_connections(
        ServiceId=service.service_id, VpcEndpointIds=["vpce-0123456789abcdef0"]
    )


def _reject(provider: Provider, service: EndpointService) -> None:
    provider.client("ec2").reject_vpc_endpoint_connections(
        ServiceId=service.service_id, VpcEndpointIds=["vpce-0123456789abcdef0"]
    )


def test_off_by_default(provider: Provider, service: EndpointService) -> None:
    assert not throttle.is_enabled()
    for _ in range(30):
        _accept(provider, service)


def test_eleventh_call_within_a_second_is_throttled(
    provider: Provider, service: EndpointService
) -> None:
    clock = FakeClock(100.0)
    with throttled(clock=clock):
        for _ in range(10):
            _accept(provider, service)
        with pytest.raises(ClientError) as exc:
            _accept(provider, service)
        err = exc.value.response
        assert err["Error"] == {
            "Code": "RequestLimitExceeded",
            "Message": "Request limit exceeded.",
        }
        assert err["ResponseMetadata"]["HTTPStatusCode"] == 503

        # Reject has its own bucket; so has another account
        for _ in range(10):
            _reject(provider, service)
        with pytest.raises(ClientError):
            _reject(provider, service)
        other = Provider.for_account(OTHER_ACCOUNT)
        other_svc = other.create_service()
        _accept(other, other_svc)

        clock.advance(1.0)
        _accept(provider, service)
        with pytest.raises(ClientError):
            _accept(provider, service)
        clock.advance(60.0)  # refills to the burst, not beyond
        for _ in range(10):
            _accept(provider, service)
        with pytest.raises(ClientError):
            _accept(provider, service)
    assert not throttle.is_enabled()
    _accept(provider, service)


def test_throttle_surfaces_through_standard_retry_config(
    provider: Provider, service: EndpointService
) -> None:
    ec2 = provider.session.client(
        "ec2",
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )
    with throttled(clock=FakeClock()):
        for _ in range(10):
            ec2.accept_vpc_endpoint_connections(
                ServiceId=service.service_id, VpcEndpointIds=["vpce-0123456789abcdef0"]
            )
        with pytest.raises(ClientError) as exc:
            ec2.accept_vpc_endpoint_connections(
                ServiceId=service.service_id, VpcEndpointIds=["vpce-0123456789abcdef0"]
            )
    assert exc.value.response["Error"]["Code"] == "RequestLimitExceeded"


def test_custom_burst_and_rate(provider: Provider, service: EndpointService) -> None:
    clock = FakeClock()
    with throttled(burst=2, rate=4.0, clock=clock):
        _accept(provider, service)
        _accept(provider, service)
        with pytest.raises(ClientError):
            _accept(provider, service)
        clock.advance(0.25)
        _accept(provider, service)


def test_configure_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="burst"):
        throttle.configure(True, burst=0)


def test_env_var_turns_it_on_at_install() -> None:
    code = "import vpce_tools.emulator as e; print(e.throttle.is_enabled())"
    env = {**os.environ, "VPCE_EMULATOR_THROTTLE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "True"


# --- exactly which calls spend a token --------------------------------------------------------


def _code(call: Callable[[], Any]) -> str | None:
    """The error code of the call, None when it succeeds."""
    try:
        call()
    except ClientError as e:
        return str(e.response["Error"]["Code"])
    return None


def _throttled(call: Callable[[], Any]) -> bool:
    return _code(call) == "RequestLimitExceeded"


@pytest.mark.parametrize("op", ["accept", "reject"])
def test_every_request_spends_a_token_even_when_it_fails(
    provider: Provider, service: EndpointService, op: str
) -> None:
    """AWS: "Each request that you make removes one token from the API's bucket". DryRun
    requests, requests that fail as a whole and requests whose items all fail count too."""
    ec2 = provider.client("ec2")
    call = getattr(ec2, f"{op}_vpc_endpoint_connections")
    ok = {"ServiceId": service.service_id, "VpcEndpointIds": ["vpce-0123456789abcdef0"]}
    spenders: list[tuple[dict[str, Any], str | None]] = [
        ({**ok, "DryRun": True}, "DryRunOperation"),
        ({**ok, "ServiceId": "vpce-svc-0123456789abcdef0"}, "InvalidVpcEndpointServiceId.NotFound"),
        ({**ok, "VpcEndpointIds": ["not-an-id"]}, None),  # 200 with an Unsuccessful item
    ]
    clock = FakeClock()
    with throttled(burst=len(spenders), clock=clock):
        for kwargs, code in spenders:
            assert _code(lambda kwargs=kwargs: call(**kwargs)) == code
        assert _throttled(lambda: call(**ok))


@pytest.mark.parametrize("op", ["accept", "reject"])
def test_a_throttled_request_spends_nothing(
    provider: Provider, service: EndpointService, op: str
) -> None:
    call = getattr(provider.client("ec2"), f"{op}_vpc_endpoint_connections")
    ok = {"ServiceId": service.service_id, "VpcEndpointIds": ["vpce-0123456789abcdef0"]}
    clock = FakeClock()
    with throttled(burst=1, rate=1.0, clock=clock):
        call(**ok)
        for _ in range(20):
            assert _throttled(lambda: call(**ok))
        clock.advance(1.0)  # one token back: the 20 refusals left the bucket at zero, not below
        call(**ok)
        assert _throttled(lambda: call(**ok))


def _every_other_call(provider: Provider, service: EndpointService, consumer: Consumer) -> None:
    """One call of each operation the emulator serves except Accept/Reject, and a moto call."""
    ec2 = provider.client("ec2")
    vpce = consumer.create_endpoint(service.service_name)
    nfn = ec2.create_vpc_endpoint_connection_notification(
        ServiceId=service.service_id,
        ConnectionNotificationArn="arn:aws:sns:us-east-1:123456789012:t",
        ConnectionEvents=["Connect"],
    )["ConnectionNotification"]["ConnectionNotificationId"]
    calls: dict[str, Callable[[], Any]] = {
        "CreateVpcEndpoint": lambda: None,  # made above
        "CreateVpcEndpointConnectionNotification": lambda: None,  # made above
        "DescribeVpcEndpoints": consumer.client("ec2").describe_vpc_endpoints,
        "DescribeVpcEndpointConnections": ec2.describe_vpc_endpoint_connections,
        "DescribeVpcEndpointConnectionNotifications": (
            ec2.describe_vpc_endpoint_connection_notifications
        ),
        "ModifyVpcEndpointConnectionNotification": (
            lambda: ec2.modify_vpc_endpoint_connection_notification(
                ConnectionNotificationId=nfn, ConnectionEvents=["Accept"]
            )
        ),
        "DeleteVpcEndpointConnectionNotifications": (
            lambda: ec2.delete_vpc_endpoint_connection_notifications(
                ConnectionNotificationIds=[nfn]
            )
        ),
        "DeleteVpcEndpoints": lambda: consumer.delete_endpoints(vpce),
    }
    assert set(calls) | set(throttle.THROTTLED_ACTIONS) == served_operations()
    for call in calls.values():
        call()
    ec2.describe_vpcs()  # moto's own calls are never throttled either


def test_no_other_call_spends_a_token(provider: Provider, service: EndpointService) -> None:
    """With one token per bucket, every other call the emulator serves runs repeatedly; Accept
    and Reject still have their token afterwards."""
    ec2 = provider.client("ec2")
    consumer = provider.consumer(OTHER_ACCOUNT)
    with throttled(burst=1, clock=FakeClock()):
        for _ in range(3):
            _every_other_call(provider, service, consumer)
        victims = consumer.create_endpoints(service.service_name, 2)
        for op, vid in zip(("accept", "reject"), victims, strict=True):
            call = getattr(ec2, f"{op}_vpc_endpoint_connections")
            ids = {"ServiceId": service.service_id, "VpcEndpointIds": [vid]}
            assert call(**ids)["Unsuccessful"] == []
            assert _throttled(lambda call=call, ids=ids: call(**ids))


def test_buckets_are_per_region(provider: Provider, service: EndpointService) -> None:
    west = Provider(region="eu-west-1")
    west_svc = west.create_service()
    with throttled(burst=1, clock=FakeClock()):
        _accept(provider, service)
        assert _throttled(lambda: _accept(provider, service))
        _accept(west, west_svc)
        assert _throttled(lambda: _accept(west, west_svc))
