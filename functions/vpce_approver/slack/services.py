"""Everything the two Slack Lambdas need, built once per container from Deps (and so Settings)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..converge import Deps
from .approvers import Approvers
from .client import ClientConfig, SecretSource, SlackApi, SlackConfigError
from .interactivity import Interactivity, Job, SqsQueue
from .port import SlackPort
from .secret_refresh import RateLimitedReread
from .worker import Worker


@dataclass
class SlackServices:
    deps: Deps
    port: SlackPort
    secrets: SecretSource
    approvers: Approvers
    queue: SqsQueue | None
    # Container-wide, like the services: the once-a-minute limit holds across requests.
    signing_reread: RateLimitedReread = field(init=False)

    def __post_init__(self) -> None:
        self.signing_reread = RateLimitedReread(self.secrets.signing_secret)

    @classmethod
    def build(
        cls, deps: Deps, *, config: ClientConfig | None = None, sqs: Any | None = None
    ) -> SlackServices:
        settings = deps.settings
        if not settings.slack_channel:
            raise SlackConfigError("settings", "SLACK_CHANNEL is not set")
        secrets = SecretSource(settings)
        if isinstance(deps.port, SlackPort) and config is None:
            port = deps.port
        else:
            api = SlackApi.from_settings(settings, secrets, config)
            port = SlackPort(api, settings.slack_channel, escalations=deps.escalations)
        queue = None
        if settings.slack_work_queue_url:
            if sqs is None:
                import boto3

                kwargs: dict[str, Any] = {"region_name": settings.region}
                if settings.endpoint_url:
                    kwargs["endpoint_url"] = settings.endpoint_url
                sqs = boto3.client("sqs", **kwargs)
            queue = SqsQueue(sqs, settings.slack_work_queue_url)
        return cls(deps, port, secrets, Approvers(settings, port.api), queue)

    def enqueue(self, job: Job) -> None:
        if self.queue is None:
            raise SlackConfigError("settings", "SLACK_WORK_QUEUE_URL is not set")
        self.queue.send(job)

    def interactivity(self) -> Interactivity:
        return Interactivity(
            signing_secret=self.secrets.signing_secret,
            approvers=self.approvers,
            enqueue=self.enqueue,
            reread_secret=self.signing_reread.reread,
            origin_verify=self.deps.settings.slack_origin_verify,
        )

    def worker(self) -> Worker:
        return Worker(self.deps, self.port, self.approvers)
