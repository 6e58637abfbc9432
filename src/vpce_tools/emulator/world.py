"""A small world builder for tests, demos and benchmarks.

Works in-process under ``moto.mock_aws()`` (``endpoint_url=None``) and against an emulator server
(``endpoint_url="http://127.0.0.1:PORT"``)::

    provider = Provider()                                    # default credentials' account
    svc = provider.create_service(acceptance_required=True)  # VPC, 2 subnets, NLB, service
    consumer = provider.consumer("111111111111")             # STS AssumeRole into that account
    vpce_id = consumer.create_endpoint(svc.service_name)     # -> pendingAcceptance

    org = provider.create_organization()                     # provider = management account
    prod = org.create_ou("prod", org.create_ou("workloads")) # nested OUs
    account = org.create_account("team-b", parent=prod)      # a brand-new member account
    provider.consumer(account).create_endpoint(...)          # ... acting as a consumer
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import boto3
import botocore.loaders
import botocore.session
from botocore.config import Config

DEFAULT_REGION = "us-east-1"
_names = itertools.count(1)
_CONFIG = Config(retries={"total_max_attempts": 1, "mode": "standard"})
"""No retries: errors surface at once (botocore's ``max_attempts`` counts *retries*)."""


@functools.cache
def _shared_loader() -> botocore.loaders.Loader:
    return botocore.loaders.create_loader()


def new_session(
    region: str = DEFAULT_REGION,
    access_key: str | None = None,
    secret_key: str | None = None,
    token: str | None = None,
) -> boto3.Session:
    """A boto3 session sharing one botocore model loader with every other session made here
    (parsing the EC2 model costs ~0.1 s per fresh session)."""
    core = botocore.session.get_session()
    core.register_component("data_loader", _shared_loader())
    if access_key and secret_key:
        core.set_credentials(access_key, secret_key, token)
    return boto3.Session(botocore_session=core, region_name=region)


def _client(session: boto3.Session, name: str, region: str, endpoint_url: str | None) -> Any:
    factory: Any = session.client  # the stubs' overloads want a literal service name
    return factory(name, region_name=region, endpoint_url=endpoint_url, config=_CONFIG)


def assume(
    session: boto3.Session,
    account_id: str,
    role_name: str = "consumer",
    region: str = DEFAULT_REGION,
    endpoint_url: str | None = None,
) -> boto3.Session:
    """A session for ``arn:aws:iam::<account_id>:role/<role_name>`` via STS AssumeRole (moto
    maps the returned credentials to that account; the role need not exist)."""
    sts = _client(session, "sts", region, endpoint_url)
    creds = sts.assume_role(
        RoleArn=f"arn:aws:iam::{account_id}:role/{role_name}",
        RoleSessionName=f"{role_name}-{next(_names)}",
    )["Credentials"]
    return new_session(
        region, creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"]
    )


@dataclass(frozen=True)
class EndpointService:
    service_id: str
    service_name: str
    load_balancer_arn: str
    region: str


@dataclass
class _Network:
    vpc_id: str
    subnet_ids: list[str]


class _Actor:
    def __init__(
        self,
        session: boto3.Session | None,
        region: str,
        endpoint_url: str | None,
    ) -> None:
        self.session = session or new_session(region)
        self.region = region
        self.endpoint_url = endpoint_url
        self._clients: dict[str, Any] = {}
        self._account_id: str | None = None

    def client(self, name: str) -> Any:
        """A cached boto3 client (no retries, so throttling surfaces immediately)."""
        if name not in self._clients:
            self._clients[name] = _client(self.session, name, self.region, self.endpoint_url)
        return self._clients[name]

    @property
    def account_id(self) -> str:
        if self._account_id is None:
            self._account_id = str(self.client("sts").get_caller_identity()["Account"])
        return self._account_id

    def _network(self, azs: int) -> _Network:
        ec2 = self.client("ec2")
        vpc_id = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnets = [
            ec2.create_subnet(
                VpcId=vpc_id,
                CidrBlock=f"10.0.{i}.0/24",
                AvailabilityZone=f"{self.region}{'abcdef'[i]}",
            )["Subnet"]["SubnetId"]
            for i in range(azs)
        ]
        return _Network(vpc_id, subnets)


class Provider(_Actor):
    """The endpoint-service owner."""

    def __init__(
        self,
        session: boto3.Session | None = None,
        region: str = DEFAULT_REGION,
        endpoint_url: str | None = None,
    ) -> None:
        super().__init__(session, region, endpoint_url)
        self._net: _Network | None = None

    @classmethod
    def for_account(
        cls,
        account_id: str,
        region: str = DEFAULT_REGION,
        endpoint_url: str | None = None,
        role_name: str = "provider",
    ) -> Provider:
        """A provider in ``account_id`` (assumed from the default credentials)."""
        base = new_session(region)
        return cls(assume(base, account_id, role_name, region, endpoint_url), region, endpoint_url)

    def create_service(
        self,
        acceptance_required: bool = True,
        allowed_principals: Sequence[str] = ("*",),
        supported_regions: Sequence[str] = (),
    ) -> EndpointService:
        """VPC and subnets in 2 AZs (once per provider), an internal NLB and an endpoint
        service. ``allowed_principals`` defaults to ``*`` (anyone may connect)."""
        if self._net is None:
            self._net = self._network(2)
        lb = self.client("elbv2").create_load_balancer(
            Name=f"nlb-{next(_names)}",
            Subnets=self._net.subnet_ids,
            Scheme="internal",
            Type="network",
        )["LoadBalancers"][0]
        kwargs: dict[str, Any] = {
            "NetworkLoadBalancerArns": [lb["LoadBalancerArn"]],
            "AcceptanceRequired": acceptance_required,
        }
        if supported_regions:
            kwargs["SupportedRegions"] = list(supported_regions)
        ec2 = self.client("ec2")
        cfg = ec2.create_vpc_endpoint_service_configuration(**kwargs)["ServiceConfiguration"]
        if allowed_principals:
            ec2.modify_vpc_endpoint_service_permissions(
                ServiceId=cfg["ServiceId"], AddAllowedPrincipals=list(allowed_principals)
            )
        return EndpointService(
            cfg["ServiceId"], cfg["ServiceName"], lb["LoadBalancerArn"], self.region
        )

    def allow(self, service_id: str, *principals: str) -> None:
        self.client("ec2").modify_vpc_endpoint_service_permissions(
            ServiceId=service_id, AddAllowedPrincipals=list(principals)
        )

    def consumer(
        self, account_id: str, role_name: str = "consumer", region: str | None = None
    ) -> Consumer:
        """A consumer in ``account_id``: AssumeRole into ``arn:aws:iam::<acct>:role/<name>``
        from this provider's credentials."""
        reg = region or self.region
        session = assume(self.session, account_id, role_name, reg, self.endpoint_url)
        return Consumer(session, account_id, role_name, reg, self.endpoint_url)

    def create_organization(self) -> Organization:
        """An organization with this provider's account as its management account."""
        return Organization.create(self)

    def connections(self, service_id: str | None = None) -> list[dict[str, Any]]:
        """All connections (optionally of one service), following NextToken."""
        kwargs: dict[str, Any] = {"MaxResults": 1000}
        if service_id:
            kwargs["Filters"] = [{"Name": "service-id", "Values": [service_id]}]
        out: list[dict[str, Any]] = []
        while True:
            page = self.client("ec2").describe_vpc_endpoint_connections(**kwargs)
            out += page["VpcEndpointConnections"]
            if not page.get("NextToken"):
                return out
            kwargs["NextToken"] = page["NextToken"]


@dataclass
class Organization:
    """AWS Organizations from the management account: OUs, accounts, moves (what the README
    walkthrough does with `aws organizations ...`)."""

    client: Any
    organization_id: str
    root_id: str

    @classmethod
    def create(cls, management: _Actor) -> Organization:
        org = management.client("organizations")
        organization = org.create_organization(FeatureSet="ALL")["Organization"]
        return cls(org, str(organization["Id"]), str(org.list_roots()["Roots"][0]["Id"]))

    def create_ou(self, name: str, parent: str | None = None) -> str:
        """A new OU under ``parent`` (default: the root); its ID."""
        ou = self.client.create_organizational_unit(ParentId=parent or self.root_id, Name=name)
        return str(ou["OrganizationalUnit"]["Id"])

    def create_account(self, name: str, parent: str | None = None) -> str:
        """A new member account (created in the root, then moved to ``parent`` if given)."""
        status = self.client.create_account(AccountName=name, Email=f"{name}@example.com")
        account = str(status["CreateAccountStatus"]["AccountId"])
        if parent and parent != self.root_id:
            self.move(account, parent)
        return account

    def parent_of(self, account: str) -> str:
        return str(self.client.list_parents(ChildId=account)["Parents"][0]["Id"])

    def move(self, account: str, destination: str) -> None:
        self.client.move_account(
            AccountId=account,
            SourceParentId=self.parent_of(account),
            DestinationParentId=destination,
        )

    def close(self, account: str) -> None:
        self.client.close_account(AccountId=account)


@dataclass
class Consumer:
    """An endpoint owner in another (or the same) account."""

    session: boto3.Session
    account_id: str
    role_name: str
    region: str = DEFAULT_REGION
    endpoint_url: str | None = None
    _clients: dict[str, Any] = field(default_factory=dict, repr=False)
    _net: _Network | None = field(default=None, repr=False)

    @property
    def role_arn(self) -> str:
        return f"arn:aws:iam::{self.account_id}:role/{self.role_name}"

    def client(self, name: str) -> Any:
        if name not in self._clients:
            self._clients[name] = _client(self.session, name, self.region, self.endpoint_url)
        return self._clients[name]

    def _network(self) -> _Network:
        if self._net is None:
            ec2 = self.client("ec2")
            vpc_id = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
            subnet_id = ec2.create_subnet(
                VpcId=vpc_id, CidrBlock="10.1.0.0/24", AvailabilityZone=f"{self.region}a"
            )["Subnet"]["SubnetId"]
            self._net = _Network(vpc_id, [subnet_id])
        return self._net

    def create_endpoint(self, service_name: str, service_region: str | None = None) -> str:
        """An Interface endpoint to ``service_name`` (VPC/subnet created once)."""
        net = self._network()
        kwargs: dict[str, Any] = {
            "VpcEndpointType": "Interface",
            "VpcId": net.vpc_id,
            "ServiceName": service_name,
            "SubnetIds": net.subnet_ids,
        }
        if service_region and service_region != self.region:
            kwargs["ServiceRegion"] = service_region
        return str(self.client("ec2").create_vpc_endpoint(**kwargs)["VpcEndpoint"]["VpcEndpointId"])

    def create_endpoints(self, service_name: str, n: int) -> list[str]:
        return [self.create_endpoint(service_name) for _ in range(n)]

    def endpoint_state(self, vpce_id: str) -> str:
        eps = self.client("ec2").describe_vpc_endpoints(VpcEndpointIds=[vpce_id])["VpcEndpoints"]
        return str(eps[0]["State"])

    def delete_endpoints(self, *vpce_ids: str) -> list[dict[str, Any]]:
        resp = self.client("ec2").delete_vpc_endpoints(VpcEndpointIds=list(vpce_ids))
        return list(resp.get("Unsuccessful", []))
