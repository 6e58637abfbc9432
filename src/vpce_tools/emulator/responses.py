"""EC2 query-API handlers added to (or wrapped around) moto's ``EC2Response``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from moto.core.responses import ActionResult
from moto.ec2.responses import EC2Response

from . import backend_hooks, connections, notifications, throttle
from .models import EmulatorError

_ORIGINALS: dict[str, Callable[..., Any]] = {}

_THROTTLE_ERROR = EmulatorError("RequestLimitExceeded", "Request limit exceeded.")


def _throttle_response(self: Any, action: str) -> Any:
    """None when the call may proceed, else a 503 RequestLimitExceeded response tuple."""
    if throttle.take(self.current_account, self.region, action):
        return None
    _status, headers, body = self.serialized(ActionResult(_THROTTLE_ERROR))
    headers = dict(headers)
    headers["status"] = 503
    return 503, headers, body


def _dry_run(self: Any) -> None:
    self.error_on_dryrun()


class PrivateLinkResponses:
    """Methods copied onto ``EC2Response`` by :func:`install`."""

    # -- consumer side ---------------------------------------------------------------------

    def create_vpc_endpoint(self: Any) -> Any:
        """Interface endpoints to ``vpce-svc`` services: honour ``DryRun`` (nothing is created),
        then let moto create the endpoint; the backend hook resolves the service (allowed
        principals, ``ServiceRegion``) first and adds the connection. Anything else is moto's."""
        original = _ORIGINALS["create_vpc_endpoint"]
        if not backend_hooks.is_private_link(
            self._get_param("VpcEndpointType") or "Gateway", self._get_param("ServiceName")
        ):
            return original(self)
        _dry_run(self)
        account, region = self.current_account, self.region
        request = backend_hooks.CreateRequest(
            account_id=account,
            region=region,
            service_region=self._get_param("ServiceRegion") or region,
            caller_arn=connections.caller_arn(self.access_key, account, region),
        )
        with backend_hooks.request_context(request):
            return original(self)

    def describe_vpc_endpoints(self: Any) -> Any:
        connections.advance_consumer_reads(self.current_account, self.region)
        return _ORIGINALS["describe_vpc_endpoints"](self)

    def delete_vpc_endpoints(self: Any) -> Any:
        _dry_run(self)
        ids = self._get_param("VpcEndpointIds", []) or []
        unsuccessful = connections.delete_endpoints(self.current_account, self.region, ids)
        return ActionResult({"Unsuccessful": unsuccessful})

    # -- provider side ---------------------------------------------------------------------

    def describe_vpc_endpoint_connections(self: Any) -> Any:
        _dry_run(self)
        items, token = connections.describe(
            self.current_account,
            self.region,
            self._filters_from_querystring(),
            self._get_param("MaxResults"),
            self._get_param("NextToken"),
        )
        out: dict[str, Any] = {"VpcEndpointConnections": items}
        if token:
            out["NextToken"] = token
        return ActionResult(out)

    def accept_vpc_endpoint_connections(self: Any) -> Any:
        throttled = _throttle_response(self, "AcceptVpcEndpointConnections")
        if throttled is not None:
            return throttled
        _dry_run(self)
        unsuccessful, pending = connections.accept(
            self.current_account,
            self.region,
            self._get_param("ServiceId"),
            self._get_param("VpcEndpointIds", []) or [],
        )
        notifications.publish(pending)
        return ActionResult({"Unsuccessful": unsuccessful})

    def reject_vpc_endpoint_connections(self: Any) -> Any:
        throttled = _throttle_response(self, "RejectVpcEndpointConnections")
        if throttled is not None:
            return throttled
        _dry_run(self)
        unsuccessful, pending = connections.reject(
            self.current_account,
            self.region,
            self._get_param("ServiceId"),
            self._get_param("VpcEndpointIds", []) or [],
        )
        notifications.publish(pending)
        return ActionResult({"Unsuccessful": unsuccessful})

    # -- connection notifications ----------------------------------------------------------

    def create_vpc_endpoint_connection_notification(self: Any) -> Any:
        _dry_run(self)
        n = notifications.create(
            self.current_account,
            self.region,
            self._get_param("ServiceId"),
            self._get_param("VpcEndpointId"),
            self._get_param("ConnectionNotificationArn"),
            self._get_param("ConnectionEvents", []) or [],
        )
        out: dict[str, Any] = {"ConnectionNotification": n.to_wire()}
        token = self._get_param("ClientToken")
        if token:
            out["ClientToken"] = token
        return ActionResult(out)

    def describe_vpc_endpoint_connection_notifications(self: Any) -> Any:
        _dry_run(self)
        limit = connections.check_max_results(self._get_param("MaxResults"))
        items = notifications.describe(
            self.current_account,
            self.region,
            self._get_param("ConnectionNotificationId"),
            self._filters_from_querystring(),
        )
        page, token = connections.paginate(
            items, lambda n: n.seq, limit, self._get_param("NextToken")
        )
        out: dict[str, Any] = {"ConnectionNotificationSet": [n.to_wire() for n in page]}
        if token:
            out["NextToken"] = token
        return ActionResult(out)

    def modify_vpc_endpoint_connection_notification(self: Any) -> Any:
        _dry_run(self)
        notifications.modify(
            self.current_account,
            self.region,
            self._get_param("ConnectionNotificationId"),
            self._get_param("ConnectionNotificationArn"),
            self._get_param("ConnectionEvents"),
        )
        return ActionResult({"ReturnValue": True})

    def delete_vpc_endpoint_connection_notifications(self: Any) -> Any:
        _dry_run(self)
        unsuccessful = notifications.delete(
            self.current_account,
            self.region,
            self._get_param("ConnectionNotificationIds", []) or [],
        )
        return ActionResult({"Unsuccessful": unsuccessful})


WRAPPED = ("create_vpc_endpoint", "describe_vpc_endpoints", "delete_vpc_endpoints")


def patch_ec2_response() -> None:
    """Idempotently attach the handlers to ``EC2Response``."""
    for name, func in vars(PrivateLinkResponses).items():
        if not callable(func) or name.startswith("_"):
            continue
        current = EC2Response.__dict__.get(name)
        if current is func:
            continue
        if name in WRAPPED and name not in _ORIGINALS:
            _ORIGINALS[name] = getattr(EC2Response, name)
        setattr(EC2Response, name, func)
