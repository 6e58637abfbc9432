"""Every AWS action the code calls is allowed to the function that calls it.

Each function of template.yaml runs its events/<LogicalId>/*.json payloads in-process (the same path
as `vpce-approver invoke`), against the emulator, with the environment the template gives it. Every
botocore client records its calls (IAM action + resource ARNs); each one must be allowed by that
function's role in the SAM-transformed template, conditions included (the managed-service tag is
read from the emulated service)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from vpce_tools import policies
from vpce_tools import template as cfn_template
from vpce_tools.commands import invoke

from .conftest import EVENTS, SLACK_TEST_SIGNING_SECRET, CallRecorder, World

FUNCTIONS = invoke.function_ids(cfn_template.load())
CASES = [
    pytest.param(fn, path, id=f"{fn}/{path.name}")
    for fn in FUNCTIONS
    for path in sorted((EVENTS / fn).glob("*.json"))
]
MANAGED_TAG = "vpce-approver:managed"


def succeeded(result: Any) -> bool:
    """The invocation's own verdict: no batch item failures, or a 2xx HTTP response."""
    if isinstance(result, dict) and "batchItemFailures" in result:
        return result["batchItemFailures"] == []
    if isinstance(result, dict) and "statusCode" in result:
        return 200 <= int(result["statusCode"]) < 300
    return True


def run(world: World, function: str, path: Path, recorder: CallRecorder) -> Any:
    spec = invoke.function_spec(function, parameters=world.parameters)
    event = world.event(path)
    if invoke.is_slack_request(event):
        event = invoke.sign_slack_request(event, SLACK_TEST_SIGNING_SECRET)
    invoke.ensure_queues(spec, world.provider.client("sqs"), "https://sqs.us-east-1.amazonaws.com")
    recorder.calls.clear()
    return invoke.invoke(spec, event, overrides=world.env)


def context_for(world: World, resource: str) -> dict[str, str]:
    """Condition keys IAM would know about the resource (tags of an endpoint service)."""
    if ":vpc-endpoint-service/" not in resource:
        return {}
    tags = world.tags(resource.rsplit("/", 1)[-1])
    return {
        **{f"aws:ResourceTag/{k}": v for k, v in tags.items()},
        **{f"ec2:ResourceTag/{k}": v for k, v in tags.items()},
    }


def test_every_function_has_payloads() -> None:
    missing = [fn for fn in FUNCTIONS if not list((EVENTS / fn).glob("*.json"))]
    assert not missing, f"add events/<LogicalId>/*.json for {missing}"
    strays = sorted(p.name for p in EVENTS.iterdir() if p.is_dir() and p.name not in FUNCTIONS)
    assert not strays, f"events/ directories that name no function of the template: {strays}"


@pytest.mark.parametrize(("function", "path"), CASES)
def test_calls_are_allowed_by_the_functions_role(
    world: World,
    recorder: CallRecorder,
    transformed: dict[str, Any],
    function: str,
    path: Path,
) -> None:
    result = run(world, function, path, recorder)
    assert succeeded(result), f"{function} did not handle {path.name}: {result}"
    calls = [c for c in policies.unique(recorder.calls) if c.action not in policies.NO_PERMISSION]
    assert calls, f"{function} made no AWS call for {path.name}"
    # The world's secrets have moto's ARNs: resolve the role with the world's parameters.
    policy = policies.function_policies(transformed, **world.parameters)[function]
    refused = [
        f"{call.action} on {resource}: {decision.reason}"
        for call in calls
        for resource in call.resources
        if not (
            decision := policy.decide(call.action, resource, context_for(world, resource))
        ).allowed
    ]
    assert not refused, f"{function} ({path.name}) lacks permissions:\n" + "\n".join(refused)


def test_a_connect_for_a_granted_consumer_needs_the_accept_permission(
    world: World,
    recorder: CallRecorder,
    function_policies: dict[str, policies.FunctionPolicy],
) -> None:
    """The check above is not vacuous: the Accept is recorded, and without the managed tag on
    the service the same call would be refused by the role's condition."""
    run(world, "NotificationFunction", EVENTS / "NotificationFunction/sqs-connect.json", recorder)
    [accept] = [c for c in recorder.calls if c.action == "ec2:AcceptVpcEndpointConnections"]
    [resource] = accept.resources
    policy = function_policies["NotificationFunction"]
    assert policy.decide(accept.action, resource, context_for(world, resource)).allowed
    untagged = policy.decide(accept.action, resource, {})
    assert not untagged.allowed
    other_stack = {f"aws:ResourceTag/{MANAGED_TAG}": "another-stack"}
    assert not policy.decide(accept.action, resource, other_stack).allowed
    table = "arn:aws:dynamodb:us-east-1:123456789012:table/someone-elses-table"
    assert not policy.decide("dynamodb:PutItem", table, {}).allowed
