"""The local Slack page in headless Chromium, and the demo function."""

from __future__ import annotations

import os

import pytest
from slack_fixtures import APPROVER, escalate, escalation, local_fixture, state  # noqa: F401

from vpce_tools.emulator.world import Consumer, EndpointService, Provider
from vpce_tools.slack_local import LocalSlack, demo_click
from vpce_tools.stack import LocalDeployment

CHROMIUM = "/usr/bin/chromium"


@pytest.mark.browser
@pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} missing (install Debian chromium)"
)
def test_clicking_approve_on_the_page_accepts_and_updates_the_message(
    local: LocalSlack, service: EndpointService, consumer: Consumer, provider: Provider
) -> None:
    from playwright.sync_api import expect, sync_playwright

    vpce = escalate(local, service, consumer)
    rejected = escalate(local, service, provider.consumer("222222222222"))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page()
            page.on("dialog", lambda dialog: dialog.accept())  # Reject's confirm dialog
            page.goto(f"{local.url}/?user={APPROVER}")
            card = page.locator(f'article.message[data-text*="{vpce}"]')
            expect(card.get_by_role("button", name="Approve", exact=True)).to_be_visible()
            card.get_by_role("button", name="Approve", exact=True).click()
            expect(card.locator(".outcome")).to_contain_text(f"Approved by @{APPROVER}")
            expect(card.get_by_role("button")).to_have_count(0)

            other = page.locator(f'article.message[data-text*="{rejected}"]')
            other.get_by_role("button", name="Reject").click()
            expect(other.locator(".outcome")).to_contain_text("Rejected by")
        finally:
            browser.close()
    assert state(provider, vpce) == "available"
    assert state(provider, rejected) == "rejected"
    assert escalation(vpce).decided_by == f"slack:{APPROVER}"


def test_demo_click_shows_the_message_before_and_after(
    deployment: LocalDeployment, service: EndpointService, consumer: Consumer, provider: Provider
) -> None:
    vpce = consumer.create_endpoint(service.service_name)
    deployment.poller().drain()  # escalated, recorded only (no Slack configured yet)
    settings = deployment.settings
    printed: list[str] = []
    demo = demo_click(deployment, vpce, out=printed.append)
    assert demo.status == 200
    assert "[Approve] [Approve & register] [Reject]" in demo.before
    assert "Approved by @U0APPROVER at" in demo.after
    assert "[Approve]" not in demo.after
    assert demo.outcome == "approved"
    assert state(provider, vpce) == "available"
    assert deployment.settings == settings  # Slack wiring undone
    assert any("after the click" in p for p in printed)
