"""Ensure, like a controller: a managed service keeps `AcceptanceRequired` on, its managed tag,
and a complete connection notification to the deployment's topic."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from ..converge import Deps
from ..registry import iso
from ..tables import RegistryItem
from .report import ServiceSweep

log = logging.getLogger("vpce_approver.sweep")

CONNECTION_EVENTS = ("Connect", "Accept", "Reject", "Delete")
MANAGED_TAG_KEY = "vpce-approver:managed"


def _notifications(client: Any, service_id: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"Filters": [{"Name": "service-id", "Values": [service_id]}]}
    while True:
        response = client.describe_vpc_endpoint_connection_notifications(**kwargs)
        out += response.get("ConnectionNotificationSet", [])
        if not response.get("NextToken"):
            return out
        kwargs["NextToken"] = response["NextToken"]


def _set_notification_id(enrollment: RegistryItem, notification_id: str, now: datetime) -> None:
    enrollment.update(
        actions=[
            RegistryItem.notification_id.set(notification_id),
            RegistryItem.updated_by.set("sweep"),
            RegistryItem.updated_at.set(iso(now)),
        ]
    )


def ensure_service(
    enrollment: RegistryItem, deps: Deps, *, act: bool, result: ServiceSweep
) -> None:
    """Acceptance required on, the notification to the deployment's topic in place. Fixes go to
    result.fixes ("would …" when not acting); what cannot be fixed goes to result.warnings."""
    service_id = str(enrollment.service_id)
    client = deps.ec2.client
    configs = client.describe_vpc_endpoint_service_configurations(ServiceIds=[service_id])
    [config] = configs["ServiceConfigurations"]
    if not config.get("AcceptanceRequired"):
        if act:
            client.modify_vpc_endpoint_service_configuration(
                ServiceId=service_id, AcceptanceRequired=True
            )
        result.fixes.append(
            "acceptance_required turned back on" if act else "would turn acceptance_required on"
        )
    tags = {t.get("Key"): t.get("Value") for t in config.get("Tags", [])}
    # Not fixed here: ec2:CreateTags would let this function mark any service as managed.
    expected = deps.settings.deployment_name
    if MANAGED_TAG_KEY not in tags:
        result.warnings.append(
            f"tag {MANAGED_TAG_KEY} is missing: IAM will refuse Accept/Reject on this service"
        )
    elif expected and tags[MANAGED_TAG_KEY] != expected:
        result.warnings.append(
            f"tag {MANAGED_TAG_KEY}={tags[MANAGED_TAG_KEY]} names another deployment than"
            f" {expected}: IAM will refuse Accept/Reject on this service"
        )

    _ensure_notification(enrollment, deps, act=act, result=result)


def _complete(note: dict[str, Any]) -> bool:
    return set(CONNECTION_EVENTS) <= set(note.get("ConnectionEvents", []))


def _ensure_notification(
    enrollment: RegistryItem, deps: Deps, *, act: bool, result: ServiceSweep
) -> None:
    """A notification of all four events to the deployment's topic. One that lost events is not
    modified (ModifyVpcEndpointConnectionNotification cannot be scoped to managed services: it
    would let this function redirect any notification of the account); a complete one is
    created next to it instead (duplicate hints are harmless: converge is idempotent)."""
    service_id = str(enrollment.service_id)
    client = deps.ec2.client
    topic = deps.settings.notification_topic_arn
    notes = _notifications(client, service_id)
    if topic:
        mine = [n for n in notes if n.get("ConnectionNotificationArn") == topic]
    else:
        mine = [n for n in notes if n.get("ConnectionNotificationId") == enrollment.notification_id]
    complete = [n for n in mine if _complete(n)]
    if complete:
        note = complete[0]
        notification_id = str(note["ConnectionNotificationId"])
        state = str(note.get("ConnectionNotificationState", "Enabled"))
        if state.lower() != "enabled":
            result.warnings.append(
                f"connection notification {notification_id} is {state}"
                " (check the topic, its policy and its key)"
            )
        if enrollment.notification_id != notification_id:
            if act:
                _set_notification_id(enrollment, notification_id, deps.clock())
            verb = "set" if act else "would be set"
            result.fixes.append(f"enrollment notification_id {verb} to {notification_id}")
        return
    if mine:
        old = mine[0]
        lacks = [e for e in CONNECTION_EVENTS if e not in set(old.get("ConnectionEvents", []))]
        why = f" ({old['ConnectionNotificationId']} lacks {', '.join(lacks)})"
        would, done = "would create a complete connection notification", "created"
    else:
        why, would, done = "", "would recreate the connection notification", "recreated"
    if not topic:
        result.warnings.append(
            f"connection notification missing or incomplete{why}: cannot fix it,"
            " NOTIFICATION_TOPIC_ARN is not set"
        )
        return
    if not act:
        result.fixes.append(f"{would}{why}")
        return
    created = client.create_vpc_endpoint_connection_notification(
        ServiceId=service_id,
        ConnectionNotificationArn=topic,
        ConnectionEvents=list(CONNECTION_EVENTS),
    )["ConnectionNotification"]
    notification_id = str(created["ConnectionNotificationId"])
    _set_notification_id(enrollment, notification_id, deps.clock())
    result.fixes.append(f"connection notification {done} ({notification_id}){why}")
