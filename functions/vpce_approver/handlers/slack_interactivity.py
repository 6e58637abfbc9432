"""Slack interactivity: API Gateway HTTP API -> POST /slack/interactivity -> here.

Verifies the signature, checks the clicker, queues the job (SLACK_WORK_QUEUE_URL) and answers 200
at once; the SlackWorkerFunction does the rest. Bad or stale signature: 401, nothing queued; any
other malformed request a 4xx (slack/inbound.py), never an error."""

from __future__ import annotations

import functools
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.utilities.typing import LambdaContext

from ..observability import logger, metrics, tracer
from ..runtime import default_deps
from ..slack.client import SlackConfigError
from ..slack.services import SlackServices

PATH = "/slack/interactivity"

app = APIGatewayHttpResolver()


@functools.cache
def default_services() -> SlackServices:
    return SlackServices.build(default_deps())


@app.post(PATH)
def interactivity() -> Response[str]:
    services: SlackServices = app.context.get("services") or default_services()
    event = app.current_event
    try:
        reply = services.interactivity().handle(
            dict(event.headers), event.body, bool(event.is_base64_encoded)
        )
    except SlackConfigError as exc:
        logger.error("slack interactivity is misconfigured", extra={"error": exc.code})
        metrics.add_metric("SlackErrors", "Count", 1)
        return Response(500, "text/plain", "vpce-approver is not configured for Slack")
    if not reply.signed:  # malformed, oversized, unsigned, forged or stale: all 4xx
        metrics.add_metric("SlackBadSignatures", "Count", 1)
    elif reply.status == 200:
        metrics.add_metric("SlackClicks", "Count", 1)
    return Response(reply.status, "text/plain", reply.body)


def resolve(event: dict[str, Any], services: SlackServices, context: Any = None) -> dict[str, Any]:
    """Run the route with explicit services (tests and the local stand-in, in-process)."""
    app.append_context(services=services)  # type: ignore[no-untyped-call]
    return app.resolve(event, context)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
