"""The CLI in scripts and on a terminal: --version, one output flag, a closed pipe, tables that
fit, confirmation of destructive verbs, typos caught before they are written."""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from cli_runner import Cli, cli_fixture  # noqa: F401 - provides the `cli` fixture

from conftest import CONSUMER, OTHER
from vpce_approver.model import Grant, GrantStatus
from vpce_approver.tables import RegistryItem
from vpce_tools import local
from vpce_tools.cli import parser
from vpce_tools.commands import _support
from vpce_tools.emulator.testing import fake_credentials
from vpce_tools.emulator.world import EndpointService, Provider
from vpce_tools.stack import LocalDeployment

SVC = "vpce-svc-0123456789abcdef0"


def stored() -> dict[tuple[str, str], RegistryItem]:
    return {(i.service_id, i.consumer): i for i in RegistryItem.scan() if i.consumer != "#service"}


def run(argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vpce_tools.cli", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | env,
    )


def test_version() -> None:
    from importlib.metadata import version

    result = run(["--version"])
    assert (result.returncode, result.stdout.strip()) == (
        0,
        f"vpce-approver {version('vpce-approver')}",
    )


def _walk(p: argparse.ArgumentParser, path: str = "") -> Iterator[tuple[str, argparse.Action]]:
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, f"{path} {name}".strip())
        else:
            yield path, action


def test_one_output_flag_everywhere_and_a_file_is_never_o() -> None:
    outputs: dict[str, list[str]] = {}
    for command, action in _walk(parser()):
        if "-o" in action.option_strings:
            assert action.dest == "format", command
            assert "--output" in action.option_strings, command
            outputs[command] = list(action.choices or [])
        if action.dest in {"file", "output_file"} and action.option_strings:
            assert "-o" not in action.option_strings, command
    assert outputs == {
        "registry list": ["table", "json", "yaml", "csv"],
        "registry show": ["yaml", "json"],
        "registry export": ["yaml", "csv"],
        "registry plan": ["table", "json", "yaml"],
        "services list": ["table", "json", "yaml"],
        "explain": ["table", "json", "yaml"],
        "pending": ["table", "json", "yaml"],
        "audit": ["table", "json", "yaml"],
        "doctor": ["table", "json"],
        "sweep": ["table", "json", "yaml"],
    }


@pytest.fixture
def busy_server() -> Iterator[local.LocalService]:
    """A local server whose registry lists more than a pipe buffer holds."""
    with fake_credentials():
        running = local.start(0, poll_interval=5)
        try:
            deps = running.deployment.deps()
            now = datetime.now(UTC)
            for n in range(700):
                deps.registry.put(
                    Grant(
                        running.service.service_id,
                        f"{100000000000 + n}",
                        GrantStatus.DENY,
                        note="x" * 60,
                    ),
                    by="test",
                    now=now,
                )
            yield running
        finally:
            running.stop()


def test_a_pipe_closed_early_ends_quietly(busy_server: local.LocalService) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | {
        "AWS_ENDPOINT_URL": busy_server.url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    for argv in ("registry list -o csv", "registry export", "registry list -o json"):
        result = subprocess.run(
            f"{sys.executable} -m vpce_tools.cli {argv} | head -1",
            shell=True,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env=env,
        )
        assert len(result.stdout.splitlines()) == 1, argv
        assert result.stderr == "", argv  # no traceback, no "Exception ignored"


def test_tables_wrap_prose_at_100_columns() -> None:
    out = io.StringIO()
    why = "account 111111111111 already has 3 endpoint(s) on the service; the grant allows 3 " * 2
    _support.table(
        [("2026-12-01T00:00:00Z", "slack:U0APPROVER", True, None, why)],
        ("AT", "ACTOR", "OK", "OUTCOME", "WHY"),
        out,
    )
    lines = out.getvalue().splitlines()
    assert all(len(line) <= 100 for line in lines), lines
    assert len(lines) > 2  # the reason wrapped onto continuation lines
    assert lines[1].split()[:5] == [
        "2026-12-01T00:00:00Z",
        "slack:U0APPROVER",
        "yes",
        "-",
        "account",
    ]
    column = lines[0].index("WHY")
    words = " ".join(line[column:].strip() for line in lines[1:]).split()
    assert words == why.split()  # nothing lost
    assert all(not line[:column].strip() for line in lines[2:])  # continuation lines: WHY only


def test_a_table_too_wide_for_columns_becomes_labelled_blocks() -> None:
    out = io.StringIO()
    ids = ["vpce-svc-0123456789abcdef0", "vpce-0a1b2c3d4e5f60718", "111111111111", "us-east-1"]
    header = ["SERVICE", "ENDPOINT", "OWNER", "REGION", "A", "B", "C", "D", "E"]
    row = [*ids, "x" * 12, "y" * 12, "z" * 12, "w" * 12, "why " * 8]
    _support.table([row, row], header, out)
    lines = out.getvalue().splitlines()
    assert all(len(line) <= 100 for line in lines), lines
    assert lines[0] == ids[0]
    assert lines[1].split() == ["ENDPOINT", ids[1]]  # an ID whole, under its label
    assert lines[8].split()[0] == "E"
    assert lines[9] == ids[0]  # the next row


def test_explain_and_audit_fit_100_columns_without_python_reprs(
    cli: Cli, deployment: LocalDeployment, service: EndpointService, provider: Provider
) -> None:
    deps = deployment.deps()
    deps.registry.put(
        Grant(
            service.service_id,
            CONSUMER,
            GrantStatus.SUSPENDED,
            revoke=True,
            owner="team-with-a-rather-long-name@example.com",
            note="suspended while the payments team rotates its credentials; ask them first",
            regions=frozenset({"us-east-1", "eu-west-1", "ap-southeast-2"}),
        ),
        by="test",
        now=datetime.now(UTC),
    )
    vpce = provider.consumer(CONSUMER).create_endpoint(service.service_name)
    deployment.poller().drain()
    for argv in (("explain", vpce), ("audit",), ("pending",), ("registry", "list")):
        code, out, _ = cli(*argv)
        assert code == 0, argv
        for line in out.splitlines():
            assert len(line) <= 100, (argv, line)
            for python_repr in ("True", "False", "None", "['", "{'"):
                assert python_repr not in line, (argv, line)
    out = cli("explain", vpce)[1]
    assert "revoke yes" in out


@pytest.mark.parametrize(
    "argv",
    [
        ("registry", "remove", SVC, CONSUMER),
        ("registry", "suspend", SVC, CONSUMER, "--revoke"),
    ],
)
def test_destructive_verbs_refuse_without_a_terminal_or_yes(
    cli: Cli, argv: tuple[str, ...]
) -> None:
    assert cli("registry", "add", "*", CONSUMER, "--by", "a")[0] == 0
    assert cli("registry", "add", SVC, CONSUMER, "--force", "--by", "a")[0] == 0
    before = {k: i.attribute_values for k, i in stored().items()}
    code, _, err = cli(*argv)
    assert code == 2
    assert err.strip().endswith("not confirmed (no terminal to ask on); add --yes to confirm")
    assert len(err.strip().splitlines()) == 1
    assert {k: i.attribute_values for k, i in stored().items()} == before
    assert cli(*argv, "--yes")[0] == 0
    assert {k: i.attribute_values for k, i in stored().items()} != before


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("answer", "code", "kept"), [("n\n", 2, True), ("y\n", 0, False)])
def test_on_a_terminal_remove_asks(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, answer: str, code: int, kept: bool
) -> None:
    assert cli("registry", "add", "*", OTHER, "--by", "a")[0] == 0
    monkeypatch.setattr(sys, "stdin", Terminal(answer))
    got, _, err = cli("registry", "remove", "*", OTHER)
    assert got == code
    assert f"remove the grant */{OTHER} (allow) [y/N]" in err
    assert (("*", OTHER) in stored()) is kept


def test_suspend_without_revocation_needs_no_confirmation(cli: Cli) -> None:
    assert cli("registry", "add", "*", OTHER, "--by", "a")[0] == 0
    code, out, _ = cli("registry", "suspend", "*", OTHER, "--no-revoke")
    assert code == 0
    assert "live connections stay" in out


def test_a_grant_for_a_service_not_enrolled_warns_and_needs_force(cli: Cli) -> None:
    code, _, err = cli("registry", "add", SVC, CONSUMER)
    assert code == 2
    assert "adding grants for a service that is not enrolled needs --force" in err
    assert stored() == {}
    code, _out, err = cli("registry", "add", SVC, CONSUMER, "--force")
    assert code == 0
    assert f"warning: not enrolled in stack vpce-approver: {SVC}" in err
    assert (SVC, CONSUMER) in stored()
    assert cli("registry", "add", "*", OTHER)[0] == 0  # `*` is every managed service


def test_an_unknown_region_in_an_import_is_a_row_error(cli: Cli, tmp_path: object) -> None:
    from pathlib import Path

    source = Path(str(tmp_path)) / "g.csv"
    source.write_text(f"service_id,consumer,regions\n*,{CONSUMER},us-east-1 us-eats-1\n")
    code, _, err = cli("registry", "import", str(source))
    assert code == 2
    assert "line 2: regions: 'us-eats-1' is not a region of this partition" in err
    assert stored() == {}
