"""`vpce-approver local`: the emulator as an HTTP server on 127.0.0.1, with a vpce-approver
deployment inside it (tables from template.yaml, topic -> queue, an enrolled sample service) and a
background poller that feeds the queue to the notification handler, as Lambda would. Point the aws
CLI or boto3 at it with --endpoint-url / AWS_ENDPOINT_URL and watch the service work."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from .emulator import server
from .emulator.testing import fake_credentials
from .emulator.world import EndpointService, Provider
from .slack_local import start_local_slack
from .stack import LocalDeployment, QueuePoller
from .stream_poller import registry_poller

log = logging.getLogger("vpce_tools.local")


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

    def start_polling(self, interval: float = 0.5) -> None:
        def loop() -> None:
            while not self._stop.is_set():
                for what, poller in (("notification", self.poller), ("registry stream", stream)):
                    try:
                        poller.drain()
                    except Exception:  # keep serving; the record is retried on the next poll
                        log.exception("%s poll failed", what)
                self._stop.wait(interval)

        # The registry stream, as RegistryStreamFunction: a grant edit takes effect at once.
        stream = registry_poller(self.deployment)

        self._thread = threading.Thread(target=loop, name="vpce-approver-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for stop in reversed(self.extra_stops):
            stop()
        self._stop_server()


def start(port: int = 0, *, poll_interval: float = 0.5, slack_port: int = 0) -> LocalService:
    """Start everything; the caller owns stop(). Uses fake credentials for the process."""
    url, stop_server = server.start(port)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    try:
        provider = Provider(endpoint_url=url)
        deployment = LocalDeployment.create(provider)
        service = provider.create_service(acceptance_required=True)
        deployment.enroll(service, name="sample-service")
        # The Slack stand-in first: deps built afterwards post escalations to it.
        slack_url, stop_slack = start_local_slack(deployment, slack_port)
        poller = deployment.poller()
    except Exception:
        stop_server()
        raise
    local = LocalService(url, deployment, service, poller, stop_server, slack_url=slack_url)
    local.extra_stops.append(stop_slack)
    local.start_polling(poll_interval)
    return local


def banner(local: LocalService, out: TextIO) -> None:
    s, d = local.service, local.deployment
    lines = [
        f"vpce-approver local: emulator listening on {local.url}",
        "",
        f"  export AWS_ENDPOINT_URL={local.url} AWS_ACCESS_KEY_ID=testing"
        " AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1",
        "",
        "  provider account   123456789012 (any consumer account via sts assume-role)",
        f"  endpoint service   {s.service_id}  ({s.service_name}), enrolled",
        f"  notification topic {d.topic_arn}",
        f"  Slack stand-in     {local.slack_url}  (open escalations, click to decide)",
        f"  tables             {d.settings.registry_table}, {d.settings.audit_table},"
        f" {d.settings.escalations_table}",
        "",
        "  try:  vpce-approver registry add " + s.service_id + " 111111111111",
        "        aws ec2 describe-vpc-endpoint-connections",
        "",
        "Ctrl-C stops.",
    ]
    print("\n".join(lines), file=out, flush=True)


def serve(port: int, out: TextIO) -> int:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no per-request lines
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop cleanly on TERM as on Ctrl-C
    with fake_credentials():
        local = start(port)
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
            local.stop()
    return 0
