"""Every CLI command against the emulator server through --endpoint-url (as against real AWS:
the CLI talks HTTP to an endpoint; nothing is mocked in-process)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import CONSUMER
from vpce_tools.cli import main
from vpce_tools.emulator.testing import emulator_server
from vpce_tools.emulator.world import Provider
from vpce_tools.stack import LocalDeployment
from vpce_tools.stream_poller import registry_poller


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.delenv("NOTIFICATION_TOPIC_ARN", raising=False)
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):  # main() sets them from --region
        monkeypatch.setenv(name, "us-east-1")
    with emulator_server() as url:
        monkeypatch.setenv("AWS_ENDPOINT_URL", url)  # restored after the test
        yield url


def test_every_command_through_endpoint_url(
    server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    provider = Provider(endpoint_url=server)
    deployment = LocalDeployment.create(provider)
    svc = provider.create_service()
    consumer = provider.consumer(CONSUMER)
    stream = registry_poller(deployment, start="LATEST")

    def cli(*argv: str) -> tuple[int, str]:
        capsys.readouterr()
        code = main(["--endpoint-url", server, "--region", "us-east-1", *argv])
        out, err = capsys.readouterr()
        return code, out + err

    code, out = cli("services", "add", svc.service_id, "--topic-arn", deployment.topic_arn)
    assert code == 0, out
    assert cli("services", "list")[1].count(svc.service_id) == 1
    vpce = consumer.create_endpoint(svc.service_name)
    deployment.poller().drain()  # escalated: no grant yet

    code, out = cli("pending", "--format", "json")
    assert [(r["vpc_endpoint_id"], r["code"]) for r in json.loads(out)] == [(vpce, "no-grant")]
    assert "decision    escalate [no-grant]" in cli("explain", vpce)[1]

    assert cli("registry", "add", svc.service_id, CONSUMER, "--by", "alice")[0] == 0
    stream.drain()  # the edit takes effect: the waiting connection is accepted
    assert provider.connections(svc.service_id)[0]["VpcEndpointState"] == "available"
    assert f"arn:aws:iam::{CONSUMER}:root" in cli("explain", vpce)[1]
    assert (
        json.loads(cli("registry", "show", svc.service_id, CONSUMER, "-o", "json")[1])["updated_by"]
        == "alice"
    )
    assert CONSUMER in cli("registry", "list")[1]

    export = tmp_path / "grants.csv"
    assert cli("registry", "export", "-o", "csv", "--file", str(export))[0] == 0
    code, out = cli("registry", "import", str(export))
    assert (code, "1 unchanged" in out) == (0, True)

    suspend = ("registry", "suspend", svc.service_id, CONSUMER, "--revoke", "--by", "bob", "--yes")
    assert cli(*suspend)[0] == 0
    stream.drain()
    assert provider.connections(svc.service_id)[0]["VpcEndpointState"] == "rejected"
    assert cli("registry", "remove", svc.service_id, CONSUMER, "--by", "carol", "--yes")[0] == 0
    stream.drain()

    code, out = cli("audit", "--consumer", CONSUMER, "--format", "json")
    actions = [(r["action"], r["actor"]) for r in json.loads(out)]
    assert ("grant-added", "registry:alice") in actions
    assert ("grant-removed", "registry:carol") in actions
    assert ("reject", "registry:bob") in actions

    code, out = cli("doctor", vpce, "--format", "json")
    verdicts = {c["name"]: c["verdict"] for c in json.loads(out)["checks"]}
    assert verdicts["connection state"] == "fail"  # rejected
    assert verdicts["managed"] == "ok"
    assert cli("services", "remove", svc.service_id)[0] == 0
    assert cli("services", "list", "--format", "json")[1].strip() == "[]"


def test_global_options_do_not_outlive_the_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """`--endpoint-url`/`--region` reach boto3 through the environment for the command only: an
    in-process caller (tests, `invoke`) must not be left pointing at that endpoint."""
    import os

    from vpce_tools import cli

    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    seen: dict[str, str | None] = {}

    def spy(args: object) -> int:
        seen["url"] = os.environ.get("AWS_ENDPOINT_URL")
        seen["region"] = os.environ.get("AWS_REGION")
        return 0

    parser = cli.parser()
    monkeypatch.setattr(cli, "parser", lambda: parser)
    parser.set_defaults(run=spy)
    for action in parser._subparsers._group_actions:  # type: ignore[union-attr]
        for sub in action.choices.values():
            sub.set_defaults(run=spy)
    assert (
        cli.main(["--endpoint-url", "http://127.0.0.1:9", "--region", "eu-west-1", "pending"]) == 0
    )
    assert seen == {"url": "http://127.0.0.1:9", "region": "eu-west-1"}
    assert "AWS_ENDPOINT_URL" not in os.environ
    assert os.environ["AWS_REGION"] == "us-east-1"
