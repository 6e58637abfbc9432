"""The peer: the design most published examples use, on the same emulator with the same throttle.

The notification topic invokes a Lambda function directly (SNS -> Lambda: asynchronous, one
invocation per message, many at once), and each invocation of a Connect decides the one endpoint
its notification names and accepts it: one AcceptVpcEndpointConnections call per notification.
It exists only in the benchmark, to be measured against vpce-approver's design.

Everything but the design is shared, so that only the design differs: the same registry and pure
policy decide, the EC2 client has the same retry configuration (botocore standard mode, 8
attempts), the same throttle (10 burst, 1 per second) answers. Each worker thread is a container
with its own clients (so its own retry quota), as each concurrent Lambda invocation would be. An
invocation that still fails after its retries is counted as failed: Lambda would retry it
asynchronously 1 and 2 minutes later, then drop it (or send it to an on-failure destination) -
beyond a benchmark's run.

When the run stops, invocations still waiting in botocore's backoff are cut short (their next
attempt raises `Stopped` before it is sent), so they cannot leak into the next scenario."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from vpce_approver.converge import Deps
from vpce_approver.model import Action, Connection
from vpce_approver.policy import decide
from vpce_tools.emulator.notifications import add_listener, remove_listener
from vpce_tools.stack import LocalDeployment

CONCURRENCY = 100
"""Simultaneous invocations (SNS -> Lambda scales out: each message is its own invocation)."""


class Stopped(RuntimeError):
    """The run is over: an invocation still retrying is abandoned."""


class NaiveDesign:
    """SNS -> Lambda, one Accept call per Connect notification. Attach with `start()` (the
    deployment's queue must be unsubscribed: the topic feeds this function instead)."""

    def __init__(self, deployment: LocalDeployment, *, concurrency: int = CONCURRENCY) -> None:
        self.deployment = deployment
        self._containers = threading.local()
        self.pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="naive")
        self.stopped = threading.Event()
        self.outcomes: Counter[str] = Counter()
        self.submitted = 0
        self.hooks: list[Callable[[Deps], None]] = []  # called with each container's new Deps
        self._lock = threading.Lock()

    @property
    def deps(self) -> Deps:
        """This worker's container: its own Deps, built on its first invocation."""
        deps: Deps | None = getattr(self._containers, "deps", None)
        if deps is None:
            deps = self.deployment.deps()
            deps.ec2.client.meta.events.register_first(
                "before-send.ec2.*", self._abort_when_stopped
            )
            for hook in self.hooks:
                hook(deps)
            self._containers.deps = deps
        return deps

    def start(self) -> None:
        add_listener(self._on_publish)

    def close(self) -> None:
        """Stop: no new invocations; those retrying give up at their next attempt."""
        self.stopped.set()
        remove_listener(self._on_publish)
        self.pool.shutdown(wait=False, cancel_futures=True)

    def _abort_when_stopped(self, **_: Any) -> None:
        if self.stopped.is_set():
            raise Stopped("benchmark run over")

    def _on_publish(self, topic_arn: str, message: str) -> None:
        if topic_arn == self.deployment.topic_arn and not self.stopped.is_set():
            with self._lock:
                self.submitted += 1
            self.pool.submit(self.invoke, message)

    def in_flight(self) -> int:
        """Invocations not finished yet (waiting for a worker, or in botocore's backoff)."""
        with self._lock:
            return self.submitted - sum(self.outcomes.values())

    def _count(self, outcome: str) -> None:
        with self._lock:
            self.outcomes[outcome] += 1

    def invoke(self, message: str) -> None:
        """One Lambda invocation for one notification."""
        try:
            self._count(self.handle(json.loads(message)))
        except Stopped:
            self._count("cut short")
        except Exception:  # retries exhausted (throttled): the invocation fails
            self._count("failed")

    def handle(self, body: dict[str, Any]) -> str:
        if body.get("eventType") != "Connect":
            return "ignored"
        service_id, vpce_id = str(body["serviceId"]), str(body["vpcEndpointId"])
        owner = str(body["vpcEndpointOwner"])
        deps = self.deps
        managed, grants, _ = deps.registry.lookup([service_id], {owner})
        if service_id not in managed:
            return "ignored"
        conn = Connection(service_id, vpce_id, owner, "pendingAcceptance")
        candidates = [g for k, g in grants.items() if k[1] == owner]
        decision = decide(conn, candidates, 0, datetime.now(UTC), deps.settings.default_decision)
        if decision.action is not Action.ACCEPT:
            return "not accepted"
        deps.ec2.client.accept_vpc_endpoint_connections(
            ServiceId=service_id, VpcEndpointIds=[vpce_id]
        )
        return "accepted"
