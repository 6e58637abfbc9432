"""P6: `vpce-approver audit --limit 20` over 10,000 and 100,000 audit records.

The records are seeded straight into the emulator's table (moto's own put, ~100x faster than
BatchWriteItem over the wire), spread at PER_DAY decisions a day ending now, as a busy deployment
would write them. The command is the real CLI, in-process, timed end to end (argument parsing,
the by_time Queries, rendering), warm (the first call, which builds pynamodb's table metadata and
the emulator's partition map, is reported apart)."""

from __future__ import annotations

import contextlib
import io
import statistics
import time
from datetime import UTC, datetime, timedelta

from vpce_approver.audit import AuditRecord
from vpce_approver.tables import AuditItem

from .counting import COUNTER
from .scenarios import Result, world

PER_DAY = 1_000
SIZES = (10_000, 100_000)
RUNS = 7
TARGET_SECONDS = 0.5
MAX_GROWTH = 1.5  # 100k median / 10k median


def _seed(start: int, stop: int, now: datetime) -> None:
    """Records start..stop-1, record i decided i * (1 day / PER_DAY) before `now`."""
    from moto.dynamodb.models import dynamodb_backends

    meta = AuditItem.Meta
    table = dynamodb_backends["123456789012"][meta.region].get_table(meta.table_name)
    step = timedelta(days=1) / PER_DAY
    for i in range(start, stop):
        record = AuditRecord(
            subject=f"vpce-{i:017x}",
            action="accept",
            actor="policy",
            at=now - step * i,
            code="allowed",
            reason="benchmark record",
            trigger="notification",
            outcome="done",
            service_id="vpce-svc-0bench",
            vpc_endpoint_id=f"vpce-{i:017x}",
            consumer=str(100_000_000_000 + i % 500),
        )
        table.put_item(record.to_item().serialize())


def _audit_cli() -> tuple[float, int]:
    """One `audit --limit 20 -o json` run: (seconds, entries printed)."""
    import json

    from vpce_tools.cli import main

    out = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main(["audit", "--limit", "20", "-o", "json"])
    seconds = time.perf_counter() - t0
    if code != 0:
        raise RuntimeError(f"audit exited {code}")
    return seconds, len(json.loads(out.getvalue()))


def p6_audit(sizes: tuple[int, ...] = SIZES, runs: int = RUNS) -> Result:
    medians: dict[int, float] = {}
    fastest: dict[int, float] = {}
    calls: dict[int, dict[str, int]] = {}
    first: dict[int, float] = {}
    seeded = 0
    now = datetime.now(UTC)
    with world():
        for size in sizes:
            t0 = time.perf_counter()
            _seed(seeded, size, now)
            seed_s = time.perf_counter() - t0
            seeded = size
            first[size], shown = _audit_cli()
            assert shown == 20, shown
            times = []
            for _ in range(runs):
                with COUNTER.counting():
                    seconds, _ = _audit_cli()
                    calls[size] = dict(COUNTER.calls)
                times.append(seconds)
            medians[size] = statistics.median(times)
            fastest[size] = min(times)
            print(f"P6: {size} records (seeded in {seed_s:.1f} s)", flush=True)
    big, small = max(sizes), min(sizes)
    # Growth compares the fastest runs: the least disturbed by other load on a shared machine.
    growth = fastest[big] / fastest[small] if fastest[small] else float("inf")
    same_calls = calls[big] == calls[small]
    met = medians[big] < TARGET_SECONDS and growth < MAX_GROWTH and same_calls
    per_size = "; ".join(
        f"{n:,} records: median {medians[n] * 1000:.0f} ms, fastest {fastest[n] * 1000:.0f} ms"
        f" (first call {first[n] * 1000:.0f} ms), "
        + ", ".join(f"{k} {v}" for k, v in sorted(calls[n].items()))
        for n in sizes
    )
    return Result(
        "P6",
        "`audit --limit 20` over 100,000 records",
        f"{medians[big] * 1000:.0f} ms (x{growth:.2f} vs {small:,})",
        f"< {TARGET_SECONDS * 1000:.0f} ms, x{MAX_GROWTH} at most vs {small:,} (fastest runs),"
        " same calls",
        met,
        [
            f"- {per_size}.",
            f"- Median of {runs} warm runs of the real CLI in-process (`audit --limit 20 -o json`),"
            f" records at {PER_DAY:,} decisions a day ending now, seeded straight into the"
            " emulator's table.",
            "- Served by the audit table's `by_time` GSI (partition = UTC day, sort = decision"
            " time), newest day first with ScanIndexForward=false, stopping at 20: the calls are"
            " the same at both sizes (one Query of tomorrow's partition, in case of clock skew,"
            " one of today's). Before this index the command scanned and sorted the whole table"
            " (~18 s for --limit 3 over ~500 records on the emulator, issue 14).",
            "- On the emulator a Query costs O(items in the queried day) (its partition map,"
            " docs/EMULATOR.md); on DynamoDB it reads 20 items.",
        ],
        {
            "median_ms": {n: round(medians[n] * 1000, 1) for n in sizes},
            "growth": round(growth, 2),
        },
    )
