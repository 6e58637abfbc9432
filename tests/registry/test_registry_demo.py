"""The `make demo` step: a registry edit grants access to a waiting consumer."""

from __future__ import annotations

import io
import re

import pytest

from vpce_tools import demo
from vpce_tools.registry_demo import registry_grant_step


def test_demo_step_grants_the_waiting_consumer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo, "STEPS", [registry_grant_step])
    out = io.StringIO()
    assert demo.run(out) == 0
    text = out.getvalue()
    step = text.split("A registry edit grants access to the waiting consumer")[1]
    assert re.search(r"before: vpce-\w+ of 333333333333 is pendingAcceptance", step)
    assert re.search(r"after:  vpce-\w+ is available", step)
    assert "arn:aws:iam::333333333333:root on the allowed principals: no" in step
    assert "arn:aws:iam::333333333333:root on the allowed principals: yes" in step
    assert "registry:platform-team grant-added" in step
