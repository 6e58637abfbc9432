"""`vpce-approver doctor <service-id | vpce-id>`: the PrivateLink troubleshooting runbook from the
provider's side, as checks with a verdict each (ok / warn / fail). Exit code 1 when any check
fails.

Service checks: available, acceptance required, managed by this deployment (enrollment + tag),
allowed principals against the registry (missing / extra: the sweep's allow-list drift),
connection notification in place, OU/organization grants (do they decide at all: the deployment
reads AWS Organizations, and can it), private DNS name verified, published AZs, NLB cross-zone
load balancing, target group health. For an endpoint, also: the consumer on the allowed
principals, where it sits in the organization, the connection's state, and the decision the
registry gives it."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from botocore.exceptions import ClientError

from vpce_approver import runtime
from vpce_approver.converge import Deps, preview
from vpce_approver.membership import Directory
from vpce_approver.model import WILDCARD_SERVICE, Action, Connection, Scope, norm_state, scope_of
from vpce_approver.sweep.principals import inspect as allow_list_drift

from . import _support as s
from .services import CONNECTION_EVENTS, describe_service, service_id_arg

OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    verdict: str
    detail: str


def register(subs: Any) -> None:
    p: argparse.ArgumentParser = subs.add_parser(
        "doctor", help="troubleshoot a service or a connection (checks with verdicts)"
    )
    p.add_argument("target", help="vpce-svc-… (a service) or vpce-… (a connection)")
    s.add_format(p, ("table", "json"))
    p.set_defaults(run=run)


# ----------------------------------------------------------------------------- service checks


def check_service(config: dict[str, Any]) -> Check:
    state = str(config.get("ServiceState", "unknown"))
    if state.lower() == "available":
        return Check("service available", OK, f"{config['ServiceId']} is {state}")
    return Check("service available", FAIL, f"{config['ServiceId']} is {state}")


def check_acceptance(config: dict[str, Any]) -> Check:
    if config.get("AcceptanceRequired"):
        return Check("acceptance required", OK, "connections wait for a decision")
    return Check(
        "acceptance required",
        WARN,
        "off: every connection is accepted automatically and the approver decides nothing",
    )


def check_managed(config: dict[str, Any], deps: Deps, stack: str) -> Check:
    service_id = config["ServiceId"]
    tags = {t["Key"]: t["Value"] for t in config.get("Tags", []) if "Key" in t}
    tag = tags.get(s.MANAGED_TAG_KEY)
    enrolled = deps.registry.is_managed(service_id)
    if enrolled and tag == stack:
        return Check("managed", OK, f"enrolled and tagged {s.MANAGED_TAG_KEY}={stack}")
    if enrolled:
        return Check(
            "managed",
            FAIL,
            f"enrolled but tagged {s.MANAGED_TAG_KEY}={tag or '(none)'}: the functions' IAM only"
            f" allows accept/reject on services tagged {stack} (run services add)",
        )
    return Check(
        "managed",
        FAIL,
        f"not enrolled in stack {stack}'s registry: nothing is decided"
        f" (vpce-approver services add {service_id})",
    )


def check_allow_list(service_id: str, deps: Deps) -> list[Check]:
    """The allowed principals against the registry, as the sweep reconciles them (a managed
    service only: an unmanaged one's list is the provider's alone)."""
    if not deps.registry.is_managed(service_id):
        return []
    drift = allow_list_drift(service_id, deps)
    name = "allowed principals"

    def some(principals: tuple[str, ...]) -> str:
        more = f" (+{len(principals) - 5} more)" if len(principals) > 5 else ""
        return ", ".join(principals[:5]) + more

    problems = []
    if drift.missing:
        problems.append(f"missing {len(drift.missing)} a live grant needs: {some(drift.missing)}")
    if drift.extra:
        problems.append(
            f"extra {len(drift.extra)} this deployment added and no live grant needs:"
            f" {some(drift.extra)}"
        )
    kept = f"; {drift.foreign} not added by this deployment (left alone)" if drift.foreign else ""
    if drift.members:
        kept += f"; {drift.members} member account(s) of granted OUs/organization counted"
    if drift.incomplete:
        problems.append(f"incomplete: {drift.incomplete} (nothing is removed until it can be read)")
    if problems:
        detail = "; ".join(problems) + f" (the next sweep fixes it){kept}"
        return [Check(name, WARN, detail)]
    return [Check(name, OK, f"{drift.listed} listed, as the registry needs{kept}")]


def check_notification(ec2: Any, service_id: str, topic: str | None) -> Check:
    items = ec2.describe_vpc_endpoint_connection_notifications(
        Filters=[{"Name": "service-id", "Values": [service_id]}]
    ).get("ConnectionNotificationSet", [])
    enabled = [
        i for i in items if str(i.get("ConnectionNotificationState", "")).lower() == "enabled"
    ]
    if topic:
        mine = [i for i in enabled if i.get("ConnectionNotificationArn") == topic]
        if not mine and enabled:
            arns = ", ".join(sorted({i["ConnectionNotificationArn"] for i in enabled}))
            return Check(
                "connection notification",
                FAIL,
                f"notifications go to {arns}, not to this deployment's topic {topic}",
            )
        enabled = mine
    if not enabled:
        return Check(
            "connection notification",
            FAIL,
            "none enabled: new connections wait for the sweep (services add creates it)",
        )
    item = enabled[0]
    missing = sorted(set(CONNECTION_EVENTS) - set(item.get("ConnectionEvents", [])))
    detail = f"{item['ConnectionNotificationId']} -> {item['ConnectionNotificationArn']}"
    if "Connect" in missing:
        return Check("connection notification", FAIL, f"{detail} lacks the Connect event")
    if missing:
        return Check("connection notification", WARN, f"{detail} lacks {', '.join(missing)}")
    return Check("connection notification", OK, detail)


def check_private_dns(config: dict[str, Any]) -> Check:
    name = config.get("PrivateDnsName")
    if not name:
        return Check("private DNS name", OK, "none (consumers use the endpoint's own DNS names)")
    state = str((config.get("PrivateDnsNameConfiguration") or {}).get("State", "unknown"))
    if state.lower() == "verified":
        return Check("private DNS name", OK, f"{name} verified")
    verdict = FAIL if state.lower() == "failed" else WARN
    return Check(
        "private DNS name",
        verdict,
        f"{name} is {state}: consumers cannot enable private DNS until the domain is verified"
        " (TXT record, then start-vpc-endpoint-service-private-dns-verification)",
    )


def check_azs(config: dict[str, Any]) -> Check:
    azs = sorted(config.get("AvailabilityZones", []))
    if not azs:
        return Check("availability zones", FAIL, "the service publishes no AZ")
    detail = f"published in {', '.join(azs)}; consumer subnets must be in one of them (by AZ ID)"
    return Check("availability zones", OK if len(azs) > 1 else WARN, detail)


def check_load_balancers(elbv2: Any, config: dict[str, Any]) -> list[Check]:
    arns = list(config.get("NetworkLoadBalancerArns", []))
    if not arns:
        if config.get("GatewayLoadBalancerArns"):
            return [Check("load balancer", OK, "Gateway Load Balancer service: NLB checks skipped")]
        return [Check("load balancer", FAIL, "the service has no load balancer")]
    checks = []
    for arn in arns:
        name = arn.rsplit("/", 2)[-2] if arn.count("/") >= 2 else arn
        try:
            attributes = elbv2.describe_load_balancer_attributes(LoadBalancerArn=arn)["Attributes"]
        except Exception as exc:  # a missing or foreign NLB: report it, keep checking
            checks.append(Check("NLB cross-zone", FAIL, f"{name}: cannot read it ({exc})"))
            continue
        values = {a["Key"]: a["Value"] for a in attributes}
        cross = values.get("load_balancing.cross_zone.enabled", "false").lower() == "true"
        checks.append(
            Check(
                "NLB cross-zone",
                OK if cross else WARN,
                f"{name}: on"
                if cross
                else f"{name}: off: an endpoint in an AZ without healthy targets gets no answer",
            )
        )
        try:
            checks.append(check_targets(elbv2, arn, name))
        except Exception as exc:
            checks.append(Check("target health", FAIL, f"{name}: could not check: {exc}"))
    return checks


def check_targets(elbv2: Any, lb_arn: str, name: str) -> Check:
    try:
        groups = elbv2.describe_target_groups(LoadBalancerArn=lb_arn).get("TargetGroups", [])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "TargetGroupNotFound":
            raise
        groups = []
    if not groups:
        return Check("target health", FAIL, f"{name}: no target group (no listener forwards)")
    healthy = unhealthy = 0
    states: list[str] = []
    for group in groups:
        health = elbv2.describe_target_health(TargetGroupArn=group["TargetGroupArn"])
        for target in health.get("TargetHealthDescriptions", []):
            state = str(target.get("TargetHealth", {}).get("State", "unknown"))
            states.append(state)
            if state == "healthy":
                healthy += 1
            else:
                unhealthy += 1
    if not states:
        return Check("target health", FAIL, f"{name}: no targets registered")
    detail = f"{name}: {healthy} healthy, {unhealthy} not healthy of {len(states)}"
    if healthy == 0:
        return Check("target health", FAIL, detail)
    return Check("target health", WARN if unhealthy else OK, detail)


ORGANIZATION_CHECK = "organization grants"


def _organization_grants(service_id: str, deps: Deps) -> list[str]:
    """Labels of the OU/organization items (malformed ones too) that can decide on the service:
    its own and the `*` ones."""
    entries = [
        *deps.registry.entries(service=service_id),
        *deps.registry.entries(service=WILDCARD_SERVICE),
    ]
    return [e.label for e in entries if scope_of(e.consumer) is not Scope.ACCOUNT]


def _readable(directory: Directory, scopes: list[str]) -> str | None:
    """None when Organizations can be read, else why not. The members of a granted scope come
    from the directory's cache when the allow-list check has just read them; only without
    one (or when that read failed, to learn why) is the tree read (refresh, recording
    nothing)."""
    if scopes and directory.members(scopes[0]) is not None:
        return None
    return directory.refresh(record=False).error


def _some(labels: list[str], n: int = 3) -> str:
    more = f" (+{len(labels) - n} more)" if len(labels) > n else ""
    return ", ".join(labels[:n]) + more


def check_organization(
    service_id: str, deps: Deps, *, on: bool, source: str, owner: str | None = None
) -> list[Check]:
    """OU/organization grants decide only when the deployment reads AWS Organizations: off, they
    are never read, so they accept nothing and an OU/organization deny does not reject (the
    connections they would cover get the no-grant default). On: can Organizations be read (the
    directory the decision path uses), and for a connection, where its owner sits."""
    labels = _organization_grants(service_id, deps)
    if not on:
        if not labels:
            return []
        return [
            Check(
                ORGANIZATION_CHECK,
                WARN,
                f"{len(labels)} OU/organization grant(s) ({_some(labels)}) but this deployment"
                f" does not read AWS Organizations (off: {source}): they are never read, so they"
                " accept nothing and an OU/organization deny does not reject (connections they"
                " would cover get the no-grant default); deploy with OrganizationGrants=true",
            )
        ]
    directory = deps.registry.directory
    what = f"{len(labels)} OU/organization grant(s)" + (f": {_some(labels)}" if labels else "")
    if directory is None:
        return [
            Check(
                ORGANIZATION_CHECK,
                WARN,
                f"on ({source}); {what}; this CLI has no Organizations reader to check with",
            )
        ]
    if owner is not None:
        found = directory.memberships([owner]).get(owner)
        error = found.error if found is not None and not found.known else None
        where = found.describe() if found is not None else "unknown"
    else:
        error, where = _readable(directory, [label.split("/", 1)[1] for label in labels]), ""
    if error:
        return [
            Check(
                ORGANIZATION_CHECK,
                FAIL if labels else WARN,
                f"on ({source}), but AWS Organizations cannot be read ({error}): nothing is"
                f" accepted on an OU/organization grant (membership-unknown escalations); {what}",
            )
        ]
    place = f"; {owner} sits at {where}" if owner is not None else ""
    return [Check(ORGANIZATION_CHECK, OK, f"on ({source}), Organizations readable; {what}{place}")]


# ----------------------------------------------------------------------------- connection checks


def check_principals(conn: Connection, deps: Deps) -> Check:
    listed = deps.ec2.allowed_principals(conn.service_id)
    mine = sorted(p for p in listed if p == "*" or f"::{conn.owner}:" in p)
    if mine:
        return Check(
            "consumer allowed", OK, f"{conn.owner} may create endpoints: {', '.join(mine)}"
        )
    return Check(
        "consumer allowed",
        WARN,
        f"no principal of {conn.owner} on the allowed principals: it cannot create new endpoints"
        " (existing ones keep working)",
    )


def check_state(conn: Connection) -> Check:
    state = norm_state(conn.state)
    if state == "available":
        return Check("connection state", OK, f"{conn.vpc_endpoint_id} is available")
    if state in {"pendingacceptance", "pending"}:
        return Check("connection state", WARN, f"{conn.vpc_endpoint_id} is {conn.state}")
    return Check("connection state", FAIL, f"{conn.vpc_endpoint_id} is {conn.state}")


def check_decision(conn: Connection, deps: Deps) -> Check:
    result = preview(conn.service_id, [conn], deps)
    if not result.managed or not result.decisions:
        return Check("decision", FAIL, f"{conn.service_id} is not managed: nothing decides")
    decision = result.decisions[0][1]
    text = f"{decision.action.value} [{decision.code.value}]: {decision.reason}"
    if decision.action is Action.ACCEPT:
        return Check("decision", OK, text)
    if decision.action is Action.REJECT:
        return Check("decision", FAIL, text)
    return Check("decision", WARN, text)


# ----------------------------------------------------------------------------- run


def _guard(name: str, check: Callable[[], Check | list[Check]]) -> list[Check]:
    try:
        result = check()
    except Exception as exc:  # one broken check must not hide the others
        return [Check(name, FAIL, f"could not check: {exc}")]
    return result if isinstance(result, list) else [result]


def diagnose(target: str, args: argparse.Namespace) -> tuple[list[Check], str]:
    settings, source = s.decision_settings(args)
    ec2 = s.client("ec2", settings)
    deps = runtime.build(settings)
    conn: Connection | None = None
    if target.startswith("vpce-svc-"):
        service_id = service_id_arg(target)
    else:
        conn = s.find_connection(ec2, target, settings)
        service_id = conn.service_id
    config = describe_service(ec2, service_id, settings)
    elbv2 = s.client("elbv2", settings)
    topic = settings.notification_topic_arn
    checks: list[Check] = []
    checks += _guard("service available", lambda: check_service(config))
    checks += _guard("acceptance required", lambda: check_acceptance(config))
    checks += _guard("managed", lambda: check_managed(config, deps, args.stack))
    checks += _guard("connection notification", lambda: check_notification(ec2, service_id, topic))
    checks += _guard("allowed principals", lambda: check_allow_list(service_id, deps))
    owner = conn.owner if conn is not None else None
    checks += _guard(
        ORGANIZATION_CHECK,
        lambda: check_organization(
            service_id, deps, on=settings.organization_grants, source=source, owner=owner
        ),
    )
    checks += _guard("private DNS name", lambda: check_private_dns(config))
    checks += _guard("availability zones", lambda: check_azs(config))
    checks += _guard("load balancer", lambda: check_load_balancers(elbv2, config))
    if conn is not None:
        found = conn
        checks += _guard("consumer allowed", lambda: check_principals(found, deps))
        checks += _guard("connection state", lambda: check_state(found))
        checks += _guard("decision", lambda: check_decision(found, deps))
    subject = f"{target} on {service_id}" if conn is not None else service_id
    return checks, subject


@s.aws_errors
def run(args: argparse.Namespace) -> int:
    checks, subject = diagnose(args.target.strip(), args)
    failed = sum(c.verdict == FAIL for c in checks)
    warned = sum(c.verdict == WARN for c in checks)
    if args.format == "json":
        s.emit(
            {"target": subject, "checks": [asdict(c) for c in checks], "failed": failed},
            "json",
        )
    else:
        print(f"doctor: {subject}")
        s.table(
            ((c.verdict.upper(), c.name, c.detail) for c in checks), ("VERDICT", "CHECK", "DETAIL")
        )
        passed = len(checks) - failed - warned
        print(f"{len(checks)} checks: {passed} ok, {warned} warn, {failed} fail")
    return 1 if failed else 0
