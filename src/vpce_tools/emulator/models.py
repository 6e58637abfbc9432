"""State of the emulator: connections and connection notifications.

All mutable state lives on moto's EC2 backend objects (attribute ``_vpce_emulator``), so moto's
reset (``mock_aws`` start/stop, ``/moto-api/reset``) wipes it together with everything else.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from moto.ec2.exceptions import EC2ClientError

LOCK = threading.RLock()
"""Guards every read-modify-write of emulator state (server mode serves requests in threads)."""

STATE_ATTR = "_vpce_emulator"

# Wire states (camelCase, as AWS sends them).
PENDING_ACCEPTANCE = "pendingAcceptance"
PENDING = "pending"
AVAILABLE = "available"
DELETING = "deleting"
DELETED = "deleted"
REJECTED = "rejected"
FAILED = "failed"
EXPIRED = "expired"
ALL_STATES = (
    PENDING_ACCEPTANCE,
    PENDING,
    AVAILABLE,
    DELETING,
    DELETED,
    REJECTED,
    FAILED,
    EXPIRED,
)

EVENTS = ("Accept", "Connect", "Delete", "Reject")

VPCE_ID_RE = re.compile(r"^vpce-[0-9a-f]{8,17}$")
SERVICE_ID_RE = re.compile(r"^vpce-svc-[0-9a-f]{8,17}$")
SERVICE_NAME_RE = re.compile(
    r"^com\.amazonaws\.vpce\.(?P<region>[a-z0-9-]+)\.(?P<id>vpce-svc-[0-9a-f]+)$"
)

_seq = itertools.count(1)


def next_seq() -> int:
    """A process-wide increasing number: creation order of connections and notifications."""
    return next(_seq)


class EmulatorError(EC2ClientError):
    """An EC2-style client error (HTTP 400, ``<Response><Errors><Error>`` body)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)


@dataclass
class Connection:
    """One endpoint connection, stored with the endpoint *service* (provider side)."""

    seq: int
    service_id: str
    vpc_endpoint_id: str
    owner: str
    region: str
    """Consumer region (``VpcEndpointRegion``)."""
    service_owner: str
    """Account that owns the endpoint service."""
    service_region: str
    state: str
    creation_timestamp: datetime
    connection_id: str
    dns_entries: list[dict[str, str]] = field(default_factory=list)
    network_load_balancer_arns: list[str] = field(default_factory=list)
    gateway_load_balancer_arns: list[str] = field(default_factory=list)
    ip_address_type: str = "ipv4"
    tags: list[dict[str, str]] = field(default_factory=list)
    caller_arn: str | None = None
    endpoint: Any = None
    """moto's ``VPCEndPoint`` in the consumer backend (``None`` for seeded connections)."""
    reads_until_available: int = 0

    def set_state(self, state: str) -> None:
        self.state = state
        if self.endpoint is not None:
            self.endpoint.state = state

    def advance_on_read(self) -> None:
        """``pending`` becomes ``available`` on a read (after ``reads_until_available`` reads)."""
        if self.state != PENDING:
            return
        if self.reads_until_available > 0:
            self.reads_until_available -= 1
            return
        self.set_state(AVAILABLE)

    def to_wire(self) -> dict[str, Any]:
        return {
            "ServiceId": self.service_id,
            "VpcEndpointId": self.vpc_endpoint_id,
            "VpcEndpointOwner": self.owner,
            "VpcEndpointState": self.state,
            "CreationTimestamp": self.creation_timestamp,
            "DnsEntries": [
                {"DnsName": d.get("dns_name", ""), "HostedZoneId": d.get("hosted_zone_id", "")}
                for d in self.dns_entries
            ],
            "NetworkLoadBalancerArns": list(self.network_load_balancer_arns),
            "GatewayLoadBalancerArns": list(self.gateway_load_balancer_arns),
            "IpAddressType": self.ip_address_type,
            "VpcEndpointConnectionId": self.connection_id,
            "Tags": list(self.tags),
            "VpcEndpointRegion": self.region,
        }


@dataclass
class Notification:
    """A connection notification (``vpce-nfn-…``), stored in the creating account's backend."""

    seq: int
    notification_id: str
    topic_arn: str
    events: list[str]
    service_id: str | None = None
    vpc_endpoint_id: str | None = None
    service_region: str | None = None
    state: str = "Enabled"
    notification_type: str = "Topic"

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ConnectionNotificationId": self.notification_id,
            "ConnectionNotificationType": self.notification_type,
            "ConnectionNotificationArn": self.topic_arn,
            "ConnectionEvents": list(self.events),
            "ConnectionNotificationState": self.state,
        }
        if self.service_id:
            out["ServiceId"] = self.service_id
        if self.vpc_endpoint_id:
            out["VpcEndpointId"] = self.vpc_endpoint_id
        if self.service_region:
            out["ServiceRegion"] = self.service_region
        return out


@dataclass
class EmulatorState:
    """Per (account, region) state, attached to moto's EC2 backend."""

    connections: dict[str, Connection] = field(default_factory=dict)
    """Connections to services of this backend, keyed by VPC endpoint ID, in creation order."""
    notifications: dict[str, Notification] = field(default_factory=dict)
    consumer_connections: dict[str, Connection] = field(default_factory=dict)
    """Connections of endpoints owned by this backend (consumer side), keyed by endpoint ID."""
    buckets: dict[str, Any] = field(default_factory=dict)
    """Throttle token buckets of this account-region, keyed by action."""


def state_of(backend: Any) -> EmulatorState:
    st = backend.__dict__.get(STATE_ATTR)
    if st is None:
        with LOCK:
            st = backend.__dict__.get(STATE_ATTR)
            if st is None:
                st = EmulatorState()
                setattr(backend, STATE_ATTR, st)
    assert isinstance(st, EmulatorState)
    return st


def ec2_backend(account_id: str, region: str) -> Any:
    from moto.ec2.models import ec2_backends

    return ec2_backends[account_id][region]


def existing_ec2_backends(region: str | None = None) -> Iterator[tuple[str, str, Any]]:
    """(account, region, backend) of every EC2 backend already created, without creating any."""
    from moto.ec2.models import ec2_backends

    for account_id, per_region in list(dict.items(ec2_backends)):
        for region_name, backend in list(dict.items(per_region)):
            if region is None or region_name == region:
                yield account_id, region_name, backend


def find_service(service_id: str, region: str | None = None) -> tuple[Any, Any] | None:
    """(service configuration, owning backend) for a service ID in any account."""
    for _acct, _reg, backend in existing_ec2_backends(region):
        config = backend.configurations.get(service_id)
        if config is not None:
            return config, backend
    return None


def find_service_by_name(service_name: str, region: str) -> tuple[Any, Any] | None:
    match = SERVICE_NAME_RE.match(service_name)
    if not match or match.group("region") != region:
        return None
    found = find_service(match.group("id"), region)
    if found and found[0].service_name == service_name:
        return found
    return None
