"""Powertools Logger, Metrics (EMF) and Tracer, shared by every handler.

The X-Ray SDK builds a botocore client when it is imported (~100 ms, more than boto3 itself), so
the Tracer is created on the first invocation instead of at import: the decision handler's import
stays light (see docs/BENCHMARKS.md, P3) and tracing is unchanged once the function runs."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from numbers import Number
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Metrics, Tracer

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "vpce-approver")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "VpceApprover")

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
# Every metric also carries the deployment (the stack name), so two stacks in one account and
# region never feed each other's alarms (template.yaml's alarms and dashboard use both dimensions).
if os.environ.get("DEPLOYMENT_NAME"):
    metrics.set_default_dimensions(deployment=os.environ["DEPLOYMENT_NAME"])

F = TypeVar("F", bound=Callable[..., Any])


class LazyTracer:
    """Powertools Tracer, instantiated on first use."""

    def __init__(self) -> None:
        self._tracer: Tracer | None = None

    @property
    def real(self) -> Tracer:
        if self._tracer is None:
            self._tracer = Tracer(service=SERVICE)
        return self._tracer

    def capture_lambda_handler(self, handler: F) -> F:
        wrapped: Callable[..., Any] | None = None

        @functools.wraps(handler)
        def run(event: Any, context: Any) -> Any:
            nonlocal wrapped
            if wrapped is None:
                wrapped = self.real.capture_lambda_handler(handler)
            return wrapped(event, context)

        return run  # type: ignore[return-value]

    def capture_method(self, method: F) -> F:
        wrapped: Callable[..., Any] | None = None

        @functools.wraps(method)
        def run(*args: Any, **kwargs: Any) -> Any:
            nonlocal wrapped
            if wrapped is None:
                wrapped = self.real.capture_method(method)
            return wrapped(*args, **kwargs)

        return run  # type: ignore[return-value]

    def put_annotation(self, key: str, value: str | Number | bool) -> None:
        self.real.put_annotation(key=key, value=value)


tracer = LazyTracer()
