"""docs/DEPLOY.md's commands work as written: every `make` target it names exists, and its
`vpce-approver` commands run, in the page's order, against the emulator (the steps that can run
offline: enroll, grant, explain, read the would-decisions)."""

from __future__ import annotations

import re
import shlex

import pytest

from vpce_tools.cli import main
from vpce_tools.emulator.world import Provider
from vpce_tools.stack import LocalDeployment

from .conftest import ROOT

DEPLOY = (ROOT / "docs" / "DEPLOY.md").read_text(encoding="utf-8")
STACK = "vpce-approver-dev"  # what the page exports as VPCE_APPROVER_STACK
DOC_SERVICE = "vpce-svc-0123456789abcdef0"
DOC_ENDPOINT = "vpce-0123456789abcdef0"
DOC_CONSUMER = "111122223333"
OFFLINE_ONLY = {"local"}  # a server: `vpce-approver local` is walked by tests/local


def shell_lines() -> list[str]:
    """Every command line of the page's ```sh blocks (continuations joined, comments dropped)."""
    lines = []
    for block in DEPLOY.split("```sh")[1:]:
        body = block.split("```", 1)[0].replace("\\\n", " ")
        for line in body.splitlines():
            command = line.split("  #", 1)[0].strip()
            if command:
                lines.append(command)
    return lines


def test_every_make_target_the_page_names_exists() -> None:
    targets = set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), re.M))
    named = {t for line in shell_lines() if line.startswith("make ") for t in line.split()[1:]}
    named = {t for t in named if not t.startswith("-") and t != "&&"} - {"sam", "deploy"}
    assert {"venv", "sam-tool", "validate", "scan", "build"} <= named
    assert named <= targets, sorted(named - targets)


def test_sam_and_the_cli_are_called_by_the_paths_the_page_sets_up() -> None:
    assert 'export PATH="$PWD/.venv/bin:$PWD/.tools/sam/bin:$PATH"' in shell_lines()
    makefile = (ROOT / "Makefile").read_text()
    assert "SAM_VENV := .tools/sam" in makefile
    assert "VENV := .venv" in makefile


def test_the_cli_steps_run_as_written_on_the_emulator(
    provider: Provider, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment = LocalDeployment.create(
        provider,
        registry_table=f"{STACK}-registry",
        audit_table=f"{STACK}-audit",
        escalations_table=f"{STACK}-escalations",
    )
    service = provider.create_service(acceptance_required=True)
    monkeypatch.setenv("VPCE_APPROVER_STACK", STACK)
    monkeypatch.setenv("NOTIFICATION_TOPIC_ARN", deployment.topic_arn)  # as in "Try it offline"
    names = {DOC_SERVICE: service.service_id}
    commands = [line for line in shell_lines() if line.startswith("vpce-approver ")]
    assert len(commands) >= 7
    ran = []
    for line in commands:
        argv = shlex.split(line)[1:]
        if argv[0] in OFFLINE_ONLY:
            continue
        if DOC_ENDPOINT in argv and DOC_ENDPOINT not in names:
            # the page's step 5: the consumer creates its endpoint after the grant
            consumer = provider.consumer(DOC_CONSUMER)
            names[DOC_ENDPOINT] = consumer.create_endpoint(service.service_name)
        argv = [names.get(a, a) for a in argv]
        code = main(argv)
        out, err = capsys.readouterr()
        assert code == 0, (line, out, err)
        ran.append(argv[0])
    assert {"services", "registry", "explain", "audit", "pending", "sweep"} <= set(ran)
    deps = deployment.deps()
    assert deps.registry.is_managed(service.service_id)
    assert deps.registry.get(service.service_id, DOC_CONSUMER) is not None


def test_the_suggested_scp_is_a_valid_policy_protecting_the_tag_and_the_registry() -> None:
    import json

    section = DEPLOY.split("## IAM for people", 1)[1].split("\n## ", 1)[0]
    policy = json.loads(section.split("```json", 1)[1].split("```", 1)[0])
    tag, registry = policy["Statement"]
    assert (tag["Effect"], registry["Effect"]) == ("Deny", "Deny")
    assert set(tag["Action"]) == {"ec2:CreateTags", "ec2:DeleteTags"}
    assert tag["Condition"]["ForAnyValue:StringEquals"]["aws:TagKeys"] == ["vpce-approver:managed"]
    assert "dynamodb:PutItem" in registry["Action"]
    assert registry["Resource"].endswith("-registry")
