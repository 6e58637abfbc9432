"""`vpce-approver services`: the endpoint services this deployment manages.

Enrolling a service: tag it `vpce-approver:managed=<stack>` (what the functions' IAM keys on), put
the connection notification to the deployment's SNS topic in place, and record the enrollment in
the registry (Registry.enroll). No template change and no IAM change per service."""

from __future__ import annotations

import argparse
import re
import sys
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from vpce_approver import validation as v
from vpce_approver.config import Settings
from vpce_tools.cli import UsageError

from . import _support as s

CONNECTION_EVENTS = ["Accept", "Connect", "Delete", "Reject"]
TOPIC_ARN_RE = re.compile(r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$")
TOPIC_OUTPUT = "NotificationTopicArn"


def register(subs: Any) -> None:
    p: argparse.ArgumentParser = subs.add_parser(
        "services", help="the endpoint services this deployment manages"
    )
    cmds = p.add_subparsers(dest="services_command", metavar="ACTION", required=True)

    add = cmds.add_parser("add", help="enroll a service: tag, connection notification, record")
    add.add_argument("service", help="vpce-svc-… (a service of this account and region)")
    add.add_argument("--name", help="a friendly name")
    add.add_argument(
        "--topic-arn",
        help="SNS topic for connection notifications (default: NOTIFICATION_TOPIC_ARN, else the"
        f" stack's {TOPIC_OUTPUT} output)",
    )
    add.add_argument(
        "--force", action="store_true", help="take over a service tagged for another stack"
    )
    add.add_argument("--by", help="who makes the change (default: your AWS identity)")
    add.set_defaults(run=run_add)

    ls = cmds.add_parser("list", help="managed services and their live state")
    s.add_format(ls)
    ls.set_defaults(run=run_list)

    rm = cmds.add_parser("remove", help="stop managing a service (its grants stay)")
    rm.add_argument("service", help="vpce-svc-…")
    rm.add_argument(
        "--keep-notification", action="store_true", help="leave the connection notification"
    )
    rm.set_defaults(run=run_remove)


def service_id_arg(raw: str) -> str:
    try:
        return v.service_id(raw, field="service")
    except v.ValidationError as exc:
        raise UsageError(str(exc)) from None


def describe_service(ec2: Any, service_id: str, settings: Settings | None = None) -> dict[str, Any]:
    try:
        found = ec2.describe_vpc_endpoint_service_configurations(ServiceIds=[service_id])
    except ClientError as exc:
        if "NotFound" in exc.response.get("Error", {}).get("Code", ""):
            found = {"ServiceConfigurations": []}
        else:
            raise
    configs = [c for c in found.get("ServiceConfigurations", []) if c["ServiceId"] == service_id]
    if not configs:
        place = s.where(settings) if settings is not None else "this account and region"
        raise UsageError(
            f"service {service_id} not found among the endpoint services of {place}"
            " (check --region and your credentials: the provider's account owns the service)"
        )
    return dict(configs[0])


def discover_topic(settings: Settings, stack: str) -> str:
    """The deployment's notification topic: NOTIFICATION_TOPIC_ARN, else the stack output."""
    if settings.notification_topic_arn:
        return settings.notification_topic_arn
    why = ""
    try:
        stacks = s.client("cloudformation", settings).describe_stacks(StackName=stack)["Stacks"]
        for output in stacks[0].get("Outputs", []) if stacks else []:
            if output.get("OutputKey") == TOPIC_OUTPUT:
                return str(output["OutputValue"])
        why = f"stack {stack} has no {TOPIC_OUTPUT} output"
    except (ClientError, BotoCoreError) as exc:
        why = f"could not read stack {stack} from CloudFormation ({exc})"
    raise UsageError(f"no notification topic: pass --topic-arn ({why})")


def ensure_notification(ec2: Any, service_id: str, topic_arn: str) -> tuple[str, str]:
    """Reuse the service's notification to this topic (adding missing events) or create one.
    Returns (notification id, what happened)."""
    existing = ec2.describe_vpc_endpoint_connection_notifications(
        Filters=[{"Name": "service-id", "Values": [service_id]}]
    ).get("ConnectionNotificationSet", [])
    for item in existing:
        if item.get("ConnectionNotificationArn") != topic_arn:
            continue
        notification_id = str(item["ConnectionNotificationId"])
        if set(item.get("ConnectionEvents", [])) >= set(CONNECTION_EVENTS):
            return notification_id, "already in place"
        ec2.modify_vpc_endpoint_connection_notification(
            ConnectionNotificationId=notification_id, ConnectionEvents=CONNECTION_EVENTS
        )
        return notification_id, "events completed"
    created = ec2.create_vpc_endpoint_connection_notification(
        ServiceId=service_id,
        ConnectionNotificationArn=topic_arn,
        ConnectionEvents=CONNECTION_EVENTS,
    )["ConnectionNotification"]
    return str(created["ConnectionNotificationId"]), "created"


def _tags(config: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in config.get("Tags", []) if "Key" in t}


@s.aws_errors
def run_add(args: argparse.Namespace) -> int:
    service_id = service_id_arg(args.service)
    settings = s.settings(args)
    ec2 = s.client("ec2", settings)
    config = describe_service(ec2, service_id, settings)
    owner = _tags(config).get(s.MANAGED_TAG_KEY)
    if owner and owner != args.stack and not args.force:
        raise UsageError(
            f"{service_id} is managed by stack {owner!r}, not {args.stack!r} (--force to take over)"
        )
    topic = args.topic_arn or discover_topic(settings, args.stack)
    if not TOPIC_ARN_RE.fullmatch(topic):
        raise UsageError(f"--topic-arn {topic!r} is not an SNS topic ARN")
    deps = s.deps(args)
    ec2.create_tags(Resources=[service_id], Tags=[{"Key": s.MANAGED_TAG_KEY, "Value": args.stack}])
    notification_id, how = ensure_notification(ec2, service_id, topic)
    deps.registry.enroll(
        service_id,
        name=args.name,
        notification_id=notification_id,
        by=s.actor(args, settings),
        now=datetime.now(UTC),
    )
    print(f"enrolled {service_id}" + (f" ({args.name})" if args.name else ""))
    print(f"  tag {s.MANAGED_TAG_KEY}={args.stack}")
    print(f"  connection notification {notification_id} -> {topic} ({how})")
    if not config.get("AcceptanceRequired"):
        print(
            "  warning: acceptance is not required on this service: connections are accepted"
            " automatically and the approver decides nothing",
            file=sys.stderr,
        )
    return 0


@s.aws_errors
def run_list(args: argparse.Namespace) -> int:
    settings = s.settings(args)
    deps = s.deps(args)
    items = deps.registry.managed_services()
    configs: dict[str, dict[str, Any]] = {}
    if items:
        ec2 = s.client("ec2", settings)
        for item in items:
            try:
                configs[item.service_id] = describe_service(ec2, item.service_id)
            except UsageError:
                continue
    rows = []
    for item in items:
        config = configs.get(item.service_id)
        rows.append(
            {
                "service_id": item.service_id,
                "name": item.name,
                "state": config.get("ServiceState") if config else "not found",
                "acceptance_required": config.get("AcceptanceRequired") if config else None,
                "tagged": (_tags(config).get(s.MANAGED_TAG_KEY) == args.stack) if config else None,
                "notification_id": item.notification_id,
                "enrolled_at": item.created_at,
                "enrolled_by": item.updated_by,
            }
        )
    if args.format != "table":
        s.emit(rows, args.format)
        return 0
    s.table(
        (
            (
                r["service_id"],
                r["name"],
                r["state"],
                r["acceptance_required"],
                r["tagged"],
                r["notification_id"],
                r["enrolled_at"],
            )
            for r in rows
        ),
        ("SERVICE", "NAME", "STATE", "ACCEPTANCE", "TAGGED", "NOTIFICATION", "ENROLLED"),
    )
    print(f"{len(rows)} managed service(s)", file=sys.stderr)
    return 0


@s.aws_errors
def run_remove(args: argparse.Namespace) -> int:
    service_id = service_id_arg(args.service)
    settings = s.settings(args)
    deps = s.deps(args)
    enrolled = [i for i in deps.registry.managed_services() if i.service_id == service_id]
    if not enrolled:
        raise UsageError(f"{service_id} is not managed by stack {args.stack}")
    ec2 = s.client("ec2", settings)
    notification_id = enrolled[0].notification_id
    if notification_id and not args.keep_notification:
        gone = ec2.delete_vpc_endpoint_connection_notifications(
            ConnectionNotificationIds=[notification_id]
        ).get("Unsuccessful", [])
        note = "already gone" if gone else "deleted"
        print(f"  connection notification {notification_id}: {note}")
    try:
        config = describe_service(ec2, service_id, settings)
    except UsageError:
        config = {}
    if _tags(config).get(s.MANAGED_TAG_KEY) == args.stack:
        ec2.delete_tags(Resources=[service_id], Tags=[{"Key": s.MANAGED_TAG_KEY}])
        print(f"  tag {s.MANAGED_TAG_KEY} removed")
    deps.registry.unenroll(service_id)
    print(f"{service_id} is no longer managed (its grants stay in the registry)")
    return 0
