"""Server mode, reset, install idempotence, the world builder at scale."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from moto import mock_aws
from moto.ec2.responses import EC2Response

from vpce_tools import emulator
from vpce_tools.emulator import seed_connections
from vpce_tools.emulator.testing import emulator_server, fake_credentials
from vpce_tools.emulator.world import Provider

from .conftest import CONSUMER_ACCOUNT


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    with emulator_server() as url:
        yield url


def test_server_mode_create_describe_accept(server_url: str) -> None:
    with fake_credentials():
        provider = Provider(endpoint_url=server_url)
        svc = provider.create_service()
        consumer = provider.consumer(CONSUMER_ACCOUNT)
        vpce = consumer.create_endpoint(svc.service_name)
        conns = provider.connections(svc.service_id)
        assert [(c["VpcEndpointId"], c["VpcEndpointState"]) for c in conns] == [
            (vpce, "pendingAcceptance")
        ]
        resp = provider.client("ec2").accept_vpc_endpoint_connections(
            ServiceId=svc.service_id, VpcEndpointIds=[vpce]
        )
        assert resp["Unsuccessful"] == []
        assert provider.connections(svc.service_id)[0]["VpcEndpointState"] == "available"
        assert consumer.endpoint_state(vpce) == "available"
        # seeding works against the server: it shares this process's backends
        seeded = seed_connections(svc.service_id, ["333333333333"], 20)
        assert len(provider.connections(svc.service_id)) == 21
        assert seeded[-1] == provider.connections(svc.service_id)[-1]["VpcEndpointId"]


def test_install_is_idempotent() -> None:
    before = EC2Response.create_vpc_endpoint
    emulator.install()
    emulator.install()
    assert EC2Response.create_vpc_endpoint is before
    assert emulator.is_installed()


def test_moto_reset_clears_emulator_state() -> None:
    with fake_credentials():
        with mock_aws():
            provider = Provider()
            svc = provider.create_service()
            seed_connections(svc.service_id, [CONSUMER_ACCOUNT], 3)
            assert len(provider.connections()) == 3
        with mock_aws():
            provider = Provider()
            assert provider.connections() == []
            with pytest.raises(LookupError):
                seed_connections(svc.service_id, [CONSUMER_ACCOUNT], 1)


def test_world_builder_creates_hundreds_of_endpoints(provider: Provider) -> None:
    """No wall-clock bound here (speed belongs in `make bench`; a loaded machine failed it)."""
    svc = provider.create_service()
    consumer = provider.consumer(CONSUMER_ACCOUNT)
    ids = consumer.create_endpoints(svc.service_name, 300)
    assert len(set(ids)) == 300
    assert len(provider.connections(svc.service_id)) == 300
