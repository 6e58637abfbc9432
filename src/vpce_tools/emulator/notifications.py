"""Connection notifications: CRUD and publishing to SNS (plus in-process listeners)."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from moto.moto_api._internal import mock_random

from .models import (
    EVENTS,
    LOCK,
    Connection,
    EmulatorError,
    Notification,
    ec2_backend,
    next_seq,
    state_of,
)

log = logging.getLogger(__name__)

SUBJECT = "Endpoint Connection State Change"
TOPIC_ARN_RE = re.compile(
    r"^arn:aws[a-z-]*:sns:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):[A-Za-z0-9_-]{1,256}(\.fifo)?$"
)

Listener = Callable[[str, str], None]
_listeners: list[Listener] = []


def add_listener(listener: Listener) -> None:
    """Call ``listener(topic_arn, message)`` after each notification is published."""
    with LOCK:
        if listener not in _listeners:
            _listeners.append(listener)


def remove_listener(listener: Listener) -> None:
    with LOCK:
        if listener in _listeners:
            _listeners.remove(listener)


def clear_listeners() -> None:
    with LOCK:
        _listeners.clear()


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def message_body(event: str, conn: Connection, topic_arn: str) -> str:
    return json.dumps(
        {
            "subject": SUBJECT,
            "eventType": event,
            "serviceId": conn.service_id,
            "vpcEndpointId": conn.vpc_endpoint_id,
            "vpcEndpointOwner": conn.owner,
            "vpcEndpointState": conn.state,
            "vpcEndpointRegion": conn.region,
            "connectionNotificationArn": topic_arn,
            "timestamp": _utc_now(),
        }
    )


Pending = list[tuple[str, str]]
"""(topic ARN, message) pairs collected under the lock, published after it is released."""


def collect(event: str, conn: Connection, provider_backend: Any) -> Pending:
    """Messages for ``event`` on ``conn``: service-level notifications of the provider and
    endpoint-level notifications of the consumer. Call with LOCK held."""
    out: Pending = []
    candidates: list[Notification] = [
        n
        for n in state_of(provider_backend).notifications.values()
        if n.service_id == conn.service_id
    ]
    if conn.endpoint is not None:
        consumer = ec2_backend(conn.owner, conn.region)
        candidates += [
            n
            for n in state_of(consumer).notifications.values()
            if n.vpc_endpoint_id == conn.vpc_endpoint_id
        ]
    for n in candidates:
        if n.state == "Enabled" and event in n.events:
            out.append((n.topic_arn, message_body(event, conn, n.topic_arn)))
    return out


def publish(pending: Pending) -> None:
    """Publish to SNS (in the topic's account and region), then call the listeners."""
    from moto.sns.models import sns_backends

    for topic_arn, message in pending:
        match = TOPIC_ARN_RE.match(topic_arn)
        if match is None:  # pragma: no cover - validated at creation
            continue
        sns = sns_backends[match.group("account")][match.group("region")]
        if topic_arn in sns.topics:
            try:
                sns.publish(message, arn=topic_arn, subject=SUBJECT)
            except Exception:  # AWS drops undeliverable notifications silently
                log.exception("publishing to %s failed", topic_arn)
        else:
            log.info("notification topic %s does not exist; message dropped", topic_arn)
        for listener in list(_listeners):
            listener(topic_arn, message)


# --- CRUD ---------------------------------------------------------------------------------------


def _validate_events(events: list[str]) -> list[str]:
    if not events:
        raise EmulatorError(
            "MissingParameter", "The request must contain the parameter ConnectionEvents"
        )
    for e in events:
        if e not in EVENTS:
            raise EmulatorError(
                "InvalidParameterValue",
                f"Invalid value '{e}' for ConnectionEvents. Valid values are: {', '.join(EVENTS)}.",
            )
    return list(dict.fromkeys(events))


def _validate_arn(arn: str | None) -> str:
    if not arn:
        raise EmulatorError(
            "MissingParameter", "The request must contain the parameter ConnectionNotificationArn"
        )
    if not TOPIC_ARN_RE.match(arn):
        raise EmulatorError(
            "InvalidParameterValue",
            f"Value ({arn}) for parameter ConnectionNotificationArn is invalid. "
            "Expected an SNS topic ARN.",
        )
    return arn


def create(
    account_id: str,
    region: str,
    service_id: str | None,
    vpc_endpoint_id: str | None,
    topic_arn: str | None,
    events: list[str],
) -> Notification:
    if bool(service_id) == bool(vpc_endpoint_id):
        raise EmulatorError(
            "InvalidParameterCombination",
            "Exactly one of ServiceId and VpcEndpointId must be specified",
        )
    arn = _validate_arn(topic_arn)
    evts = _validate_events(events)
    backend = ec2_backend(account_id, region)
    with LOCK:
        if service_id:
            if service_id not in backend.configurations:
                raise EmulatorError(
                    "InvalidVpcEndpointServiceId.NotFound",
                    f"The Vpc Endpoint Service Id '{service_id}' does not exist",
                )
        else:
            assert vpc_endpoint_id is not None
            ep = backend.vpc_end_points.get(vpc_endpoint_id)
            if ep is None:
                raise EmulatorError(
                    "InvalidVpcEndpointId.NotFound",
                    f"The VpcEndpoint Id '{vpc_endpoint_id}' does not exist",
                )
            if (ep.vpc_endpoint_type or "").lower() != "interface":
                raise EmulatorError(
                    "InvalidParameter",
                    "Connection notifications are supported for interface endpoints only",
                )
        n = Notification(
            seq=next_seq(),
            notification_id=f"vpce-nfn-{mock_random.get_random_hex(17)}",
            topic_arn=arn,
            events=evts,
            service_id=service_id,
            vpc_endpoint_id=vpc_endpoint_id,
            service_region=region if service_id else None,
        )
        state_of(backend).notifications[n.notification_id] = n
        return n


def _not_found(notification_id: str) -> EmulatorError:
    return EmulatorError(
        "InvalidConnectionNotification",
        f"The connection notification '{notification_id}' does not exist",
    )


NOTIFICATION_FILTERS: dict[str, Callable[[Notification], list[str]]] = {
    "connection-notification-arn": lambda n: [n.topic_arn],
    "connection-notification-id": lambda n: [n.notification_id],
    "connection-notification-state": lambda n: [n.state],
    "connection-notification-type": lambda n: [n.notification_type],
    "service-id": lambda n: [n.service_id or ""],
    "vpc-endpoint-id": lambda n: [n.vpc_endpoint_id or ""],
}


def describe(
    account_id: str,
    region: str,
    notification_id: str | None,
    filters: dict[str, list[str]],
) -> list[Notification]:
    from .connections import check_filters

    check_filters(filters, NOTIFICATION_FILTERS)
    with LOCK:
        items = list(state_of(ec2_backend(account_id, region)).notifications.values())
    if notification_id:
        items = [n for n in items if n.notification_id == notification_id]
        if not items:
            raise _not_found(notification_id)
    for name, values in filters.items():
        getter = NOTIFICATION_FILTERS[name]
        items = [n for n in items if set(getter(n)) & set(values)]
    return items


def modify(
    account_id: str,
    region: str,
    notification_id: str | None,
    topic_arn: str | None,
    events: list[str] | None,
) -> None:
    if not notification_id:
        raise EmulatorError(
            "MissingParameter", "The request must contain the parameter ConnectionNotificationId"
        )
    arn = _validate_arn(topic_arn) if topic_arn else None
    evts = _validate_events(events) if events else None
    with LOCK:
        n = state_of(ec2_backend(account_id, region)).notifications.get(notification_id)
        if n is None:
            raise _not_found(notification_id)
        if arn:
            n.topic_arn = arn
        if evts:
            n.events = evts


def delete(account_id: str, region: str, ids: list[str]) -> list[dict[str, Any]]:
    unsuccessful: list[dict[str, Any]] = []
    with LOCK:
        store = state_of(ec2_backend(account_id, region)).notifications
        for nid in ids:
            if store.pop(nid, None) is None:
                err = _not_found(nid)
                unsuccessful.append(
                    {"ResourceId": nid, "Error": {"Code": err.code, "Message": err.message}}
                )
    return unsuccessful
