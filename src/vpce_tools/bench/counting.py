"""Count AWS calls with botocore's own events, for every client of the process.

botocore registers `handlers.BUILTIN_HANDLERS` on each new session, and every client copies its
session's handlers. pynamodb makes its own botocore session (one per thread) and client, boto3 its
default session, the world builder its own sessions: all of them are created after `install()`,
so all of them report here. `before-call` fires once per API call (what the code asked for;
`before-parameter-build` tells which table it names); `before-send` once per HTTP attempt
(retries of throttled calls included); `needs-retry` once per answered attempt, which tells the
throttled ones (`RequestLimitExceeded`). The `before-send` handler goes first in the list so that
moto's stubber (also a `before-send` handler, which answers the request) cannot hide it.

Counting is off until `counting()` turns it on: a benchmark measures only its window."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from botocore import handlers

THROTTLE_CODES = frozenset({"RequestLimitExceeded", "Throttling", "ThrottlingException"})


class CallCounter:
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()  # "dynamodb:BatchGetItem" -> API calls
        self.attempts: Counter[str] = Counter()  # HTTP attempts, retries included
        self.targets: Counter[str] = Counter()  # "dynamodb:Query reg-table/by_consumer" -> calls
        self.throttled: Counter[str] = Counter()  # "ec2:AcceptVpcEndpointConnections" -> attempts
        self._on = False
        self._lock = threading.Lock()
        self._installed = False

    def install(self) -> None:
        """Register on every session created from now on (idempotent)."""
        if self._installed:
            return
        handlers.BUILTIN_HANDLERS.insert(0, ("before-send", self._on_send))
        handlers.BUILTIN_HANDLERS.append(("before-call", self._on_call))
        handlers.BUILTIN_HANDLERS.append(("before-parameter-build", self._on_params))
        handlers.BUILTIN_HANDLERS.append(("needs-retry", self._on_answer))
        self._installed = True

    def uninstall(self) -> None:
        if not self._installed:
            return
        handlers.BUILTIN_HANDLERS.remove(("before-send", self._on_send))
        handlers.BUILTIN_HANDLERS.remove(("before-call", self._on_call))
        handlers.BUILTIN_HANDLERS.remove(("before-parameter-build", self._on_params))
        handlers.BUILTIN_HANDLERS.remove(("needs-retry", self._on_answer))
        self._installed = False

    def _on_call(self, model: Any = None, **_: Any) -> None:
        if self._on and model is not None:
            name = f"{model.service_model.service_name}:{model.name}"
            with self._lock:
                self.calls[name] += 1

    def _on_params(self, params: Any = None, model: Any = None, **_: Any) -> None:
        """The caller's parameters (before serialisation): which tables a call reads/writes."""
        if self._on and model is not None:
            name = f"{model.service_model.service_name}:{model.name}"
            with self._lock:
                for table in _tables(params):
                    self.targets[f"{name} {table}"] += 1

    def _on_send(self, event_name: str = "", **_: Any) -> None:
        if self._on:
            # before-send.<service-id>.<Operation>
            parts = [*event_name.split(".", 2), "", ""]
            service, operation = parts[1], parts[2]
            with self._lock:
                self.attempts[f"{service}:{operation}"] += 1

    def _on_answer(self, event_name: str = "", response: Any = None, **_: Any) -> None:
        """An attempt was answered (or failed): count it when AWS said it was throttled."""
        if not self._on or not isinstance(response, tuple) or len(response) != 2:
            return
        parsed = response[1]
        code = parsed.get("Error", {}).get("Code") if isinstance(parsed, dict) else None
        if code in THROTTLE_CODES:
            parts = [*event_name.split(".", 2), "", ""]
            with self._lock:
                self.throttled[f"{parts[1]}:{parts[2]}"] += 1

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.attempts.clear()
            self.targets.clear()
            self.throttled.clear()

    @contextmanager
    def counting(self) -> Iterator[CallCounter]:
        """Count inside the block only (the counts are reset when it starts)."""
        self.reset()
        self._on = True
        try:
            yield self
        finally:
            self._on = False

    def total(self) -> int:
        return sum(self.calls.values())

    def of(self, operation: str) -> int:
        """API calls of an operation ("AcceptVpcEndpointConnections"), whatever the service."""
        return sum(n for k, n in self.calls.items() if k.split(":", 1)[1] == operation)

    def attempts_of(self, operation: str) -> int:
        return sum(n for k, n in self.attempts.items() if k.split(":", 1)[1] == operation)

    def throttled_of(self, operation: str) -> int:
        """Attempts of an operation that AWS answered with a throttling error."""
        return sum(n for k, n in self.throttled.items() if k.split(":", 1)[1] == operation)


def _tables(params: Any) -> list[str]:
    """DynamoDB tables (and index) a request names: TableName[/IndexName], or RequestItems'."""
    if not isinstance(params, dict):
        return []
    if "TableName" in params:
        index = params.get("IndexName")
        return [f"{params['TableName']}/{index}" if index else str(params["TableName"])]
    items = params.get("RequestItems")
    return sorted(str(t) for t in items) if isinstance(items, dict) else []


COUNTER = CallCounter()
