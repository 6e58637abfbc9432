"""`vpce-approver invoke <LogicalId> --event events/x.json`: the docker-free `sam local invoke`.

Reads template.yaml, resolves the function's Handler and Environment (Globals + function; `!Ref` of
a table -> `<stack>-registry`, of a parameter -> its default or `--parameter NAME=VALUE`; then
`--env-file` and `--set` override), imports the handler in-process and calls it with the event and a
fake LambdaContext whose remaining time counts down from the function's Timeout. AWS calls go to
the emulator (`--endpoint-url` / AWS_ENDPOINT_URL): invoke refuses to run without one, so it never
acts on a real account. The handler's result is printed as JSON on stdout; its logs and metrics go
to stderr. A handler that raises prints Lambda's error shape and exits 1.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import hmac
import importlib
import json
import os
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import template as cfn_template
from ..cli import environ
from ..intrinsics import ResolveError, Resolver

FUNCTION_TYPES = ("AWS::Serverless::Function",)
DEFAULT_ACCOUNT = "123456789012"  # the emulator's default account


@dataclass(frozen=True)
class FunctionSpec:
    """What Lambda would run for one function of the template."""

    logical_id: str
    handler: str
    timeout: float
    memory: int
    environment: dict[str, str]
    code_uri: Path
    function_name: str
    region: str
    account: str = DEFAULT_ACCOUNT


@dataclass
class FakeContext:
    """The attributes of Lambda's context object that handlers and Powertools read."""

    function_name: str
    memory_limit_in_mb: int
    invoked_function_arn: str
    timeout: float
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "local"
    _deadline: float = 0.0

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout
        self.log_group_name = self.log_group_name or f"/aws/lambda/{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def function_ids(template: Mapping[str, Any]) -> list[str]:
    """Logical IDs of every function in the template, in template order."""
    return [
        logical_id
        for logical_id, resource in (template.get("Resources") or {}).items()
        if resource.get("Type") in FUNCTION_TYPES
    ]


def _stringify(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def function_spec(
    logical_id: str,
    *,
    stack: str = "vpce-approver",
    region: str = "us-east-1",
    account: str = DEFAULT_ACCOUNT,
    parameters: Mapping[str, str] | None = None,
    template_path: Path = cfn_template.TEMPLATE,
    queue_url_base: str | None = None,
) -> FunctionSpec:
    """Resolve one function's handler, timeout, memory and environment from the template."""
    template = cfn_template.load(template_path)
    ids = function_ids(template)
    if logical_id not in ids:
        raise ResolveError(
            f"{logical_id!r} is not a function of {template_path.name}; "
            f"functions: {', '.join(ids) or 'none'}"
        )
    resolver = Resolver(
        template,
        stack=stack,
        region=region,
        account=account,
        parameters=dict(parameters or {}),
        queue_url_base=queue_url_base,
    )
    glob = (template.get("Globals") or {}).get("Function") or {}
    props = template["Resources"][logical_id].get("Properties") or {}
    merged = {**glob, **props}
    handler = merged.get("Handler")
    if not isinstance(handler, str) or "." not in handler:
        raise ResolveError(f"{logical_id} has no Handler of the form module.function")
    variables: dict[str, Any] = {
        **((glob.get("Environment") or {}).get("Variables") or {}),
        **((props.get("Environment") or {}).get("Variables") or {}),
    }
    environment = {
        key: _stringify(value)
        for key, value in resolver.resolve(variables).items()
        if value is not None
    }
    return FunctionSpec(
        logical_id=logical_id,
        handler=handler,
        timeout=float(resolver.resolve(merged.get("Timeout", 3))),
        memory=int(resolver.resolve(merged.get("MemorySize", 128))),
        environment=environment,
        code_uri=(template_path.parent / str(merged.get("CodeUri", "."))).resolve(),
        function_name=resolver.physical_name(logical_id),
        region=region,
        account=account,
    )


def lambda_environment(
    spec: FunctionSpec, overrides: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The variables Lambda sets, then the function's, then the overrides."""
    env = {
        "AWS_REGION": spec.region,
        "AWS_DEFAULT_REGION": spec.region,
        "AWS_LAMBDA_FUNCTION_NAME": spec.function_name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "_HANDLER": spec.handler,
        # No X-Ray daemon locally: Powertools' tracer would only complain.
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    env.update(spec.environment)
    env.update(overrides or {})
    return env


def load_handler(spec: FunctionSpec) -> Callable[[Any, Any], Any]:
    module_name, _, attribute = spec.handler.rpartition(".")
    code_root = str(spec.code_uri)
    if code_root not in sys.path:
        sys.path.append(code_root)  # normally already importable (editable install)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ResolveError(f"{spec.logical_id}: cannot import {module_name}: {exc}") from exc
    handler = getattr(module, attribute, None)
    if not callable(handler):
        raise ResolveError(f"{spec.logical_id}: {spec.handler} is not a function")
    return handler  # type: ignore[no-any-return]


def reset_containers() -> None:
    """Forget what a previous invocation cached per container: clients, table bindings, the
    Slack handlers' services and the sweep cursor's and lease's connections."""
    from pynamodb.models import Model

    from vpce_approver import runtime, tables
    from vpce_approver.handlers import slack_interactivity, slack_worker
    from vpce_approver.sweep import CursorItem
    from vpce_approver.sweep.lease import LeaseItem

    runtime.default_deps.cache_clear()
    slack_interactivity.default_services.cache_clear()
    slack_worker.default_services.cache_clear()
    models: tuple[type[Model], ...] = (*tables.ALL_MODELS, CursorItem, LeaseItem)
    for model in models:
        model._connection = None


def invoke(spec: FunctionSpec, event: Any, *, overrides: Mapping[str, str] | None = None) -> Any:
    """Run the function's handler in-process with its Lambda environment (restored afterwards)."""
    context = FakeContext(
        function_name=spec.function_name,
        memory_limit_in_mb=spec.memory,
        invoked_function_arn=(
            f"arn:aws:lambda:{spec.region}:{spec.account}:function:{spec.function_name}"
        ),
        timeout=spec.timeout,
    )
    with environ(lambda_environment(spec, overrides)):
        reset_containers()
        try:
            return load_handler(spec)(event, context)
        finally:
            reset_containers()


def is_slack_request(event: Any) -> bool:
    """An API Gateway event carrying Slack's signature headers."""
    headers = event.get("headers") if isinstance(event, Mapping) else None
    return isinstance(headers, Mapping) and "x-slack-signature" in {k.lower() for k in headers}


def sign_slack_request(
    event: Mapping[str, Any], secret: str, now: float | None = None
) -> dict[str, Any]:
    """The API Gateway event re-signed as Slack would sign it now (the handler rejects requests
    older than 5 minutes, so a stored payload must be signed again before each local run)."""
    body = event.get("body") or ""
    raw = base64.b64decode(body) if event.get("isBase64Encoded") else str(body).encode("utf-8")
    timestamp = str(int(time.time() if now is None else now))
    digest = hmac.new(
        secret.encode("utf-8"), b"v0:" + timestamp.encode("ascii") + b":" + raw, hashlib.sha256
    ).hexdigest()
    headers = {
        k: v
        for k, v in (event.get("headers") or {}).items()
        if k.lower() not in {"x-slack-signature", "x-slack-request-timestamp"}
    }
    headers["x-slack-request-timestamp"] = timestamp
    headers["x-slack-signature"] = f"v0={digest}"
    return {**event, "headers": headers}


# ---------------------------------------------------------------------- command line
def read_env_file(path: Path, logical_id: str) -> dict[str, str]:
    """KEY=VALUE lines (# comments, optional quotes), or SAM's --env-vars JSON:
    {"Parameters": {...}, "<LogicalId>": {...}} (both sections apply)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read --env-file {path}: {exc.strerror}") from None
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"--env-file {path} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError(f"--env-file {path}: expected an object of sections")
        out: dict[str, str] = {}
        for section in ("Parameters", logical_id):
            values = data.get(section) or {}
            if not isinstance(values, dict):
                raise ValueError(f"--env-file {path}: section {section!r} is not an object")
            out.update({str(k): _stringify(v) for k, v in values.items()})
        return out
    env: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.removeprefix("export ").partition("=")
        if not sep or not key.strip().isidentifier():
            raise ValueError(f"--env-file {path}:{number}: expected KEY=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        env[key.strip()] = value
    return env


def _pairs(items: list[str], option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{option} {item!r}: expected NAME=VALUE")
        out[key] = value
    return out


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "invoke",
        help="run one function of template.yaml in-process against the emulator",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("function", metavar="LogicalId", help="e.g. NotificationFunction")
    p.add_argument("--event", "-e", required=True, help="event JSON file ('-' reads stdin)")
    p.add_argument(
        "--env-file",
        type=Path,
        help="KEY=VALUE lines, or SAM --env-vars JSON ({'Parameters': {...}, LogicalId: {...}})",
    )
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="environment override"
    )
    p.add_argument(
        "--parameter",
        "-p",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="template parameter value (default: the parameter's Default)",
    )
    p.add_argument(
        "--slack-signing-secret",
        metavar="SECRET",
        help="re-sign a Slack request event with this secret and the current time",
    )
    p.add_argument("--template", type=Path, default=cfn_template.TEMPLATE)
    p.set_defaults(run=run)


def _read_event(source: str) -> Any:
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read --event {source}: {exc.strerror}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ValueError(f"--event {source} is not valid JSON: {exc}") from None


def ensure_queues(spec: FunctionSpec, sqs: Any, queue_url_base: str) -> list[str]:
    """Create (empty) the queues the function's environment names under `queue_url_base`, as
    the deployed stack would have them; returns their names."""
    prefix = f"{queue_url_base.rstrip('/')}/{spec.account}/"
    names = [v.removeprefix(prefix) for v in spec.environment.values() if v.startswith(prefix)]
    for name in names:
        sqs.create_queue(QueueName=name)
    return names


def run(args: argparse.Namespace) -> int:
    from ..cli import UsageError

    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if not endpoint:
        raise UsageError(
            "invoke runs against the emulator only: pass --endpoint-url "
            "(see `vpce-approver local`) or set AWS_ENDPOINT_URL"
        )
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    try:
        event = _read_event(args.event)
        overrides: dict[str, str] = {}
        parameters = _pairs(args.parameter, "--parameter")
        if args.env_file:
            overrides.update(read_env_file(args.env_file, args.function))
        overrides.update(_pairs(args.set, "--set"))
        spec = function_spec(
            args.function,
            stack=args.stack,
            region=region,
            parameters=parameters,
            template_path=args.template.resolve(),
            queue_url_base=endpoint,
        )
    except (ValueError, KeyError) as exc:
        raise UsageError(str(exc)) from None
    if args.slack_signing_secret:
        if not is_slack_request(event):
            raise UsageError("--slack-signing-secret: the event has no x-slack-signature header")
        event = sign_slack_request(event, args.slack_signing_secret)
    import boto3

    ensure_queues(spec, boto3.client("sqs", region_name=region, endpoint_url=endpoint), endpoint)
    with contextlib.redirect_stdout(sys.stderr):  # logs and EMF metrics are not the result
        try:
            result = invoke(spec, event, overrides=overrides)
        except Exception as exc:
            error = {
                "errorMessage": str(exc),
                "errorType": type(exc).__name__,
                "stackTrace": traceback.format_exception(exc),
            }
            failed = True
        else:
            failed = False
    print(json.dumps(error if failed else result, indent=2, default=str))
    return 1 if failed else 0
