"""`vpce-approver invoke` (docker-free local invoke) and the offline IAM evaluator of the checks."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from slack_sdk.signature import SignatureVerifier

from conftest import CONSUMER, grant
from vpce_tools import cli
from vpce_tools.commands import invoke
from vpce_tools.emulator.testing import emulator_server
from vpce_tools.emulator.world import Provider
from vpce_tools.intrinsics import ResolveError
from vpce_tools.policies import Statement, UnsupportedCondition
from vpce_tools.stack import LocalDeployment

from .conftest import ENDPOINT_ALLOWED, EVENTS, SERVICE, SLACK_TEST_SIGNING_SECRET

SLACK_EVENT = EVENTS / "SlackInteractivityFunction/apigw-block-actions-approve.json"


def test_environment_comes_from_globals_function_and_parameters() -> None:
    spec = invoke.function_spec("NotificationFunction", stack="blue")
    env = spec.environment
    assert env["REGISTRY_TABLE"] == "blue-registry"
    assert env["AUDIT_TABLE"] == "blue-audit"
    assert env["DEPLOYMENT_NAME"] == "blue"
    assert env["DEFAULT_DECISION"] == "escalate"  # the parameter's default
    assert env["POWERTOOLS_SERVICE_NAME"] == "vpce-approver"
    assert spec.handler == "vpce_approver.handlers.notifications.handler"
    assert spec.timeout == 60
    tuned = invoke.function_spec(
        "NotificationFunction", parameters={"DefaultDecision": "reject", "SlackApprovers": "U1,U2"}
    )
    assert tuned.environment["DEFAULT_DECISION"] == "reject"
    assert tuned.environment["SLACK_APPROVERS"] == "U1,U2"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"logical_id": "NoSuchFunction"}, "not a function"),
        ({"logical_id": "RegistryTable"}, "not a function"),
        ({"logical_id": "NotificationFunction", "parameters": {"Nope": "1"}}, "unknown"),
        (
            {"logical_id": "NotificationFunction", "parameters": {"DefaultDecision": "maybe"}},
            "expected one of",
        ),
    ],
)
def test_bad_function_or_parameters_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ResolveError, match=message):
        invoke.function_spec(**kwargs)  # type: ignore[arg-type]


def test_env_file_accepts_dotenv_and_sam_env_vars(tmp_path: Path) -> None:
    dotenv = tmp_path / "local.env"
    dotenv.write_text('# comment\nexport SHADOW_MODE=true\nSLACK_CHANNEL="C123"\n\n')
    assert invoke.read_env_file(dotenv, "NotificationFunction") == {
        "SHADOW_MODE": "true",
        "SLACK_CHANNEL": "C123",
    }
    sam = tmp_path / "env.json"
    sam.write_text(
        json.dumps(
            {
                "Parameters": {"SHADOW_MODE": True, "LOG": "x"},
                "NotificationFunction": {"LOG": "y"},
                "OtherFunction": {"LOG": "z"},
            }
        )
    )
    assert invoke.read_env_file(sam, "NotificationFunction") == {"SHADOW_MODE": "true", "LOG": "y"}
    bad = tmp_path / "bad.env"
    bad.write_text("JUST A LINE\n")
    with pytest.raises(ValueError, match=r"bad.env:1: expected KEY=VALUE"):
        invoke.read_env_file(bad, "NotificationFunction")


def test_slack_request_is_resigned_so_the_verifier_accepts_it() -> None:
    event = json.loads(SLACK_EVENT.read_text())
    assert invoke.is_slack_request(event)
    signed = invoke.sign_slack_request(event, SLACK_TEST_SIGNING_SECRET, now=1_800_000_000)
    headers = signed["headers"]
    body = base64.b64decode(signed["body"])
    verifier = SignatureVerifier(SLACK_TEST_SIGNING_SECRET, clock=_FixedClock(1_800_000_010))
    stamp, signature = headers["x-slack-request-timestamp"], headers["x-slack-signature"]
    assert verifier.is_valid(body, stamp, signature)
    other = SignatureVerifier("another-secret", clock=_FixedClock(1_800_000_010))
    assert not other.is_valid(body, stamp, signature)


class _FixedClock:
    def __init__(self, now: float) -> None:
        self._now = now

    def now(self) -> float:
        return self._now


def test_cli_refuses_to_run_without_the_emulator(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["invoke", "NotificationFunction", "--event", str(SLACK_EVENT)])
    assert code == 2
    assert "emulator only" in capsys.readouterr().err


def test_cli_reports_unknown_functions(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(
        ["--endpoint-url", "http://127.0.0.1:9", "invoke", "Nope", "--event", str(SLACK_EVENT)]
    )
    assert code == 2
    assert "NotificationFunction" in capsys.readouterr().err  # lists the real functions


def test_cli_invokes_the_handler_against_the_emulator(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with emulator_server() as url:
        provider = Provider(endpoint_url=url)
        deployment = LocalDeployment.create(provider)
        svc = provider.create_service()
        deployment.enroll(svc)
        deployment.deps().registry.put(grant(svc.service_id), by="test", now=_now())
        vpce = provider.consumer(CONSUMER).create_endpoint(svc.service_name)
        text = (EVENTS / "NotificationFunction/sqs-connect.json").read_text()
        event = tmp_path / "connect.json"
        event.write_text(text.replace(SERVICE, svc.service_id).replace(ENDPOINT_ALLOWED, vpce))
        monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
        code = cli.main(
            ["--endpoint-url", url, "invoke", "NotificationFunction", "--event", str(event)]
        )
        out = capsys.readouterr().out
        assert code == 0, out
        assert json.loads(out) == {"batchItemFailures": []}
        [connection] = provider.connections(svc.service_id)
        assert connection["VpcEndpointState"] == "available"


def _now() -> datetime:
    return datetime.now(UTC)


# ---------------------------------------------------------------------- the IAM evaluator
MANAGED = "aws:ResourceTag/vpce-approver:managed"
SERVICE_ARN = "arn:aws:ec2:us-east-1:123456789012:vpc-endpoint-service/vpce-svc-0123456789abcdef0"
ANY_SERVICE = "arn:aws:ec2:*:*:vpc-endpoint-service/*"
ACCEPT = "ec2:AcceptVpcEndpointConnections"
DESCRIBE = "ec2:DescribeVpcEndpointConnections"
TAGGED = {"StringEquals": {MANAGED: "vpce-approver"}}
TABLE = "arn:aws:dynamodb:us-east-1:1:table/t"


def statement(**raw: object) -> Statement:
    return Statement.from_json({"Effect": "Allow", **raw}, "test")


@pytest.mark.parametrize(
    ("raw", "action", "resource", "context", "expected"),
    [
        ({"Action": "ec2:Describe*", "Resource": "*"}, DESCRIBE, "*", {}, True),
        ({"Action": "EC2:describe*", "Resource": "*"}, DESCRIBE, "*", {}, True),
        ({"Action": "ec2:Describe*", "Resource": "*"}, ACCEPT, "*", {}, False),
        ({"NotAction": "ec2:*", "Resource": "*"}, "dynamodb:GetItem", "*", {}, True),
        ({"NotAction": "ec2:*", "Resource": "*"}, DESCRIBE, "*", {}, False),
        ({"Action": ACCEPT, "Resource": ANY_SERVICE, "Condition": TAGGED},
         ACCEPT, SERVICE_ARN, {MANAGED: "vpce-approver"}, True),
        ({"Action": ACCEPT, "Resource": ANY_SERVICE, "Condition": TAGGED},
         ACCEPT, SERVICE_ARN, {}, False),
        ({"Action": ACCEPT, "Resource": ANY_SERVICE, "Condition": TAGGED},
         ACCEPT, SERVICE_ARN, {MANAGED: "another-stack"}, False),
        ({"Action": "ec2:*", "Resource": "*",
          "Condition": {"StringEqualsIfExists": {MANAGED: "x"}}}, ACCEPT, SERVICE_ARN, {}, True),
        ({"Action": "ec2:*", "Resource": "*", "Condition": {"StringNotEquals": {MANAGED: "x"}}},
         ACCEPT, SERVICE_ARN, {MANAGED: "x"}, False),
        ({"Action": "dynamodb:GetItem", "Resource": TABLE},
         "dynamodb:GetItem", f"{TABLE}/index/i", {}, False),
        ({"Action": "dynamodb:Query", "Resource": f"{TABLE}/index/*"},
         "dynamodb:Query", f"{TABLE}/index/i", {}, True),
        ({"Action": "dynamodb:Query", "Resource": f"{TABLE}/index/*"},
         "dynamodb:Query", f"{TABLE}x/index/i", {}, False),
    ],
)  # fmt: skip
def test_statement_matching(
    raw: dict[str, object], action: str, resource: str, context: dict[str, str], expected: bool
) -> None:
    assert statement(**raw).applies(action, resource, context) is expected


def test_unknown_condition_keys_and_operators_are_not_guessed() -> None:
    with pytest.raises(UnsupportedCondition, match="aws:SourceVpc"):
        statement(
            Action="*", Resource="*", Condition={"StringEquals": {"aws:SourceVpc": "vpc-1"}}
        ).applies("ec2:X", "*", {})
    with pytest.raises(UnsupportedCondition, match="DateGreaterThan"):
        statement(
            Action="*", Resource="*", Condition={"DateGreaterThan": {MANAGED: "2020"}}
        ).applies("ec2:X", "*", {MANAGED: "x"})
