"""The figure sheet generator: totals, outcomes and escaping come from the results, never typed."""

from __future__ import annotations

from pathlib import Path

from reliability.publish import END, START, render, write

RESULTS = [
    {
        "test": "tests/reliability/test_a.py::test_ok",
        "soak": False,
        "outcome": "passed",
        "rows": [{"load": "10", "fault": "x | y", "result": "fine", "lost": 0, "wrong_accepts": 0}],
    },
    {
        "test": "tests/reliability/test_b.py::test_bad",
        "soak": True,
        "outcome": "failed",
        "rows": [{"load": "5", "fault": "z", "result": "oops", "lost": 2, "wrong_accepts": 1}],
    },
]


def test_render_counts_and_escapes() -> None:
    table = render(RESULTS)
    assert "`test_a.py::test_ok`" in table
    assert "x \\| y" in table
    assert "failed (soak)" in table
    assert table.splitlines()[-1] == "| **total** | 2 rows | | 1 not passed | **2** | **1** | |"


def test_write_replaces_only_the_block(tmp_path: Path) -> None:
    doc = tmp_path / "R.md"
    doc.write_text(f"# R\nprose before\n{START}\nold\n{END}\nprose after\n")
    write(RESULTS, doc)
    text = doc.read_text()
    assert "old" not in text
    assert text.startswith("# R\nprose before\n")
    assert text.endswith("prose after\n")
    assert "test_bad" in text
