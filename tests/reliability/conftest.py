"""Reliability fixtures: every fault test records its figures (load, fault, result, lost,
wrong accepts) with `figures.record(...)`; the figures land in build/reliability/results/ as one
JSON file per test, with the test's outcome, and tests/reliability/publish.py turns them into the
table of docs/RELIABILITY.md. Figures therefore always come from a real run."""

from __future__ import annotations

import json
import re
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from vpce_tools.faults import Verdict

RESULTS = Path("build/reliability/results")
_REPORT = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    item.stash.setdefault(_REPORT, {})[report.when] = report
    return report


@dataclass
class Figures:
    test: str
    soak: bool
    rows: list[dict[str, Any]] = field(default_factory=list)

    def record(
        self,
        *,
        load: str,
        fault: str,
        result: str,
        verdict: Verdict | None = None,
        lost: int | None = None,
        wrong_accepts: int | None = None,
        **details: Any,
    ) -> None:
        """One row of the figure sheet. Give the Verdict (its lost/wrong-accept counts are
        used), or the counts directly for tests that judge something else (input, logs)."""
        if verdict is not None:
            lost = verdict.lost if lost is None else lost
            wrong_accepts = len(verdict.wrong_accepts) if wrong_accepts is None else wrong_accepts
            details = {**verdict.as_dict(), **details}
        if lost is None or wrong_accepts is None:
            raise ValueError("record() needs a verdict or both lost and wrong_accepts")
        self.rows.append(
            {
                "load": load,
                "fault": fault,
                "result": result,
                "lost": lost,
                "wrong_accepts": wrong_accepts,
                "details": details,
            }
        )


def _safe(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid)[:200]


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[Figures]:
    node = request.node
    fig = Figures(test=node.nodeid, soak=node.get_closest_marker("soak") is not None)
    yield fig
    reports = node.stash.get(_REPORT, {})
    call = reports.get("call")
    outcome = call.outcome if call is not None else "error"
    out = Path(request.config.rootpath) / RESULTS
    out.mkdir(parents=True, exist_ok=True)
    payload = {"test": fig.test, "soak": fig.soak, "outcome": outcome, "rows": fig.rows}
    (out / f"{_safe(fig.test)}.json").write_text(json.dumps(payload, indent=1, default=str))


def tally(verdict: Verdict) -> str:
    """'N accepted, N rejected, N escalated[, N withdrawn]' from a verdict (never hand-typed)."""
    text = (
        f"{verdict.accepted} accepted, {verdict.rejected} rejected, {verdict.escalated} escalated"
    )
    return text + (f", {verdict.withdrawn} withdrawn" if verdict.withdrawn else "")
