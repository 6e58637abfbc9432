"""Publish the reliability figures: run the suite (default + soak), then turn the JSON results the
`figures` fixture wrote (build/reliability/results/) into the table of docs/RELIABILITY.md,
between its `figures` markers. Nothing in the table is typed by hand.

    .venv/bin/python tests/reliability/publish.py            # run everything, write the doc
    .venv/bin/python tests/reliability/publish.py --no-soak  # only what `make test` runs
    .venv/bin/python tests/reliability/publish.py --no-run   # re-render the last results
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "build/reliability/results"
DOC = ROOT / "docs/RELIABILITY.md"
START, END = "<!-- figures:start -->", "<!-- figures:end -->"


def run(soak: bool) -> int:
    if RESULTS.exists():
        shutil.rmtree(RESULTS)
    marker = "soak or not soak" if soak else "not soak"
    command = [sys.executable, "-m", "pytest", "tests/reliability", "-m", marker, "-q"]
    command += ["-p", "no:randomly", "-n", "2"]
    return subprocess.call(command, cwd=ROOT)


def load(directory: Path = RESULTS) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))]


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _name(test: str) -> str:
    path, _, name = test.partition("::")
    return f"`{Path(path).name}::{name}`"


def render(results: Iterable[Mapping[str, Any]]) -> str:
    """The markdown table (one line per figure row) with totals."""
    lines = [
        "| test | load | fault | result | lost | wrong accepts | outcome |",
        "|---|---|---|---|---:|---:|---|",
    ]
    lost = wrong = rows = failed = 0
    for result in sorted(results, key=lambda r: (r["soak"], r["test"])):
        outcome = str(result["outcome"]) + (" (soak)" if result["soak"] else "")
        if result["outcome"] != "passed":
            failed += 1
        for row in result["rows"] or [{"load": "", "fault": "", "result": "no figures"}]:
            rows += 1
            lost += int(row.get("lost") or 0)
            wrong += int(row.get("wrong_accepts") or 0)
            cells = [
                _name(result["test"]),
                row.get("load", ""),
                row.get("fault", ""),
                row.get("result", ""),
                row.get("lost", "—"),
                row.get("wrong_accepts", "—"),
                outcome,
            ]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    lines.append(
        f"| **total** | {rows} rows | | {failed} not passed | **{lost}** | **{wrong}** | |"
    )
    return "\n".join(lines)


def header(results: list[dict[str, Any]]) -> str:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    soak = any(r["soak"] for r in results)
    return (
        f"Generated {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} from commit"
        f" `{commit or 'unknown'}` on Python {platform.python_version()}"
        f" ({len(results)} tests{', soak included' if soak else ', soak not run'})"
        " by `tests/reliability/publish.py`."
    )


def write(results: list[dict[str, Any]], doc: Path = DOC) -> None:
    block = f"{START}\n{header(results)}\n\n{render(results)}\n{END}"
    text = doc.read_text() if doc.exists() else f"# Reliability\n\n{START}\n{END}\n"
    if START not in text or END not in text:
        raise SystemExit(f"{doc} has no {START} ... {END} block")
    before, rest = text.split(START, 1)
    _, after = rest.split(END, 1)
    doc.write_text(before + block + after)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-run", action="store_true", help="render the last results only")
    parser.add_argument("--no-soak", action="store_true", help="skip the soak tests")
    args = parser.parse_args(argv)
    status = 0 if args.no_run else run(soak=not args.no_soak)
    results = load()
    if not results:
        print(f"no results in {RESULTS}", file=sys.stderr)
        return 1
    write(results)
    bad = [r["test"] for r in results if r["outcome"] != "passed"]
    lost = sum(int(row["lost"]) for r in results for row in r["rows"])
    wrong = sum(int(row["wrong_accepts"]) for r in results for row in r["rows"])
    print(f"{DOC}: {len(results)} tests, lost {lost}, wrong accepts {wrong}, not passed {bad}")
    return status or int(bool(bad or lost or wrong))


if __name__ == "__main__":
    raise SystemExit(main())
