"""Model-level hooks: wrap moto's ``VPCBackend`` so every path that creates or deletes an
endpoint keeps the provider-side connection in step.

``CreateVpcEndpoint`` over the API is only one way moto creates an endpoint: CloudFormation
(``AWS::EC2::VPCEndpoint`` through moto's cloudformation backend) and code that calls
``ec2_backends[account][region].create_vpc_endpoint(...)`` go straight to the model. Hooking the
model means an Interface endpoint to a ``com.amazonaws.vpce.<region>.vpce-svc-…`` service gets
its connection (and Connect notification) however it was made, and an unknown or forbidden
service is refused before moto creates anything.

The API handler passes what only the request knows (``ServiceRegion``, the caller's ARN) through
:func:`request_context`; other paths act as the account itself (``arn:aws:iam::<acct>:root``) and
reach services of their own region only.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from moto.ec2.models.vpcs import VPCBackend

from . import connections, notifications
from .models import DELETED, LOCK, ec2_backend, state_of

SERVICE_NAME_PREFIX = "com.amazonaws.vpce."


@dataclass(frozen=True)
class CreateRequest:
    """What the API request adds to a model-level create."""

    account_id: str
    region: str
    service_region: str
    caller_arn: str


_REQUEST: ContextVar[CreateRequest | None] = ContextVar("vpce_emulator_create", default=None)


@contextmanager
def request_context(request: CreateRequest) -> Iterator[None]:
    token = _REQUEST.set(request)
    try:
        yield
    finally:
        _REQUEST.reset(token)


def is_private_link(endpoint_type: Any, service_name: Any) -> bool:
    """Interface endpoints to endpoint services are the emulator's; everything else is moto's."""
    return (
        isinstance(endpoint_type, str)
        and endpoint_type.lower() == "interface"
        and isinstance(service_name, str)
        and service_name.startswith(SERVICE_NAME_PREFIX)
    )


_ORIGINALS: dict[str, Callable[..., Any]] = {}
_SIGNATURES: dict[str, inspect.Signature] = {}


def _arguments(name: str, self: Any, args: Any, kwargs: Any) -> dict[str, Any]:
    """The original method's arguments by name, however the caller passed them."""
    return dict(_SIGNATURES[name].bind(self, *args, **kwargs).arguments)


def _create_vpc_endpoint(self: Any, *args: Any, **kwargs: Any) -> Any:
    original = _ORIGINALS["create_vpc_endpoint"]
    arguments = _arguments("create_vpc_endpoint", self, args, kwargs)
    service_name = arguments.get("service_name")
    if not is_private_link(arguments.get("endpoint_type"), service_name):
        return original(self, *args, **kwargs)
    account_id, region = self.account_id, self.region_name
    request = _REQUEST.get()
    if request is not None and (request.account_id, request.region) != (account_id, region):
        request = None
    service_region = request.service_region if request else region
    arn = request.caller_arn if request else f"arn:aws:iam::{account_id}:root"
    config, provider = connections.resolve_service(
        str(service_name), account_id, region, service_region, arn
    )
    endpoint = original(self, *args, **kwargs)
    pending = connections.create_connection(config, provider, endpoint, account_id, region, arn)
    notifications.publish(pending)
    return endpoint


def _delete_vpc_endpoints(self: Any, *args: Any, **kwargs: Any) -> Any:
    original = _ORIGINALS["delete_vpc_endpoints"]
    ids = list(_arguments("delete_vpc_endpoints", self, args, kwargs).get("vpce_ids") or [])
    result = original(self, *args, **kwargs)
    pending: notifications.Pending = []
    with LOCK:
        consumer = state_of(self).consumer_connections
        for vid in dict.fromkeys(ids):
            conn = consumer.get(vid)
            endpoint = self.vpc_end_points.get(vid)
            if conn is None or conn.state == DELETED or endpoint is None:
                continue
            if endpoint.state != DELETED:  # moto refused to delete it: leave the connection be
                continue
            conn.set_state(DELETED)
            provider = ec2_backend(conn.service_owner, conn.service_region)
            pending += notifications.collect("Delete", conn, provider)
    notifications.publish(pending)
    return result


_HOOKS: dict[str, Callable[..., Any]] = {
    "create_vpc_endpoint": _create_vpc_endpoint,
    "delete_vpc_endpoints": _delete_vpc_endpoints,
}


def patch_backend() -> None:
    """Idempotently wrap ``VPCBackend.create_vpc_endpoint`` / ``delete_vpc_endpoints``."""
    for name, hook in _HOOKS.items():
        current = VPCBackend.__dict__.get(name)
        if current is hook:
            continue
        if name not in _ORIGINALS:
            _ORIGINALS[name] = getattr(VPCBackend, name)
            _SIGNATURES[name] = inspect.signature(_ORIGINALS[name])
        setattr(VPCBackend, name, hook)
