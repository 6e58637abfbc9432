"""The optional WAF front of the public Slack route (SlackWebAclArn): AWS WAF cannot attach to an
HTTP API, so a CloudFront distribution carries the web ACL and adds an origin header that the
function requires, which makes the execute-api URL no way around the WAF."""

from __future__ import annotations

import re
from typing import Any

from vpce_approver.config import Settings
from vpce_approver.slack.inbound import ORIGIN_HEADER
from vpce_tools import policies
from vpce_tools import template as cfn_template
from vpce_tools.intrinsics import Resolver

SOURCE = cfn_template.load()
WEB_ACL = "arn:aws:wafv2:us-east-1:123456789012:global/webacl/slack-route/0a1b2c3d"


def resolver(**parameters: str) -> Resolver:
    return Resolver(SOURCE, stack=policies.STACK, parameters={**policies.FEATURES, **parameters})


def function_env(res: Resolver) -> dict[str, Any]:
    props = SOURCE["Resources"]["SlackInteractivityFunction"]["Properties"]
    env: dict[str, Any] = res.resolve(props["Environment"]["Variables"])
    return env


def url(res: Resolver) -> str:
    return str(res.resolve(SOURCE["Outputs"]["SlackInteractivityUrl"]["Value"]))


def test_without_a_web_acl_there_is_no_front_and_no_origin_check() -> None:
    res = resolver()
    assert res.condition("SlackEnabled")
    assert not res.condition("SlackWafFront")
    assert SOURCE["Resources"]["SlackWafDistribution"]["Condition"] == "SlackWafFront"
    assert function_env(res)["SLACK_ORIGIN_VERIFY"] == ""
    assert Settings.from_env(function_env(res)).slack_origin_verify is None
    assert ".execute-api." in url(res)


def test_with_a_web_acl_cloudfront_carries_it_and_the_function_requires_its_header() -> None:
    res = resolver(SlackWebAclArn=WEB_ACL)
    assert res.condition("SlackWafFront")
    config = res.resolve(SOURCE["Resources"]["SlackWafDistribution"]["Properties"])[
        "DistributionConfig"
    ]
    assert config["WebACLId"] == WEB_ACL
    [origin] = config["Origins"]
    api = res.ref("SlackHttpApi")
    assert origin["DomainName"] == f"{api}.execute-api.us-east-1.amazonaws.com"
    assert origin["CustomOriginConfig"]["OriginProtocolPolicy"] == "https-only"
    [header] = origin["OriginCustomHeaders"]
    assert header["HeaderName"].lower() == ORIGIN_HEADER
    value = header["HeaderValue"]
    assert value
    assert value != res.ref("AWS::StackName")  # the stack's UUID, not its (public) name
    assert function_env(res)["SLACK_ORIGIN_VERIFY"] == value
    assert Settings.from_env(function_env(res)).slack_origin_verify == value
    behaviour = config["DefaultCacheBehavior"]
    assert "POST" in behaviour["AllowedMethods"]
    assert behaviour["ViewerProtocolPolicy"] == "https-only"
    assert url(res).startswith("https://")
    assert ".execute-api." not in url(res)


def test_the_parameter_takes_only_a_cloudfront_scoped_web_acl() -> None:
    pattern = SOURCE["Parameters"]["SlackWebAclArn"]["AllowedPattern"]
    assert re.fullmatch(pattern, "")
    assert re.fullmatch(pattern, WEB_ACL)
    regional = "arn:aws:wafv2:eu-west-1:123456789012:regional/webacl/x/0a1b"
    assert not re.fullmatch(pattern, regional)  # a regional ACL cannot attach to CloudFront
