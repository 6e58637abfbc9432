"""Powertools Logger, Metrics (EMF) and Tracer, shared by every handler."""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics, Tracer

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "vpce-approver")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "VpceApprover")

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
tracer = Tracer(service=SERVICE)
