"""Endpoint connections: creation from CreateVpcEndpoint, describe, accept, reject, delete."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from moto.core.utils import utcnow
from moto.ec2.utils import random_vpc_ep_id
from moto.moto_api._internal import mock_random
from moto.utilities.utils import get_partition

from . import notifications
from .models import (
    ALL_STATES,
    AVAILABLE,
    LOCK,
    PENDING,
    PENDING_ACCEPTANCE,
    REJECTED,
    VPCE_ID_RE,
    Connection,
    EmulatorError,
    ec2_backend,
    find_service,
    find_service_by_name,
    next_seq,
    state_of,
)

MIN_RESULTS = 5
MAX_RESULTS = 1000
ENDPOINT_NOT_FOUND = "InvalidVpcEndpoint.NotFound"


class _Settings:
    pending_reads = 0


def configure_acceptance(pending_reads: int = 0) -> None:
    """After an accept, the connection reports ``pending`` for ``pending_reads`` Describe reads,
    then ``available``. Default 0: the first Describe after the accept already sees
    ``available``."""
    if pending_reads < 0:
        raise ValueError("pending_reads must be >= 0")
    _Settings.pending_reads = pending_reads


# --- callers and principals -----------------------------------------------------------------

_ASSUMED_ROLE_RE = re.compile(
    r"^arn:(?P<p>aws[a-z-]*):sts::(?P<acct>\d{12}):assumed-role/(?P<role>[^/]+)/.+$"
)


def caller_arn(access_key: str, account_id: str, region: str) -> str:
    """The ARN moto's STS GetCallerIdentity would report for these credentials."""
    from moto.sts.models import sts_backends

    _uid, arn, _acct = sts_backends[account_id][get_partition(region)].get_caller_identity(
        access_key, region
    )
    return str(arn)


def principal_allowed(
    principals: Sequence[str], owner_account: str, caller_account: str, arn: str
) -> bool:
    """AWS's rule for creating an endpoint to a service with these allowed principals."""
    if caller_account == owner_account or "*" in principals:
        return True
    allowed = set(principals)
    candidates = {arn, f"arn:aws:iam::{caller_account}:root"}
    m = _ASSUMED_ROLE_RE.match(arn)
    if m:
        candidates.add(f"arn:{m['p']}:iam::{m['acct']}:role/{m['role']}")
    return bool(candidates & allowed)


def _invalid_service_name(name: str) -> EmulatorError:
    return EmulatorError("InvalidServiceName", f"The Vpc Endpoint Service '{name}' does not exist")


def resolve_service(
    service_name: str,
    consumer_account: str,
    consumer_region: str,
    service_region: str,
    arn: str,
) -> tuple[Any, Any]:
    """(service configuration, provider backend) for an endpoint the caller may create.

    Unknown services and services that do not allow the caller both answer
    ``InvalidServiceName`` (AWS hides services you may not see)."""
    found = find_service_by_name(service_name, service_region)
    if found is None:
        raise _invalid_service_name(service_name)
    config, backend = found
    if service_region != consumer_region and consumer_region not in config._supported_region_names:
        raise _invalid_service_name(service_name)
    if not principal_allowed(config.principals, backend.account_id, consumer_account, arn):
        raise _invalid_service_name(service_name)
    return config, backend


def create_connection(
    config: Any,
    provider_backend: Any,
    endpoint: Any,
    consumer_account: str,
    consumer_region: str,
    arn: str | None,
) -> notifications.Pending:
    state = PENDING_ACCEPTANCE if config.acceptance_required else AVAILABLE
    with LOCK:
        conn = Connection(
            seq=next_seq(),
            service_id=config.id,
            vpc_endpoint_id=endpoint.id,
            owner=consumer_account,
            region=consumer_region,
            service_owner=provider_backend.account_id,
            service_region=provider_backend.region_name,
            state=state,
            creation_timestamp=endpoint.creation_timestamp,
            connection_id=f"vpce-con-{mock_random.get_random_hex(17)}",
            dns_entries=list(endpoint.dns_entries or []),
            network_load_balancer_arns=list(config.network_load_balancer_arns),
            gateway_load_balancer_arns=list(config.gateway_load_balancer_arns),
            caller_arn=arn,
            endpoint=endpoint,
        )
        conn.set_state(state)
        state_of(provider_backend).connections[conn.vpc_endpoint_id] = conn
        state_of(ec2_backend(consumer_account, consumer_region)).consumer_connections[
            conn.vpc_endpoint_id
        ] = conn
        return notifications.collect("Connect", conn, provider_backend)


# --- describe -------------------------------------------------------------------------------


def check_filters(filters: dict[str, list[str]], known: dict[str, Any]) -> None:
    for name in filters:
        if name not in known:
            raise EmulatorError("InvalidParameterValue", f"The filter '{name}' is invalid")


def _region_values(c: Connection) -> list[str]:
    return [c.region, "cross-region"] if c.region != c.service_region else [c.region]


CONNECTION_FILTERS: dict[str, Callable[[Connection], list[str]]] = {
    "service-id": lambda c: [c.service_id],
    "vpc-endpoint-owner": lambda c: [c.owner],
    "vpc-endpoint-state": lambda c: [c.state.lower()],
    "vpc-endpoint-id": lambda c: [c.vpc_endpoint_id],
    "vpc-endpoint-region": _region_values,
    "ip-address-type": lambda c: [c.ip_address_type],
    # Emulated connections are endpoint connections, never transit gateway attachments.
    "transit-gateway-attachment-id": lambda c: [],
}
"""Every filter botocore's model documents for DescribeVpcEndpointConnections."""
_CASE_INSENSITIVE = {"vpc-endpoint-state"}


def check_max_results(max_results: Any) -> int:
    """Page size: 1000 when absent; below 5 (or not a number) is an error; above 1000 is capped
    at 1000 (AWS: "if MaxResults is given a value larger than 1,000, only 1,000 results are
    returned")."""
    if max_results is None:
        return MAX_RESULTS
    try:
        value = int(max_results)
    except (TypeError, ValueError):
        value = -1
    if value > MAX_RESULTS:
        return MAX_RESULTS
    if value < MIN_RESULTS:
        raise EmulatorError(
            "InvalidParameterValue",
            f"Value ( {max_results} ) for parameter maxResults is invalid. "
            f"Parameter must be between {MIN_RESULTS} and {MAX_RESULTS}.",
        )
    return value


def encode_token(seq: int) -> str:
    raw = json.dumps({"v": 1, "after": seq}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str) -> int:
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        after = data["after"]
        if data.get("v") != 1 or not isinstance(after, int):
            raise ValueError(token)
        return after
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise EmulatorError(
            "InvalidPaginationToken",
            f"Invalid pagination token: {token}",
        ) from None


def paginate[T](
    items: list[T], seq_of: Callable[[T], int], max_results: int, next_token: str | None
) -> tuple[list[T], str | None]:
    if next_token:
        after = decode_token(next_token)
        items = [i for i in items if seq_of(i) > after]
    page = items[:max_results]
    token = encode_token(seq_of(page[-1])) if len(items) > max_results else None
    return page, token


def describe(
    account_id: str,
    region: str,
    filters: dict[str, list[str]],
    max_results: Any,
    next_token: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    check_filters(filters, CONNECTION_FILTERS)
    limit = check_max_results(max_results)
    with LOCK:
        conns = list(state_of(ec2_backend(account_id, region)).connections.values())
        for c in conns:
            c.advance_on_read()
        for name, values in filters.items():
            getter = CONNECTION_FILTERS[name]
            wanted = {v.lower() for v in values} if name in _CASE_INSENSITIVE else set(values)
            conns = [c for c in conns if set(getter(c)) & wanted]
        page, token = paginate(conns, lambda c: c.seq, limit, next_token)
        return [c.to_wire() for c in page], token


def advance_consumer_reads(account_id: str, region: str) -> None:
    """A consumer-side DescribeVpcEndpoints is a read too."""
    with LOCK:
        for c in state_of(ec2_backend(account_id, region)).consumer_connections.values():
            c.advance_on_read()


# --- accept / reject ------------------------------------------------------------------------


def _item(resource_id: str, code: str, message: str) -> dict[str, Any]:
    return {"ResourceId": resource_id, "Error": {"Code": code, "Message": message}}


def _malformed(vid: str) -> dict[str, Any]:
    return _item(
        vid, "InvalidVpcEndpointId.Malformed", f'Invalid id: "{vid}" (expecting "vpce-...")'
    )


def _not_found(vid: str) -> dict[str, Any]:
    return _item(
        vid, "InvalidVpcEndpointId.NotFound", f"The Vpc Endpoint Id '{vid}' does not exist"
    )


def _owned_service(account_id: str, region: str, service_id: str | None) -> Any:
    backend = ec2_backend(account_id, region)
    if not service_id or service_id not in backend.configurations:
        raise EmulatorError(
            "InvalidVpcEndpointServiceId.NotFound",
            f"The Vpc Endpoint Service Id '{service_id}' does not exist",
        )
    return backend


def _transition(
    account_id: str,
    region: str,
    service_id: str | None,
    ids: list[str],
    allowed_from: tuple[str, ...],
    verb: str,
    event: str,
    target: str,
) -> tuple[list[dict[str, Any]], notifications.Pending]:
    backend = _owned_service(account_id, region, service_id)
    unsuccessful: list[dict[str, Any]] = []
    pending: notifications.Pending = []
    with LOCK:
        store = state_of(backend).connections
        for vid in dict.fromkeys(ids):
            if not VPCE_ID_RE.match(vid):
                unsuccessful.append(_malformed(vid))
                continue
            conn = store.get(vid)
            if conn is None or conn.service_id != service_id:
                unsuccessful.append(_not_found(vid))
                continue
            if conn.state not in allowed_from:
                unsuccessful.append(
                    _item(
                        vid,
                        "InvalidState",
                        f"Vpc Endpoint '{vid}' is in state '{conn.state}' and cannot be {verb}",
                    )
                )
                continue
            conn.set_state(target)
            if target == PENDING:
                conn.reads_until_available = _Settings.pending_reads
            pending += notifications.collect(event, conn, backend)
    return unsuccessful, pending


def accept(
    account_id: str, region: str, service_id: str | None, ids: list[str]
) -> tuple[list[dict[str, Any]], notifications.Pending]:
    return _transition(
        account_id, region, service_id, ids, (PENDING_ACCEPTANCE,), "accepted", "Accept", PENDING
    )


def reject(
    account_id: str, region: str, service_id: str | None, ids: list[str]
) -> tuple[list[dict[str, Any]], notifications.Pending]:
    return _transition(
        account_id,
        region,
        service_id,
        ids,
        (PENDING_ACCEPTANCE, PENDING, AVAILABLE),
        "rejected",
        "Reject",
        REJECTED,
    )


# --- delete (consumer side) -----------------------------------------------------------------


def _endpoint_not_found(vid: str) -> dict[str, Any]:
    """DeleteVpcEndpoints' code for an unknown ID (not the ``InvalidVpcEndpointId.NotFound`` of
    the connection calls; see docs/EMULATOR.md for the evidence)."""
    return _item(vid, ENDPOINT_NOT_FOUND, f"The VPC endpoint '{vid}' does not exist")


def delete_endpoints(account_id: str, region: str, ids: list[str]) -> list[dict[str, Any]]:
    """Validate the IDs (per-ID ``Unsuccessful`` items), then let moto's backend delete the rest;
    the backend hook (:mod:`.backend_hooks`) marks their connections ``deleted`` and notifies."""
    backend = ec2_backend(account_id, region)
    unsuccessful: list[dict[str, Any]] = []
    valid: list[str] = []
    for vid in dict.fromkeys(ids):
        if not VPCE_ID_RE.match(vid):
            unsuccessful.append(_malformed(vid))
        elif vid not in backend.vpc_end_points:
            unsuccessful.append(_endpoint_not_found(vid))
        else:
            valid.append(vid)
    backend.delete_vpc_endpoints(vpce_ids=valid)
    return unsuccessful


# --- test-only bulk seeding -----------------------------------------------------------------


def seed_connections(
    service_id: str,
    owners: Sequence[str],
    n: int,
    state: str = PENDING_ACCEPTANCE,
    region: str | None = None,
    consumer_region: str | None = None,
) -> list[str]:
    """TEST ONLY: add ``n`` connections to ``service_id`` without any API call.

    Owners are used round-robin. Seeded connections have no consumer-side endpoint object (the
    consumer cannot describe or delete them) and publish no notifications; provider-side
    Describe/Accept/Reject treat them like any other connection. Returns the endpoint IDs in
    creation order. Must run where moto's backends live (inside ``mock_aws`` or in the process
    that runs the server)."""
    if state not in ALL_STATES:
        raise ValueError(f"unknown state {state!r}")
    if not owners:
        raise ValueError("owners must not be empty")
    found = find_service(service_id, region)
    if found is None:
        raise LookupError(f"endpoint service {service_id} not found")
    config, backend = found
    ids: list[str] = []
    now = utcnow()
    with LOCK:
        store = state_of(backend).connections
        for i in range(n):
            vid = random_vpc_ep_id()
            store[vid] = Connection(
                seq=next_seq(),
                service_id=service_id,
                vpc_endpoint_id=vid,
                owner=owners[i % len(owners)],
                region=consumer_region or backend.region_name,
                service_owner=backend.account_id,
                service_region=backend.region_name,
                state=state,
                creation_timestamp=now,
                connection_id=f"vpce-con-{mock_random.get_random_hex(17)}",
                network_load_balancer_arns=list(config.network_load_balancer_arns),
                gateway_load_balancer_arns=list(config.gateway_load_balancer_arns),
            )
            ids.append(vid)
    return ids
