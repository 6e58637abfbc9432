"""`vpce-approver local`: the emulator as an HTTP server on 127.0.0.1, with a vpce-approver
deployment inside it (tables from template.yaml, topic -> queue, an enrolled sample service) and a
background poller that feeds the queue to the notification handler, as Lambda would. Point the aws
CLI or boto3 at it with --endpoint-url / AWS_ENDPOINT_URL and watch the service work.

OU/organization grants are on (ORGANIZATION_GRANTS) with a short MEMBERSHIP_MAX_AGE, and the
provider account is the management account of an organization made at start, as a deployment with
OrganizationGrants has one (`--no-organization`: none, until `aws organizations
create-organization` makes it; meanwhile no account can be placed, so OU grants and Slack approvals
fail closed with membership-unknown). Each account-lifecycle call (CreateAccount, MoveAccount,
CloseAccount, RemoveAccountFromOrganization) starts a sweep, as the deployed stack's optional
OrganizationEvents rule does."""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from vpce_approver.config import Settings

from .emulator import organizations, server
from .emulator.testing import fake_credentials
from .emulator.world import EndpointService, Organization, Provider
from .local_events import EventLog
from .ports import HOST, PortInUse, ensure_free
from .slack_local import start_local_slack
from .stack import LocalDeployment, QueuePoller
from .stream_poller import registry_poller

log = logging.getLogger("vpce_tools.local")
__all__ = ["PortInUse", "ensure_free"]
SAMPLE_NAME = "sample-service"
MEMBERSHIP_MAX_AGE = 5
"""Seconds a membership read is trusted locally (deployed default: 300): a move shows at once."""


@dataclass
class LocalService:
    url: str
    deployment: LocalDeployment
    service: EndpointService
    poller: QueuePoller
    _stop_server: Callable[[], None]
    slack_url: str = ""
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    extra_stops: list[Callable[[], None]] = field(default_factory=list)
    events: EventLog | None = None
    _organization_changed: threading.Event = field(default_factory=threading.Event)

    def organization_event(self, event: organizations.Event) -> None:
        """An account-lifecycle event on the management account's bus: say so, and sweep on
        the poller's next turn (several events close together make one sweep)."""
        if self.events is not None:
            self.events.organization(event)
        self._organization_changed.set()

    def start_polling(self, interval: float = 0.5, sweep_every: float = 0) -> None:
        def loop() -> None:
            next_sweep = time.monotonic() + sweep_every
            while not self._stop.is_set():
                for what, poller in (("notification", self.poller), ("registry stream", stream)):
                    try:
                        poller.drain()
                    except Exception:  # keep serving; the record is retried on the next poll
                        log.exception("%s poll failed", what)
                due = bool(sweep_every) and time.monotonic() >= next_sweep
                if due or self._organization_changed.is_set():
                    self._organization_changed.clear()
                    next_sweep = time.monotonic() + sweep_every
                    self.sweep()
                self._stop.wait(interval)

        # The registry stream, as RegistryStreamFunction: a grant edit takes effect at once.
        stream = registry_poller(self.deployment)

        self._thread = threading.Thread(target=loop, name="vpce-approver-poller", daemon=True)
        self._thread.start()

    def sweep(self) -> None:
        """One scheduled sweep, as the deployed stack's EventBridge rule runs it."""
        from vpce_approver.sweep import sweep

        try:
            report = sweep(self.deployment.deps())
        except Exception:  # keep serving; the next sweep tries again
            log.exception("sweep failed")
            return
        if self.events is not None:
            if report.membership is not None:  # OU/organization grants: what the read found
                self.events.membership(report.membership)
            self.events.sweep(report.summary())

    def stop(self) -> None:
        organizations.remove_listener(self.organization_event)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for stop in reversed(self.extra_stops):
            stop()
        self._stop_server()


def start(
    port: int = 0,
    *,
    poll_interval: float = 0.5,
    slack_port: int = 0,
    events: EventLog | None = None,
    sweep_every: float = 0,
    membership_max_age: int = MEMBERSHIP_MAX_AGE,
    organization: bool = True,
) -> LocalService:
    """Start everything; the caller owns stop(). Uses fake credentials for the process.
    Raises PortInUse (before starting anything) when a port asked for is taken."""
    ensure_free(port, "emulator")
    ensure_free(slack_port, "Slack stand-in")
    url, stop_server = server.start(port, HOST)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    try:
        provider = Provider(endpoint_url=url)
        deployment = LocalDeployment.create(
            provider, organization_grants=True, membership_max_age=membership_max_age
        )
        if events is not None:
            deployment.observe = events.observe
        service = sample_service(provider)
        deployment.enroll(service, name=SAMPLE_NAME)
        if organization:
            sample_organization(provider)
        directory = deployment.deps().registry.directory
        if directory is not None:  # the read a deployed stack's sweep has recorded already, so
            directory.refresh()  # that the first sweep here names who joined, left or moved
        # The Slack stand-in first: deps built afterwards post escalations to it.
        slack_url, stop_slack = start_local_slack(deployment, slack_port)
        poller = deployment.poller()
        if events is not None:
            poller.process = events.seeing(poller.process)
    except Exception:
        stop_server()
        raise
    local = LocalService(
        url, deployment, service, poller, stop_server, slack_url=slack_url, events=events
    )
    local.extra_stops.append(stop_slack)
    organizations.add_listener(local.organization_event)
    local.start_polling(poll_interval, sweep_every)
    return local


def sample_organization(provider: Provider) -> str:
    """The organization whose management account the provider's is: made now, or the one
    already there (the emulator's state outlives a server in the same process)."""
    from botocore.exceptions import ClientError

    try:
        return Organization.create(provider).organization_id
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "AlreadyInOrganizationException":
            raise
    return organization_id(provider) or ""


def root_id(provider: Provider) -> str:
    """The organization's root (r-…), where create-account puts a new account."""
    return str(provider.client("organizations").list_roots()["Roots"][0]["Id"])


def sample_service(provider: Provider) -> EndpointService:
    """The sample endpoint service, set up the way a real provider's is: acceptance required, an
    empty allow-list (the registry adds each consumer's principal), and an NLB with cross-zone
    load balancing and a TCP listener forwarding to two healthy targets, one per AZ, so that
    `doctor` passes on it."""
    service = provider.create_service(acceptance_required=True, allowed_principals=())
    elbv2, ec2 = provider.client("elbv2"), provider.client("ec2")
    lb = elbv2.describe_load_balancers(LoadBalancerArns=[service.load_balancer_arn])[
        "LoadBalancers"
    ][0]
    group = elbv2.create_target_group(
        Name=f"sample-{service.service_id}"[:32],
        Protocol="TCP",
        Port=443,
        VpcId=lb["VpcId"],
        TargetType="ip",
    )["TargetGroups"][0]["TargetGroupArn"]
    subnets = ec2.describe_subnets(SubnetIds=[az["SubnetId"] for az in lb["AvailabilityZones"]])
    targets = [
        {"Id": str(ipaddress.ip_network(net["CidrBlock"])[10]), "Port": 443}
        for net in subnets["Subnets"]
    ]
    elbv2.register_targets(TargetGroupArn=group, Targets=targets)
    elbv2.create_listener(
        LoadBalancerArn=service.load_balancer_arn,
        Protocol="TCP",
        Port=443,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": group}],
    )
    elbv2.modify_load_balancer_attributes(
        LoadBalancerArn=service.load_balancer_arn,
        Attributes=[{"Key": "load_balancing.cross_zone.enabled", "Value": "true"}],
    )
    return service


ENV = "AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1"


def organization_env(settings: Settings) -> str:
    """What the provider shell exports so the CLI reads membership as this server does."""
    return f"ORGANIZATION_GRANTS=true MEMBERSHIP_MAX_AGE={settings.membership_max_age}"


def organization_id(provider: Provider) -> str | None:
    """The provider's organization, if `create-organization` made one already."""
    from botocore.exceptions import ClientError

    try:
        return str(provider.client("organizations").describe_organization()["Organization"]["Id"])
    except ClientError:
        return None


def banner(local: LocalService, out: TextIO) -> None:
    s, d = local.service, local.deployment
    org = organization_id(d.provider)
    organization = (
        [
            f"  organization       {org} (root {root_id(d.provider)}): this account is its"
            " management account"
        ]
        if org
        else [
            "  organization       none yet (--no-organization): `aws organizations"
            " create-organization`",
            "                     makes this account its management account; until then no"
            " account's",
            "                     place is known: OU grants and Slack approvals fail closed",
        ]
    )
    lines = [
        f"vpce-approver local: emulator on {local.url}, Slack stand-in on {local.slack_url}",
        "",
        f"  endpoint service   {s.service_id}  ({s.service_name})",
        "                     enrolled, acceptance required, allow-list empty",
        "  provider account   123456789012 (these credentials); any other account is a consumer",
        *organization,
        f"  OU/org grants      on; a membership read is trusted {d.settings.membership_max_age} s"
        " (MEMBERSHIP_MAX_AGE); CreateAccount,",
        "                     MoveAccount, CloseAccount, RemoveAccountFromOrganization start a"
        " sweep",
        f"  notification topic {d.topic_arn}",
        f"  tables             {d.settings.registry_table}, {d.settings.audit_table},"
        f" {d.settings.escalations_table}",
        "",
        "In each shell (AWS CLI v2.13+ or v1.29+ reads AWS_ENDPOINT_URL; venv activated):",
        f"  export AWS_ENDPOINT_URL={local.url} \\",
        f"         {ENV}",
        "",
        "provider shell:",
        f"  export {organization_env(d.settings)}   # read membership as this server does",
        f"  try:  vpce-approver registry add {s.service_id} 111111111111",
        f"  try:  vpce-approver doctor {s.service_id}",
        "consumer shell (account 111111111111): see the README's walkthrough",
        "",
        "What happens appears below, one line per event. Ctrl-C stops.",
    ]
    print("\n".join(lines), file=out, flush=True)


STOP_TIMEOUT = 10.0
"""Seconds Ctrl-C waits for the servers and the poller to stop before the process exits anyway."""


def serve(
    port: int,
    out: TextIO,
    *,
    slack_port: int = 0,
    sweep_every: float = 0,
    membership_max_age: int = MEMBERSHIP_MAX_AGE,
    organization: bool = True,
) -> int:
    """Run until Ctrl-C/TERM. Raises PortInUse at once when a port is taken."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no per-request lines
    from vpce_approver.observability import logger

    logger.setLevel(logging.WARNING)  # the event lines say what happened; JSON only for trouble
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop cleanly on TERM as on Ctrl-C
    with fake_credentials():
        local = start(
            port,
            slack_port=slack_port,
            events=EventLog(out),
            sweep_every=sweep_every,
            membership_max_age=membership_max_age,
            organization=organization,
        )
        try:
            banner(local, out)
            # Wake up regularly: a signal delivered to one of the server threads would never
            # interrupt an untimed wait here, and Ctrl-C must always stop the process.
            forever = threading.Event()
            while not forever.wait(0.2):
                pass
        except KeyboardInterrupt:
            print("\nstopping", file=out)
        finally:
            # Bounded: a server thread stuck in a request must never keep Ctrl-C from ending
            # the process (every thread here is a daemon, so returning ends it).
            stopper = threading.Thread(target=local.stop, name="vpce-approver-stop", daemon=True)
            stopper.start()
            stopper.join(STOP_TIMEOUT)
            if stopper.is_alive():
                print(f"stopping took over {STOP_TIMEOUT:g} s: exiting anyway", file=out)
    return 0
