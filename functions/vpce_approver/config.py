"""Deployment settings, read once from the environment (template.yaml sets them per function)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from .model import DefaultDecision

TRUE = frozenset({"1", "true", "yes", "on"})


class ConfigError(ValueError):
    """A setting that the service cannot run with."""


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in TRUE:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean (true/false)")


def _csv(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in env.get(name, "").split(",") if part.strip())


@dataclass(frozen=True)
class Settings:
    registry_table: str = "vpce-approver-registry"
    audit_table: str = "vpce-approver-audit"
    escalations_table: str = "vpce-approver-escalations"
    region: str = "us-east-1"
    endpoint_url: str | None = None  # the local emulator; None on AWS
    shadow_mode: bool = False
    default_decision: DefaultDecision = DefaultDecision.ESCALATE
    revoke_default: bool = False
    allow_wildcard_principal: bool = False
    ids_per_call: int = 1000  # endpoint IDs per Accept/Reject call
    slack_channel: str | None = None
    slack_bot_token_secret: str | None = None
    slack_signing_secret_secret: str | None = None
    slack_api_url: str | None = None  # the local Slack stand-in; None = slack.com
    slack_team_id: str | None = None
    slack_approvers: tuple[str, ...] = ()
    slack_approver_group: str | None = None
    slack_work_queue_url: str | None = None
    slack_origin_verify: str | None = None  # the WAF front's origin header value (inbound.py)
    deployment_name: str | None = None  # the stack: the managed tag's value IAM requires
    notification_topic_arn: str | None = None  # the deployment's SNS topic (the sweep's ensure)
    # OU/organization grants (docs/ORGANIZATIONS.md): read AWS Organizations at all; through
    # this role (management or delegated-administrator account; None: the deployment's own
    # credentials); trust a read membership for at most this many seconds.
    organization_grants: bool = False
    organizations_role_arn: str | None = None
    membership_max_age: int = 300

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, stack: str | None = None
    ) -> Settings:
        """Settings from the environment. With `stack`, table names default to the names
        template.yaml gives them (<stack>-registry, <stack>-audit, <stack>-escalations)."""
        env = os.environ if env is None else env
        if stack:
            env = {
                "REGISTRY_TABLE": f"{stack}-registry",
                "AUDIT_TABLE": f"{stack}-audit",
                "ESCALATIONS_TABLE": f"{stack}-escalations",
                **env,
            }
        raw_default = env.get("DEFAULT_DECISION", "escalate").strip().lower() or "escalate"
        try:
            default = DefaultDecision(raw_default)
        except ValueError:
            choices = ", ".join(d.value for d in DefaultDecision)
            raise ConfigError(
                f"DEFAULT_DECISION={raw_default!r}: expected one of {choices}"
            ) from None
        try:
            ids_per_call = int(env.get("IDS_PER_CALL", "1000"))
        except ValueError:
            raise ConfigError(
                f"IDS_PER_CALL={env.get('IDS_PER_CALL')!r} is not an integer"
            ) from None
        try:
            max_age = int(env.get("MEMBERSHIP_MAX_AGE", "300"))
        except ValueError:
            raise ConfigError(
                f"MEMBERSHIP_MAX_AGE={env.get('MEMBERSHIP_MAX_AGE')!r} is not an integer"
            ) from None
        if not 0 <= max_age <= 3600:
            raise ConfigError(f"MEMBERSHIP_MAX_AGE={max_age} must be 0..3600 seconds")
        if not 1 <= ids_per_call <= 1000:
            raise ConfigError(f"IDS_PER_CALL={ids_per_call} must be 1..1000")
        return cls(
            registry_table=env.get("REGISTRY_TABLE", cls.registry_table),
            audit_table=env.get("AUDIT_TABLE", cls.audit_table),
            escalations_table=env.get("ESCALATIONS_TABLE", cls.escalations_table),
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or cls.region,
            endpoint_url=env.get("AWS_ENDPOINT_URL") or None,
            shadow_mode=_bool(env, "SHADOW_MODE", False),
            default_decision=default,
            revoke_default=_bool(env, "REVOKE_DEFAULT", False),
            allow_wildcard_principal=_bool(env, "ALLOW_WILDCARD_PRINCIPAL", False),
            ids_per_call=ids_per_call,
            slack_channel=env.get("SLACK_CHANNEL") or None,
            slack_bot_token_secret=env.get("SLACK_BOT_TOKEN_SECRET") or None,
            slack_signing_secret_secret=env.get("SLACK_SIGNING_SECRET_SECRET") or None,
            slack_api_url=env.get("SLACK_API_URL") or None,
            slack_team_id=env.get("SLACK_TEAM_ID") or None,
            slack_approvers=_csv(env, "SLACK_APPROVERS"),
            slack_approver_group=env.get("SLACK_APPROVER_GROUP") or None,
            slack_work_queue_url=env.get("SLACK_WORK_QUEUE_URL") or None,
            slack_origin_verify=env.get("SLACK_ORIGIN_VERIFY") or None,
            deployment_name=env.get("DEPLOYMENT_NAME") or stack or None,
            notification_topic_arn=env.get("NOTIFICATION_TOPIC_ARN") or None,
            organization_grants=_bool(env, "ORGANIZATION_GRANTS", False),
            organizations_role_arn=env.get("ORGANIZATIONS_ROLE_ARN") or None,
            membership_max_age=max_age,
        )
