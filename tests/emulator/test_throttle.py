"""The optional Accept/Reject token bucket (RequestLimitExceeded, HTTP 503)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from vpce_tools.emulator import throttle
from vpce_tools.emulator.throttle import FakeClock, throttled
from vpce_tools.emulator.world import EndpointService, Provider

from .conftest import OTHER_ACCOUNT


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
