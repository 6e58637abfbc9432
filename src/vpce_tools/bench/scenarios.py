"""The benchmark scenarios P1-P5, each in a fresh emulated AWS (moto reset) with the Accept/Reject
throttle on (10 burst, 1/s, real clock). Each returns a Result: figures, target, and the detail
that explains them."""

from __future__ import annotations

import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from vpce_approver.converge import Deps
from vpce_approver.model import Grant, GrantStatus
from vpce_approver.registry import BATCH_GET_MAX, item_from_grant
from vpce_approver.tables import ALL_MODELS, RegistryItem
from vpce_tools import template
from vpce_tools.emulator import configure_acceptance, seed_connections, throttle
from vpce_tools.emulator.testing import emulated_aws
from vpce_tools.emulator.world import Consumer, EndpointService, Provider
from vpce_tools.stack import LocalDeployment, QueuePoller

from . import spread
from .counting import COUNTER
from .spread import Spread, count, ratio, seconds

AUDIT_BATCH = 25  # BatchWriteItem's limit
PAGE = 1000


@dataclass
class Result:
    key: str
    title: str
    figure: str  # the headline figure, as shown in the summary table
    target: str
    met: bool
    details: list[str] = field(default_factory=list)  # markdown lines
    data: dict[str, Any] = field(default_factory=dict)
    peer: list[str] = field(default_factory=list)  # side-by-side table with the naive design


# ---------------------------------------------------------------------- shared set-up
def grant_for(service_id: str, account: str) -> Grant:
    return Grant(
        service_id=service_id,
        consumer=account,
        status=GrantStatus.ALLOW,
        principals=(f"arn:aws:iam::{account}:root",),
        note="benchmark",
    )


def accounts(n: int, base: int = 100_000_000_000) -> list[str]:
    return [str(base + i) for i in range(n)]


@contextmanager
def world(**settings: Any) -> Iterator[tuple[Provider, LocalDeployment, EndpointService]]:
    """A fresh emulated AWS with the throttle on, a deployment (Settings overridden by
    `settings`) and one managed service."""
    throttle.configure(True)  # new buckets: every scenario starts with a full burst
    configure_acceptance(0)
    with emulated_aws():
        for model in ALL_MODELS:  # pynamodb caches table metadata per model: start cold
            model._connection = None
        provider = Provider()
        deployment = LocalDeployment.create(provider, **settings)
        service = provider.create_service(acceptance_required=True)
        deployment.enroll(service, name="bench")
        yield provider, deployment, service
    throttle.configure(False)


def put_grants(service_id: str, owners: Sequence[str]) -> None:
    now = datetime.now(UTC)
    with RegistryItem.batch_write() as batch:
        for owner in owners:
            batch.save(item_from_grant(grant_for(service_id, owner), by="bench", now=now))


def _notification_event() -> dict[str, Any]:
    fn = template.load()["Resources"]["NotificationFunction"]["Properties"]
    return dict(fn["Events"]["Notifications"]["Properties"])


def event_source_settings() -> tuple[int, float]:
    """(BatchSize, MaximumBatchingWindowInSeconds) of NotificationFunction's SQS event (Lambda's
    defaults, 10 and 0, when the template leaves them out)."""
    props = _notification_event()
    return int(props.get("BatchSize", 10)), float(props.get("MaximumBatchingWindowInSeconds", 0))


def event_source_concurrency() -> int:
    """ScalingConfig.MaximumConcurrency of NotificationFunction's SQS event (5 without one: the
    pollers Lambda starts with)."""
    scaling = _notification_event().get("ScalingConfig") or {}
    return int(scaling.get("MaximumConcurrency", 5))


class WindowedPoller(QueuePoller):
    """QueuePoller that works like Lambda's SQS poller: once a receive finds a message, the batch
    gathers until the batching window closes or the batch is full (Lambda then invokes with what
    it has), instead of stopping when the queue is momentarily empty."""

    window: float = 0.0

    def _receive(self) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        deadline: float | None = None
        while len(messages) < self.batch_size:
            got = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=min(10, self.batch_size - len(messages)),
                AttributeNames=["All"],
            ).get("Messages", [])
            messages.extend(got)
            if not messages:
                break  # nothing visible: no invocation
            if deadline is None:
                deadline = time.monotonic() + self.window
            if time.monotonic() >= deadline:
                break
            if not got:
                time.sleep(0.02)
        return messages


class _Container(threading.Thread):
    """One Lambda container: its own Deps (clients, caches) and pacer, one invocation at a
    time."""

    def __init__(self, source: EventSource, deps: Deps, batch_size: int) -> None:
        super().__init__(daemon=True)
        from vpce_approver.handlers.notifications import process
        from vpce_approver.pacing import Pacer

        self.source = source
        self.deps = deps  # the container's (P7 reads its directory's cache)
        self.pacer = Pacer()  # the container's, as the Lambda handler has it
        self.poller = WindowedPoller(
            source.sqs,
            source.queue_url,
            lambda records: process(records, deps, self.pacer),
            batch_size=batch_size,
        )
        self.poller.window = source.window

    def run(self) -> None:
        try:
            while not self.source.stop.is_set():
                if not self.poller.poll_once():
                    time.sleep(0.02)  # Lambda long-polls; an empty queue costs no invocation
        except BaseException as exc:  # surfaced by close(), never swallowed
            self.source.error = exc


class EventSource:
    """Lambda's SQS event source as template.yaml configures it (batch size, batching window,
    maximum concurrency): up to `concurrency` invocations at once, each container with its own
    Deps; once a message is visible, a batch gathers for the batching window (or until it is
    full), then the handler is invoked with it."""

    def __init__(
        self,
        deployment: LocalDeployment,
        *,
        window: float | None = None,
        batch_size: int | None = None,
        concurrency: int | None = None,
    ) -> None:
        default_size, default_window = event_source_settings()
        self.window = default_window if window is None else window
        self.batch_size = default_size if batch_size is None else batch_size
        self.concurrency = event_source_concurrency() if concurrency is None else concurrency
        self.sqs = deployment.provider.client("sqs")
        self.queue_url = deployment.queue_url
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.containers = [
            _Container(self, deployment.deps(), self.batch_size) for _ in range(self.concurrency)
        ]

    def describe(self) -> str:
        return (
            f"batch size {self.batch_size}, window {self.window:g} s, up to {self.concurrency} "
            "concurrent invocations (template.yaml)"
        )

    @property
    def invocations(self) -> int:
        return sum(c.poller.invocations for c in self.containers)

    def start(self) -> None:
        for container in self.containers:
            container.start()

    def depth(self) -> int:
        """Messages visible or in flight."""
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(
            attrs["ApproximateNumberOfMessagesNotVisible"]
        )

    def settle(self, timeout: float = 60.0) -> None:
        """Wait until the queue is empty (follow-up notifications handled too)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end and self.depth() and self.error is None:
            time.sleep(0.25)

    def close(self) -> None:
        self.stop.set()
        for container in self.containers:
            container.join(timeout=60)
        if self.error is not None:
            raise RuntimeError(f"event source failed: {self.error!r}") from self.error


def states(provider: Provider, service_id: str) -> dict[str, str]:
    return {
        c["VpcEndpointId"]: str(c["VpcEndpointState"]) for c in provider.connections(service_id)
    }


def unsubscribe_queue(provider: Provider, deployment: LocalDeployment) -> None:
    sns = provider.client("sns")
    for sub in sns.list_subscriptions_by_topic(TopicArn=deployment.topic_arn)["Subscriptions"]:
        sns.unsubscribe(SubscriptionArn=sub["SubscriptionArn"])


# ---------------------------------------------------------------------- the two designs
OURS = "vpce-approver"
PEER = "naive"
PEER_TITLE = "naive design (SNS -> Lambda, one Accept call per notification)"
PEER_RUN = 15.0
"""Seconds the naive design may run on after the last Connect before it is stopped: the throttle
alone needs a second per Accept call once its burst of 10 is spent, so a burst of 500 would take 8
minutes."""


class Driver(Protocol):
    """One design attached to a fresh deployment, fed by the emulator's notifications."""

    def start(self) -> None: ...
    def finish(self) -> None: ...  # stop; what was lost can be counted afterwards
    def lost(self) -> int: ...
    def describe(self) -> str: ...


class Ours:
    """vpce-approver: SNS -> SQS -> the notification function's event source -> handler."""

    def __init__(self, deployment: LocalDeployment) -> None:
        self.deployment = deployment
        self.source = EventSource(deployment)

    def start(self) -> None:
        self.source.start()

    def finish(self) -> None:
        self.source.settle()  # the Accept notifications our accepts caused are handled too
        self.source.close()

    def lost(self) -> int:
        return self.deployment.dlq_depth()

    def describe(self) -> str:
        waited = sum(c.pacer.waited for c in self.source.containers)
        return (
            f"event source: {self.source.describe()}; {self.source.invocations} handler "
            f"invocation(s), follow-up Accept notifications included; paced: {waited:.1f} s "
            "waited for a token in all"
        )


class Naive:
    """The peer (bench/peer.py): the topic invokes a function per notification."""

    def __init__(self, deployment: LocalDeployment) -> None:
        from .peer import NaiveDesign

        unsubscribe_queue(deployment.provider, deployment)  # the topic feeds the function
        self.design = NaiveDesign(deployment)

    def start(self) -> None:
        self.design.start()

    def finish(self) -> None:
        self.design.close()

    def lost(self) -> int:
        return self.design.outcomes["failed"]

    def describe(self) -> str:
        from .peer import CONCURRENCY

        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(self.design.outcomes.items()))
        return (
            f"one invocation per notification, up to {CONCURRENCY} at once; invocations: "
            f"{outcomes or 'none'}, still running when stopped {self.design.in_flight()} "
            "(failed: retries exhausted, lost unless Lambda's async retry 1-2 min later "
            "succeeds)"
        )


def driver(design: str, deployment: LocalDeployment) -> Driver:
    return Ours(deployment) if design == OURS else Naive(deployment)


@dataclass
class Run:
    """One run of one design through a scenario."""

    accept_calls: int
    accept_attempts: int
    throttled: int
    until_all: float | None  # seconds from the first Connect until all available; None: never
    not_available: int  # at the end of the run
    lost: int  # ours: DLQ depth; naive: invocations that exhausted their retries
    note: str = ""
    latencies: list[float] = field(default_factory=list)  # P5: inf = never available
    stopped_at: float = 0.0  # seconds from the first Connect when the run was stopped


def wait_available(
    provider: Provider,
    service_id: str,
    ids: Sequence[str],
    start: float,
    timeout: float,
    every: float = 0.5,
) -> float | None:
    """Seconds since `start` when every endpoint is available (None: not within `timeout`),
    checked `every` seconds (a Describe of hundreds of connections is not free on the emulator:
    polling it often would slow down what it measures)."""
    while time.monotonic() - start < timeout:
        now = states(provider, service_id)
        if all(now.get(i) == "available" for i in ids):
            return time.monotonic() - start
        time.sleep(every)
    return None


def spread_of(runs: Sequence[Run], value: Callable[[Run], float]) -> Spread:
    return Spread.of([value(r) for r in runs])


def until_all(runs: Sequence[Run], cap: float) -> str:
    done = [r.until_all for r in runs if r.until_all is not None]
    if len(done) == len(runs):
        return Spread.of(done).show(seconds, " s")
    return (
        f"not within {cap:.0f} s of the last Connect in {len(runs) - len(done)} of "
        f"{len(runs)} run(s)"
    )


# ---------------------------------------------------------------------- P1
BURST_CHUNK = 10


def burst(provider: Provider, service_id: str, owners: Sequence[str], n: int) -> list[str]:
    """`n` Connects as a burst: the connections appear `BURST_CHUNK` at a time (seeded, owners
    round-robin) and each chunk's Connect notifications are published through the emulator's SNS
    (its own `collect`/`publish`, listeners included) before the next chunk appears.

    Creating the endpoints through the API costs the emulator ~8 ms each on a quiet machine and
    ten times that on a loaded one: 500 of them then arrive over a minute or more, a stream rather
    than a burst, and the figure would measure the machine, not the design."""
    from vpce_tools.emulator import notifications as emulated
    from vpce_tools.emulator.models import LOCK, ec2_backend, state_of

    backend = ec2_backend(provider.account_id, provider.region)
    ids: list[str] = []
    for start in range(0, n, BURST_CHUNK):
        shift = start % len(owners)
        chunk = seed_connections(
            service_id, [*owners[shift:], *owners[:shift]], min(BURST_CHUNK, n - start)
        )
        with LOCK:
            store = state_of(backend).connections
            messages = [m for v in chunk for m in emulated.collect("Connect", store[v], backend)]
        emulated.publish(messages)
        ids += chunk
    return ids


def _p1_run(design: str, n: int, consumers: int, timeout: float) -> Run:
    """`timeout`: seconds after the last Connect."""
    with world() as (provider, deployment, service):
        owners = accounts(consumers)
        put_grants(service.service_id, owners)
        attached = driver(design, deployment)
        with COUNTER.counting():
            start = time.monotonic()
            attached.start()
            ids = burst(provider, service.service_id, owners, n)
            issued = time.monotonic() - start
            done_at = wait_available(provider, service.service_id, ids, start, issued + timeout)
            stopped_at = time.monotonic() - start
            attached.finish()
            op = "AcceptVpcEndpointConnections"
            calls, attempts = COUNTER.of(op), COUNTER.attempts_of(op)
            throttled = COUNTER.throttled_of(op)
        final = states(provider, service.service_id)
        return Run(
            calls,
            attempts,
            throttled,
            done_at,
            sum(1 for i in ids if final.get(i) != "available"),
            attached.lost(),
            f"Connects and their notifications issued in {issued:.1f} s; {attached.describe()}",
            stopped_at=stopped_at,
        )


def p1_burst(n: int = 500, consumers: int = 25, timeout: float = 180.0) -> Result:
    """A burst of Connects from registered consumers through SNS -> SQS -> event source ->
    handler, with the template's event source settings; the naive design side by side, fed the
    same burst through SNS -> Lambda."""
    runs = {
        design: [
            _p1_run(design, n, consumers, timeout if design == OURS else PEER_RUN)
            for _ in range(spread.RUNS)
        ]
        for design in (OURS, PEER)
    }
    ours, peer = runs[OURS], runs[PEER]
    calls = spread_of(ours, lambda r: r.accept_calls)
    lost = spread_of(ours, lambda r: r.lost + r.not_available)
    met = all(
        r.accept_calls <= 10 and r.lost == 0 and r.not_available == 0 and r.until_all is not None
        for r in ours
    )
    lower_bound = max(0, n - 10)  # the naive design's Accepts beyond the burst, at 1 per second
    comparison = _comparison(
        f"P1: burst of {n} Connects",
        ours,
        peer,
        timeout,
        PEER_RUN,
        peer_calls_note=f" made in the run; {n} needed",
        peer_calls=n,
        peer_time_note=f" (>= {lower_bound} s: 1 Accept/s after the burst of 10)",
        peer_bound=lower_bound,
    )
    return Result(
        "P1",
        f"burst of {n} Connects ({consumers} registered consumers, one service)",
        f"{calls.show(count)} Accept calls, all available in {until_all(ours, timeout)}, "
        f"{lost.show(count)} lost",
        "<= 10 Accept calls, 0 lost",
        met,
        [
            *comparison,
            "",
            f"- The burst: {n} connections from {consumers} registered consumers appear "
            f"{BURST_CHUNK} at a time, each chunk's Connect notifications published through the "
            "emulator's SNS before the next chunk appears (creating the endpoints through the API "
            "is what a loaded machine slows down most: 500 of them would arrive over a minute, "
            "a stream rather than a burst). Both designs run while the burst arrives.",
            f"- {spread.RUNS} run(s) per design; each figure the median (min-max) over the runs; "
            f"the naive design is stopped {PEER_RUN:.0f} s after the last Connect.",
            *_run_notes(ours, peer),
        ],
        {
            "accept_calls": calls.median,
            "seconds": [r.until_all for r in ours],
            "lost": lost.median,
            "peer_accept_calls": [r.accept_calls for r in peer],
        },
        peer=comparison,
    )


def _run_notes(ours: Sequence[Run], peer: Sequence[Run]) -> list[str]:
    lines = [f"- {OURS}, run {i + 1}: {r.note}." for i, r in enumerate(ours)]
    lines += [f"- {PEER}, run {i + 1}: {r.note}." for i, r in enumerate(peer)]
    return lines


def _comparison(
    title: str,
    ours: Sequence[Run],
    peer: Sequence[Run],
    ours_cap: float,
    peer_cap: float,
    *,
    peer_calls_note: str = "",
    peer_time_note: str = "",
    peer_bound: float = 0.0,
    peer_calls: int | None = None,
) -> list[str]:
    """The side-by-side table of one scenario (markdown lines). `peer_calls`: the Accept calls the
    naive design needs in all (one per Connect), when its run is stopped before it made them."""

    def row(name: str, value: Callable[[Run], float], note: str = "", need: float = 0) -> str:
        a, b = spread_of(ours, value), spread_of(peer, value)
        r = ratio(a.median, max(need, b.median))
        return f"| {name} | {a.show(count)} | {b.show(count)}{note} | {r} |"

    a_done = [r.until_all for r in ours if r.until_all is not None]
    b_done = [r.until_all for r in peer if r.until_all is not None]
    if len(a_done) == len(ours) and len(b_done) == len(peer):
        time_ratio = ratio(statistics.median(a_done), statistics.median(b_done))
    elif len(a_done) == len(ours):  # the naive design was stopped first: a lower bound
        stopped = max(peer_bound, statistics.median(r.stopped_at for r in peer))
        time_ratio = f">= {ratio(statistics.median(a_done), stopped)}"
    else:
        time_ratio = "n/a"
    return [
        f"| {title} | {OURS} | {PEER} | {PEER} / {OURS} |",
        "|---|---|---|---|",
        row("Accept calls", lambda r: r.accept_calls, peer_calls_note, peer_calls or 0),
        f"| time until all available | {until_all(ours, ours_cap)} | "
        f"{until_all(peer, peer_cap)}{peer_time_note} | {time_ratio} |",
        row("Accept attempts (retries included)", lambda r: r.accept_attempts),
        row("throttled attempts", lambda r: r.throttled),
        row("not available at the end of the run", lambda r: r.not_available),
        row("lost (DLQ / invocations that gave up)", lambda r: r.lost),
    ]


# ---------------------------------------------------------------------- P2
def _one_connect(
    consumer: Consumer, service: EndpointService, deployment: LocalDeployment, deps: Deps
) -> tuple[dict[str, int], dict[str, int]]:
    """(calls of the Connect notification's invocation, calls of the Accept notification's)."""
    from vpce_approver.handlers.notifications import process

    sqs = deployment.provider.client("sqs")

    def receive() -> list[dict[str, Any]]:
        messages = sqs.receive_message(QueueUrl=deployment.queue_url, MaxNumberOfMessages=10)
        records = [
            {"messageId": m["MessageId"], "body": m["Body"], "eventSource": "aws:sqs"}
            for m in messages.get("Messages", [])
        ]
        for m in messages.get("Messages", []):
            sqs.delete_message(QueueUrl=deployment.queue_url, ReceiptHandle=m["ReceiptHandle"])
        return records

    consumer.create_endpoint(service.service_name)
    connect = receive()  # the event source's work, outside the window
    with COUNTER.counting():
        assert process(connect, deps) == []
        on_connect = dict(COUNTER.calls)
    accept = receive()
    with COUNTER.counting():
        assert process(accept, deps) == []
        on_accept = dict(COUNTER.calls)
    return on_connect, on_accept


def p2_calls_per_connect(samples: int = 5) -> Result:
    with world() as (provider, deployment, service):
        consumer = provider.consumer("111111111111")
        put_grants(service.service_id, [consumer.account_id])
        deps = deployment.deps()
        cold_connect, _ = _one_connect(consumer, service, deployment, deps)
        warm = [_one_connect(consumer, service, deployment, deps) for _ in range(samples)]
    connect_totals = [sum(c.values()) for c, _ in warm]
    accept_totals = [sum(a.values()) for _, a in warm]
    worst = max(connect_totals)
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(warm[-1][0].items()))
    follow_kinds = ", ".join(f"{k} {v}" for k, v in sorted(warm[-1][1].items()))
    cold_extra = {k: v - warm[-1][0].get(k, 0) for k, v in cold_connect.items()}
    cold_extra = {k: v for k, v in cold_extra.items() if v > 0}
    return Result(
        "P2",
        "AWS calls per registry-hit Connect",
        f"{worst} calls (warm container)",
        # Describe, BatchGet, audit "requested", Accept, BatchGet again (revalidate.py: an edit
        # between the decision and the Accept is undone at once, issue 11), audit "done"
        "<= 6",
        worst <= 6,
        [
            f"- Connect notification -> accepted: {kinds} (max over {samples} warm Connects).",
            f"- The Accept notification that follows (closes an escalation if one were open): "
            f"{follow_kinds} = {max(accept_totals)} call(s).",
            "- First Connect in a fresh container: "
            + (
                "extra " + ", ".join(f"{k} +{v}" for k, v in sorted(cold_extra.items()))
                if cold_extra
                else "the same calls (no one-off table descriptions or lookups)"
            )
            + ".",
            "- Counted with botocore `before-call` handlers registered on every session "
            "(boto3's and pynamodb's own), only around the handler's `process()` call.",
        ],
        {"warm": worst, "cold": sum(cold_connect.values()), "follow": max(accept_totals)},
    )


# ---------------------------------------------------------------------- P3
IMPORT_PROBE = (
    "import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
)
HANDLER = "vpce_approver.handlers.notifications"
FIRST_CONNECT = f"{HANDLER}, vpce_approver.converge, vpce_approver.runtime"
"""What a cold container has imported once its first Connect is decided (the handler imports the
decision path on first use)."""


def _import_seconds(module: str, env: Mapping[str, str]) -> float:
    out = subprocess.run(  # noqa: S603 - our interpreter, a fixed probe
        [sys.executable, "-c", IMPORT_PROBE.format(module=module)],
        capture_output=True,
        text=True,
        check=True,
        env=dict(env),
    )
    return float(out.stdout.strip().splitlines()[-1])


def p3_import_time(runs: int = 9) -> Result:
    with tempfile.TemporaryDirectory(prefix="vpce-bench-pyc-") as pycache:
        # Bytecode in a private cache, written by the warm-up runs whatever the environment says
        # (PYTHONDONTWRITEBYTECODE would leave our modules compiled from source on every run
        # while boto3's come from the .pyc pip wrote): both sides load warm .pyc files.
        env = {
            **{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "POWERTOOLS_SERVICE_NAME": "vpce-approver",
            "POWERTOOLS_METRICS_NAMESPACE": "VpceApprover",
            "PYTHONPYCACHEPREFIX": pycache,
        }
        probes = {"boto3": "boto3", "handler": HANDLER, "first": FIRST_CONNECT}
        for module in probes.values():
            _import_seconds(module, env)  # compile once: a deployed package ships .pyc warm
        times: dict[str, list[float]] = {k: [] for k in probes}
        for _ in range(runs):  # interleaved: all see the same machine load
            for key, module in probes.items():
                times[key].append(_import_seconds(module, env))
    b, h, f = (statistics.median(times[k]) for k in ("boto3", "handler", "first"))
    ratio_ = h / b

    def span(key: str) -> str:
        return f"min {min(times[key]) * 1000:.0f} / max {max(times[key]) * 1000:.0f} ms"

    return Result(
        "P3",
        "decision-handler import time over bare `import boto3`",
        f"{ratio_:.2f}x ({h * 1000:.0f} ms vs {b * 1000:.0f} ms); with the decision path "
        f"loaded on first use {f / b:.2f}x",
        "<= 1.25x",
        ratio_ <= 1.25,
        [
            f"- Median of {runs} fresh `{sys.executable}` processes each, interleaved; "
            f"`import {HANDLER}` vs `import boto3`, timed inside the process (interpreter "
            "start-up excluded), bytecode compiled beforehand into a private cache.",
            f"- boto3: {span('boto3')}; handler: {span('handler')}.",
            "- The handler imports the decision path (converge, pynamodb, botocore) on first "
            "use, so a cold container's first Connect pays for it: handler + decision path "
            f"(`import {FIRST_CONNECT}`) {f * 1000:.0f} ms, {f / b:.2f}x boto3 "
            f"({span('first')}). That is the cold-start cost to watch; the target is on the "
            "handler's import as the issue defines it.",
        ],
        {"ratio": ratio_, "handler_ms": h * 1000, "boto3_ms": b * 1000, "first_ms": f * 1000},
    )


# ---------------------------------------------------------------------- P4


def p4_sweep(pending: int = 10_000, consumers: int = 2_000) -> Result:
    from vpce_approver.sweep import sweep

    with world() as (provider, deployment, service):
        # The emulator fans every Accept event out to SQS synchronously, inside the Accept call
        # (on AWS it is asynchronous); the sweep does not read the queue, so it is detached.
        unsubscribe_queue(provider, deployment)
        deps = deployment.deps(notification_topic_arn=deployment.topic_arn)
        sweep(deps)  # warm container: clients made, pynamodb's table descriptions cached
        owners = accounts(consumers, base=200_000_000_000)
        put_grants(service.service_id, owners)
        seed_connections(service.service_id, owners, pending)
        with COUNTER.counting():
            start = time.perf_counter()
            report = sweep(deps)
            wall = time.perf_counter() - start
            calls = dict(COUNTER.calls)
            targets = dict(COUNTER.targets)
        registry = deps.settings.registry_table
        final = states(provider, service.service_id)
    available = sum(1 for s in final.values() if s == "available")
    bound = {
        "ec2:DescribeVpcEndpointConnections": math.ceil(pending / PAGE),
        # read before deciding, and again right after the Accept (revalidate.py: issue 11 §3)
        "registry reads (BatchGetItem + Query)": 2 * math.ceil(consumers / BATCH_GET_MAX),
        "ec2:AcceptVpcEndpointConnections": math.ceil(pending / PAGE),
    }
    actual = {
        "ec2:DescribeVpcEndpointConnections": calls.get("ec2:DescribeVpcEndpointConnections", 0),
        "registry reads (BatchGetItem + Query)": targets.get(f"dynamodb:BatchGetItem {registry}", 0)
        + targets.get(f"dynamodb:Query {registry}", 0),
        "ec2:AcceptVpcEndpointConnections": calls.get("ec2:AcceptVpcEndpointConnections", 0),
    }
    ratio = sum(actual.values()) / sum(bound.values())
    rows = [f"| {k} | {actual[k]} | {bound[k]} |" for k in bound]
    counted = {f"dynamodb:BatchGetItem {registry}", f"dynamodb:Query {registry}"}
    others = {
        k: v for k, v in sorted(calls.items()) if k not in bound and not k.startswith("dynamodb")
    }
    others |= {k: v for k, v in sorted(targets.items()) if k not in counted}
    audit_floor = math.ceil(pending / AUDIT_BATCH)
    met = ratio <= 1.2 and available == pending and report.errors == {}
    return Result(
        "P4",
        f"sweep of {pending:,} pending connections from {consumers:,} consumers",
        f"{ratio:.2f}x the lower bound ({sum(actual.values())} vs {sum(bound.values())} calls),"
        f" {wall:.1f} s",
        "<= 1.2x",
        met,
        [
            "| calls (bounded kinds) | made | lower bound |",
            "|---|---|---|",
            *rows,
            "",
            "- Registry reads in detail: BatchGetItem "
            f"{targets.get(f'dynamodb:BatchGetItem {registry}', 0)}, Query of the `*` partition "
            f"{targets.get(f'dynamodb:Query {registry}', 0)}.",
            "- Outside the issue's bound: "
            + ", ".join(f"{k} {v}" for k, v in others.items())
            + f" (audit: one record per decision, {AUDIT_BATCH} per BatchWriteItem, "
            f"floor {audit_floor}).",
            f"- Result: {available:,} of {pending:,} available after one sweep; wall time "
            f"{wall:.1f} s on the emulator (throttle on).",
        ],
        {"ratio": ratio, "wall": wall, "calls": calls},
    )


# ---------------------------------------------------------------------- P5
class Watcher(threading.Thread):
    """Records when each endpoint is first seen available (provider Describe every 50 ms)."""

    def __init__(self, provider: Provider, service_id: str) -> None:
        super().__init__(daemon=True)
        self.provider, self.service_id = provider, service_id
        self.seen: dict[str, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            now = time.monotonic()
            for vpce, state in states(self.provider, self.service_id).items():
                if state == "available" and vpce not in self.seen:
                    self.seen[vpce] = now
            time.sleep(0.05)


def _p5_run(design: str, n: int, seed: int, timeout: float) -> Run:
    rng = random.Random(seed)  # the same arrivals for both designs
    with world() as (provider, deployment, service):
        owners = accounts(4, base=300_000_000_000)
        put_grants(service.service_id, owners)
        actors = [provider.consumer(a) for a in owners]
        for actor in actors:
            actor._network()
        deployment.poller().drain()
        attached = driver(design, deployment)
        watcher = Watcher(provider, service.service_id)
        with COUNTER.counting():
            attached.start()
            watcher.start()
            started: dict[str, float] = {}
            first = time.monotonic()
            for i in range(n):
                t = time.monotonic()
                started[actors[i % len(actors)].create_endpoint(service.service_name)] = t
                time.sleep(rng.uniform(0.05, 0.5))
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and not set(started) <= set(watcher.seen):
                time.sleep(0.05)
            watcher.stop.set()
            watcher.join(timeout=10)
            stopped_at = time.monotonic() - first
            attached.finish()
            op = "AcceptVpcEndpointConnections"
            calls, attempts = COUNTER.of(op), COUNTER.attempts_of(op)
            throttled = COUNTER.throttled_of(op)
        latencies = [
            watcher.seen[v] - t if v in watcher.seen else math.inf for v, t in started.items()
        ]
        done = set(started) <= set(watcher.seen)
        return Run(
            calls,
            attempts,
            throttled,
            max(watcher.seen[v] for v in started) - first if done else None,
            sum(1 for v in started if v not in watcher.seen),
            attached.lost(),
            attached.describe(),
            latencies,
            stopped_at,
        )


def percentile(values: Sequence[float], q: int) -> float:
    """Nearest-rank percentile: a connection never seen available (inf) counts as the slowest."""
    ranked = sorted(values)
    return ranked[max(0, math.ceil(q / 100 * len(ranked)) - 1)]


def latency_spread(runs: Sequence[Run], q: int) -> Spread:
    return Spread.of([percentile(r.latencies, q) for r in runs])


def _show_latency(values: Spread) -> str:
    if math.isinf(values.high):
        finite = [v for v in values.values if not math.isinf(v)]
        low = f"{min(finite):.2f}" if finite else "never"
        return f"{'never' if math.isinf(values.median) else f'{values.median:.2f} s'} ({low}-never)"
    return values.show(seconds, " s")


def p5_latency(n: int = 40, seed: int = 7, timeout: float = 60.0) -> Result:
    """Connects one at a time, each timed until available: vpce-approver as deployed, the naive
    design side by side (same seeded arrivals)."""
    runs = {
        design: [
            _p5_run(design, n, seed + i, timeout if design == OURS else PEER_RUN)
            for i in range(spread.RUNS)
        ]
        for design in (OURS, PEER)
    }
    ours, peer = runs[OURS], runs[PEER]
    p50, p95 = latency_spread(ours, 50), latency_spread(ours, 95)
    met = p50.median <= 1.0 and p95.median <= 2.0 and all(r.not_available == 0 for r in ours)
    comparison = _comparison(f"P5: {n} Connects one at a time", ours, peer, timeout, PEER_RUN)
    latency_rows = []
    for name, q in (("p50", 50), ("p95", 95), ("max", 100)):
        a, b = latency_spread(ours, q), latency_spread(peer, q)
        r_ = "n/a" if math.isinf(b.median) else ratio(a.median, b.median)
        latency_rows.append(f"| latency {name} | {_show_latency(a)} | {_show_latency(b)} | {r_} |")
    comparison[3:3] = latency_rows
    return Result(
        "P5",
        "Connect -> available latency on the emulator",
        f"p50 {p50.show(seconds, ' s')}, p95 {p95.show(seconds, ' s')}",
        "p50 <= 1.0 s, p95 <= 2.0 s",
        met,
        [
            *comparison,
            "",
            f"- Connects arrive one at a time, 0.05-0.5 s apart (seeded, the same for both "
            f"designs), from 4 registered consumers; {spread.RUNS} run(s) per design, each "
            "figure the median (min-max) over the runs. Latency = Connect call start -> first "
            "provider Describe showing `available` (polled every 50 ms); a Connect never seen "
            "available counts as the slowest (nearest-rank percentiles).",
            f"- The naive design is stopped {PEER_RUN:.0f} s after the last Connect; "
            f"{OURS} is given {timeout:.0f} s.",
            *_run_notes(ours, peer),
        ],
        {
            "p50": p50.median,
            "p95": p95.median,
            "runs": {k: [r.latencies for r in v] for k, v in runs.items()},
        },
        peer=comparison,
    )


def p6_audit() -> Result:  # in its own module: audit_p6.py
    from .audit_p6 import p6_audit as run

    return run()


def p7_org_burst() -> Result:  # in its own module: org_p7.py
    from .org_p7 import p7_org_burst as run

    return run()


SCENARIOS: dict[str, Callable[[], Result]] = {
    "P1": p1_burst,
    "P2": p2_calls_per_connect,
    "P3": p3_import_time,
    "P4": p4_sweep,
    "P5": p5_latency,
    "P6": p6_audit,
    "P7": p7_org_burst,
}


def dumps(results: Sequence[Result]) -> str:
    return json.dumps({r.key: r.data for r in results}, default=str, indent=2)
