"""Slack, locally: the fake Slack wired to a LocalDeployment, with clicks routed in-process
through the real interactivity handler and the real worker.

- `start(deployment, port=0) -> LocalSlack`: secrets in the (emulated) Secrets Manager, the work
  queue, the fake Slack (Web API + page), and the deployment's settings switched to Slack, so
  everything built from `deployment.deps()` afterwards posts to the fake. `stop()` undoes it.
- `start_local_slack(deployment, port) -> (url, stop)`: the same, for `vpce-approver local`.
- `demo_click(deployment, vpce_id)`: post the escalation, click Approve as an approver, and return
  the message before and after (`make demo`).
- `api_gateway_event(...)`: an API Gateway HTTP API (payload 2.0) event for a raw request.
- `as_lambda(local)`: the two Slack functions' environment as template.yaml sets it, with fresh
  containers, so their Lambda entry points (`handler`) run against the local deployment."""

from __future__ import annotations

import base64
import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from vpce_approver.config import Settings
from vpce_approver.converge import Deps
from vpce_approver.handlers import slack_interactivity, slack_worker
from vpce_approver.slack.client import ClientConfig
from vpce_approver.slack.messages import APPROVE
from vpce_approver.slack.services import SlackServices

from .fake_slack import FakeSlack, Message, render_text
from .stack import LocalDeployment, QueuePoller

LOCAL_CHANNEL = "C0VPCEAPPROVALS"
LOCAL_TEAM = "T0LOCAL"
LOCAL_APPROVER = "U0APPROVER"
LOCAL_VISITOR = "U0VISITOR"
LOCAL_CONFIG = ClientConfig(timeout=5, max_retries=2, backoff=0.05, max_retry_after=5)


def api_gateway_event(
    headers: Mapping[str, str],
    body: bytes,
    *,
    path: str = slack_interactivity.PATH,
    base64_encode: bool = True,
) -> dict[str, Any]:
    """What API Gateway HTTP API hands the Lambda for a POST (header names lower-cased; form
    bodies base64-encoded)."""
    now = time.time()
    return {
        "version": "2.0",
        "routeKey": f"POST {path}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {k.lower(): v for k, v in headers.items()},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": "localhost",
            "domainPrefix": "localhost",
            "http": {
                "method": "POST",
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": headers.get("User-Agent", "Slackbot 1.0"),
            },
            "requestId": uuid.uuid4().hex,
            "routeKey": f"POST {path}",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "body": base64.b64encode(body).decode() if base64_encode else body.decode(),
        "isBase64Encoded": base64_encode,
    }


@dataclass
class LocalSlack:
    deployment: LocalDeployment
    fake: FakeSlack
    services: SlackServices
    worker_queue: QueuePoller
    previous: Settings
    lock: threading.Lock

    @property
    def url(self) -> str:
        return self.fake.url

    def deps(self) -> Deps:
        return self.services.deps

    def interact(self, headers: Mapping[str, str], body: bytes) -> tuple[int, str]:
        """The local interactivity endpoint: the real handler in-process, then the worker
        (drained at once, so the page shows the outcome when the click returns)."""
        with self.lock:  # the resolver keeps the current event on the class
            response = slack_interactivity.resolve(api_gateway_event(headers, body), self.services)
            self.worker_queue.drain()
        return int(response["statusCode"]), str(response.get("body") or "")

    def stop(self) -> None:
        self.fake.stop()
        self.deployment.settings = self.previous


def lambda_environment(settings: Settings) -> dict[str, str]:
    """The environment template.yaml gives the Slack functions, for these settings."""
    values = {
        "REGISTRY_TABLE": settings.registry_table,
        "AUDIT_TABLE": settings.audit_table,
        "ESCALATIONS_TABLE": settings.escalations_table,
        "SLACK_CHANNEL": settings.slack_channel,
        "SLACK_BOT_TOKEN_SECRET": settings.slack_bot_token_secret,
        "SLACK_SIGNING_SECRET_SECRET": settings.slack_signing_secret_secret,
        "SLACK_API_URL": settings.slack_api_url,
        "SLACK_TEAM_ID": settings.slack_team_id,
        "SLACK_APPROVERS": ",".join(settings.slack_approvers),
        "SLACK_APPROVER_GROUP": settings.slack_approver_group,
        "SLACK_WORK_QUEUE_URL": settings.slack_work_queue_url,
    }
    return {k: v for k, v in values.items() if v}


def _fresh_containers() -> None:
    from vpce_approver import runtime

    runtime.default_deps.cache_clear()
    slack_interactivity.default_services.cache_clear()
    slack_worker.default_services.cache_clear()


@contextlib.contextmanager
def as_lambda(local: LocalSlack) -> Iterator[None]:
    """Run the Lambda entry points against `local`: os.environ set as on AWS and every
    per-container cache fresh, both restored afterwards. One container for the whole block."""
    from .cli import environ

    _fresh_containers()
    try:
        with environ(lambda_environment(local.deployment.settings)):
            yield
    finally:
        _fresh_containers()


def _secret(deployment: LocalDeployment, name: str, value: str) -> str:
    client = deployment.provider.client("secretsmanager")
    try:
        return str(client.create_secret(Name=name, SecretString=value)["ARN"])
    except client.exceptions.ResourceExistsException:
        return str(client.put_secret_value(SecretId=name, SecretString=value)["ARN"])


def _work_queue(deployment: LocalDeployment) -> str:
    sqs = deployment.provider.client("sqs")
    return str(
        sqs.create_queue(
            QueueName="vpce-approver-slack-work", Attributes={"VisibilityTimeout": "60"}
        )["QueueUrl"]
    )


def start(
    deployment: LocalDeployment,
    *,
    port: int = 0,
    approvers: tuple[str, ...] = (LOCAL_APPROVER,),
    groups: Mapping[str, list[str]] | None = None,
    approver_group: str | None = None,
    config: ClientConfig = LOCAL_CONFIG,
) -> LocalSlack:
    fake = FakeSlack(
        team_id=LOCAL_TEAM,
        groups=groups,
        ui_users=(*approvers, LOCAL_VISITOR),
        port=port,
    ).start()
    previous = deployment.settings
    try:
        stack = previous.registry_table.removesuffix("-registry")
        deployment.settings = replace(
            previous,
            slack_channel=LOCAL_CHANNEL,
            slack_bot_token_secret=_secret(deployment, f"{stack}/slack/bot-token", fake.token),
            slack_signing_secret_secret=_secret(
                deployment, f"{stack}/slack/signing-secret", fake.signing_secret
            ),
            slack_api_url=fake.api_url,
            slack_team_id=LOCAL_TEAM,
            slack_approvers=approvers,
            slack_approver_group=approver_group,
            slack_work_queue_url=_work_queue(deployment),
        )
        services = SlackServices.build(deployment.deps(), config=config)
        services.deps.port = services.port
        queue_url = deployment.settings.slack_work_queue_url or ""
        poller = QueuePoller(
            deployment.provider.client("sqs"),
            queue_url,
            lambda records: slack_worker.process(records, services),
            batch_size=10,
        )
    except Exception:
        fake.stop()
        deployment.settings = previous
        raise
    local = LocalSlack(deployment, fake, services, poller, previous, threading.Lock())
    fake.interactivity_url = f"{fake.url}{slack_interactivity.PATH}"
    fake.local_handler = local.interact
    return local


def start_local_slack(deployment: LocalDeployment, port: int = 0) -> tuple[str, Callable[[], None]]:
    """For `vpce-approver local`: the fake Slack + page on `port`; clicks run in-process.
    While it runs, `deployment.deps()` posts escalations to it."""
    local = start(deployment, port=port)
    return local.url, local.stop


@dataclass(frozen=True)
class ClickDemo:
    before: str
    after: str
    status: int
    outcome: str | None


def demo_click(
    deployment: LocalDeployment,
    vpc_endpoint_id: str,
    *,
    action: str = APPROVE,
    user: str = LOCAL_APPROVER,
    out: Callable[[str], None] | None = print,
) -> ClickDemo:
    """Post the escalation of `vpc_endpoint_id` to the fake Slack, click `action` as an approver
    (a signed request through the real handler and worker), and show the message before/after."""
    local = start(deployment)
    try:
        deps = local.deps()
        item = deps.escalations.get(vpc_endpoint_id)
        if item is None:
            raise ValueError(f"{vpc_endpoint_id} has no escalation (is it pending a human?)")
        local.services.port.opened(item)
        message = _message(local.fake, vpc_endpoint_id)
        before = render_text(message.blocks)
        status, _ = local.fake.click(message.channel, message.ts, action, user=user)
        after = render_text(_message(local.fake, vpc_endpoint_id).blocks)
        settled = deps.escalations.get(vpc_endpoint_id)
        demo = ClickDemo(before, after, status, settled.outcome if settled else None)
    finally:
        local.stop()
    if out is not None:
        out(f"--- Slack message before the click ---\n{demo.before}\n")
        out(f"--- {user} clicks {action!r} (signed request -> handler -> worker) ---\n")
        out(f"--- Slack message after the click ---\n{demo.after}\n")
    return demo


def _message(fake: FakeSlack, vpc_endpoint_id: str) -> Message:
    message = fake.message_for(vpc_endpoint_id)
    if message is None:
        raise RuntimeError(f"the escalation of {vpc_endpoint_id} was not posted to Slack")
    return message
