"""IAM for people: the stack's managed policies for registry editors, service enrollers and
read-only auditors allow exactly what their CLI commands call (recorded on the emulator), and no
more than their role: an auditor writes nothing, an enroller cannot grant, an editor cannot tag.

Whoever can write the registry table decides who reaches the network (docs/DEPLOY.md, "IAM for
people"): only RegistryEditorPolicy writes grants."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from conftest import THIRD
from vpce_tools import policies
from vpce_tools.cli import main
from vpce_tools.commands import invoke

from .conftest import CallRecorder, World

PEOPLE = {
    "registry-editor": "RegistryEditorPolicy",
    "service-enroller": "ServiceEnrollerPolicy",
    "auditor": "AuditorPolicy",
}
MANAGED_TAG = "vpce-approver:managed"


def person_policy(transformed: dict[str, Any], logical_id: str) -> policies.FunctionPolicy:
    res = policies.resolver(transformed)
    document = res.resolve(transformed["Resources"][logical_id]["Properties"]["PolicyDocument"])
    statements = [policies.Statement.from_json(s, logical_id) for s in document["Statement"]]
    return policies.FunctionPolicy(logical_id, "-", statements)


SERVICE = "vpce-svc-0e5a1b2c3d4e5f607"  # the world's managed service (tests/template/conftest.py)
ESCALATED = "vpce-0c3d4e5f607182930"
NEW = "<new service>"  # an endpoint service created for the enroller
Commands = list[list[str]]


def editor_commands() -> Commands:
    grant = [SERVICE, "444444444444"]
    return [
        ["registry", "add", *grant, "--owner", "team", "--note", "t", "--expires", "90d"],
        ["registry", "list"],
        ["registry", "show", *grant],
        ["registry", "suspend", *grant],
        ["registry", "remove", *grant, "--yes"],  # destructive: confirmed for a script
        ["registry", "export"],
    ]


def enroller_commands() -> Commands:
    return [
        ["services", "add", NEW, "--name", "ledger", "--topic-arn", "<topic>"],
        ["services", "add", NEW, "--topic-arn", "<topic>"],  # again: reuses the notification
        ["services", "list"],
        ["services", "remove", NEW],
    ]


def auditor_commands() -> Commands:
    return [
        ["registry", "list"],
        ["services", "list"],
        ["explain", ESCALATED],
        ["pending"],
        ["audit", "--consumer", THIRD],
        ["audit", "--since", "1d"],
        ["doctor", SERVICE],
        ["doctor", ESCALATED],
    ]


SESSIONS: dict[str, Callable[[], Commands]] = {
    "registry-editor": editor_commands,
    "service-enroller": enroller_commands,
    "auditor": auditor_commands,
}
OK_CODES = {"doctor": {0, 1}}  # doctor exits 1 when a check fails (not an error)


def _tags(world: World, resource: str) -> dict[str, str]:
    if ":vpc-endpoint-service/" not in resource:
        return {}
    return world.tags(resource.rsplit("/", 1)[-1])


def _context(tags: dict[str, str], call: policies.Call) -> dict[str, str]:
    context = {f"aws:ResourceTag/{k}": v for k, v in tags.items()}
    context |= {f"ec2:ResourceTag/{k}": v for k, v in tags.items()}
    for tag in call.params.get("Tags") or []:
        if "Value" in tag:  # CreateTags; DeleteTags may name keys only
            context[f"aws:RequestTag/{tag['Key']}"] = tag["Value"]
    return context


@pytest.mark.parametrize("person", list(PEOPLE))
def test_each_person_can_run_their_commands(
    world: World,
    recorder: CallRecorder,
    transformed: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
    person: str,
) -> None:
    """Each command's calls are checked against the resource's tags before and after it (a
    command changes the managed tag at most once, so each call saw one of the two)."""
    policy = person_policy(transformed, PEOPLE[person])
    new_service = world.provider.create_service(acceptance_required=True).service_id
    names = {**world.ids, NEW: new_service, "<topic>": world.deployment.topic_arn}
    invoke.reset_containers()  # table clients made before the recorder would go unseen
    refused: list[str] = []
    calls = 0
    for command in SESSIONS[person]():
        argv = [names.get(a, a) for a in command]
        services = [a for a in argv if a.startswith("vpce-svc-")]
        arn = f"arn:aws:ec2:{policies.REGION}:{policies.ACCOUNT}:vpc-endpoint-service/"
        before = {svc: _tags(world, arn + svc) for svc in services}
        recorder.calls.clear()
        code = main(["--stack", policies.STACK, *argv])
        assert code in OK_CODES.get(argv[0], {0}), (argv, capsys.readouterr())
        calls += len(recorder.calls)
        for call in list(recorder.calls):
            if call.action in policies.NO_PERMISSION:
                continue
            for resource in call.resources:
                svc = resource.rsplit("/", 1)[-1]
                states = [before.get(svc, {}), _tags(world, resource)]
                decisions = [
                    policy.decide(call.action, resource, _context(t, call)) for t in states
                ]
                if not any(d.allowed for d in decisions):
                    refused.append(f"{' '.join(command[:2])}: {call.action} on {resource}: "
                                   f"{decisions[0].reason}")  # fmt: skip
    capsys.readouterr()
    assert calls
    assert not refused, f"{PEOPLE[person]} lacks:\n" + "\n".join(sorted(set(refused)))


READ_ONLY = ("Describe", "Get", "List", "Query", "Scan", "BatchGet")
SVC_ARN = (
    f"arn:aws:ec2:{policies.REGION}:{policies.ACCOUNT}:vpc-endpoint-service/vpce-svc-0a1b2c3d4e5f6"
)
TABLE_ARN = f"arn:aws:dynamodb:{policies.REGION}:{policies.ACCOUNT}:table/{policies.STACK}-"


def test_auditors_read_only(transformed: dict[str, Any]) -> None:
    policy = person_policy(transformed, "AuditorPolicy")
    writes = [
        f"{action} ({s.source})"
        for s in policy.statements
        for action in s.actions
        if not action.split(":", 1)[1].startswith(READ_ONLY)
    ]
    assert not writes


def test_only_registry_editors_decide_and_only_enrollers_tag(transformed: dict[str, Any]) -> None:
    editor = person_policy(transformed, "RegistryEditorPolicy")
    enroller = person_policy(transformed, "ServiceEnrollerPolicy")
    ours = {"aws:ResourceTag/vpce-approver:managed": policies.STACK}
    for action in ("ec2:AcceptVpcEndpointConnections", "ec2:RejectVpcEndpointConnections",
                   "ec2:ModifyVpcEndpointServicePermissions"):  # fmt: skip
        assert not editor.decide(action, SVC_ARN, ours).allowed
        assert not enroller.decide(action, SVC_ARN, ours).allowed
    assert not editor.decide("ec2:CreateTags", SVC_ARN, {}).allowed
    assert not editor.decide("dynamodb:PutItem", TABLE_ARN + "audit", {}).allowed
    assert editor.decide("dynamodb:PutItem", TABLE_ARN + "registry", {}).allowed
    tag_ours = {f"aws:RequestTag/{MANAGED_TAG}": policies.STACK}
    assert enroller.decide("ec2:CreateTags", SVC_ARN, tag_ours).allowed
    other = "other-stack"
    assert not enroller.decide(
        "ec2:CreateTags", SVC_ARN, {f"aws:RequestTag/{MANAGED_TAG}": other}
    ).allowed
    takeover = tag_ours | {f"aws:ResourceTag/{MANAGED_TAG}": other}
    assert not enroller.decide("ec2:CreateTags", SVC_ARN, takeover).allowed
    theirs = {f"aws:ResourceTag/{MANAGED_TAG}": other}
    assert not enroller.decide("ec2:DeleteTags", SVC_ARN, theirs).allowed
    assert enroller.decide("ec2:DeleteTags", SVC_ARN, ours).allowed


def test_the_stack_outputs_each_policy(transformed: dict[str, Any]) -> None:
    outputs = transformed["Outputs"]
    for logical_id in PEOPLE.values():
        assert outputs[f"{logical_id}Arn"]["Value"] == {"Ref": logical_id}
        assert transformed["Resources"][logical_id]["Type"] == "AWS::IAM::ManagedPolicy"
