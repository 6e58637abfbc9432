"""Wiring: Settings -> clients -> Deps. Built once per Lambda container and reused.

The EC2 client comes from botocore itself (like pynamodb's DynamoDB client), not boto3: boto3 would
add its own import (and s3transfer's) to every cold start for nothing the decision path uses. A
new botocore session per client picks up the handlers registered at that time (moto's, the
benchmark's counters); the data loader is shared, so the EC2 model is parsed once per process."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, cast

import botocore.loaders
import botocore.session
from botocore.config import Config

from . import tables
from .audit import Audit
from .config import Settings
from .converge import Deps, MetricSink, NoMetrics
from .ec2 import Ec2
from .escalations import EscalationPort, Escalations, RecordOnly
from .membership import Directory
from .registry import Registry

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client

# Accept/Reject are throttled at 1/s with a burst of 10: standard mode retries RequestLimitExceeded
# with exponential backoff and jitter; a call that still fails raises and the invocation retries.
EC2_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 8}, connect_timeout=5, read_timeout=20
)


@functools.cache
def _loader() -> botocore.loaders.Loader:
    return botocore.loaders.create_loader()


def ec2_client(settings: Settings) -> EC2Client:
    kwargs: dict[str, Any] = {"region_name": settings.region, "config": EC2_CONFIG}
    if settings.endpoint_url:
        kwargs["endpoint_url"] = settings.endpoint_url
    session = botocore.session.Session()
    session.register_component("data_loader", _loader())
    return cast("EC2Client", session.create_client("ec2", **kwargs))


def bind_tables(settings: Settings) -> None:
    tables.bind(
        registry=settings.registry_table,
        audit=settings.audit_table,
        escalations=settings.escalations_table,
        region=settings.region,
        host=settings.endpoint_url,
    )


def escalation_port(settings: Settings) -> EscalationPort:
    """Slack when a channel is configured, else the record alone."""
    if settings.slack_channel and settings.slack_bot_token_secret:
        from .slack.port import SlackPort

        return SlackPort.from_settings(settings)
    return RecordOnly()


def org_directory(settings: Settings, metrics: MetricSink | None = None) -> Directory | None:
    """With OU/organization grants on, the container's Organizations directory (its cache lives
    as long as the Deps that hold it); None otherwise: OU/organization grants then decide
    nothing and Organizations is never called."""
    if not settings.organization_grants:
        return None
    from .organization import directory  # only deployments that use it pay for the import

    return directory(settings, metrics=metrics)


def build(
    settings: Settings | None = None,
    *,
    metrics: MetricSink | None = None,
    port: EscalationPort | None = None,
) -> Deps:
    settings = settings or Settings.from_env()
    bind_tables(settings)
    return Deps(
        ec2=Ec2(ec2_client(settings), ids_per_call=settings.ids_per_call),
        registry=Registry(
            allow_wildcard_principal=settings.allow_wildcard_principal,
            directory=org_directory(settings, metrics),
        ),
        audit=Audit(),
        escalations=Escalations(),
        port=port if port is not None else escalation_port(settings),
        settings=settings,
        metrics=metrics if metrics is not None else NoMetrics(),
    )


@functools.cache
def default_deps() -> Deps:
    """The container-wide Deps of a Lambda handler (reset with default_deps.cache_clear())."""
    from .observability import metrics

    return build(metrics=metrics)
