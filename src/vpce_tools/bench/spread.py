"""Repeated runs: each figure of the benchmark is the median of several runs, shown with its
min and max so that a regression can be told from noise."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

RUNS = 3
"""Runs per figure (`python -m vpce_tools.bench --runs N`)."""


@dataclass(frozen=True, slots=True)
class Spread:
    """Median, min and max of one figure over the runs (None: absent in some run)."""

    values: tuple[float, ...]

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        if not values:
            raise ValueError("a spread needs at least one value")
        return cls(tuple(values))

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)

    def show(self, fmt: Callable[[float], str] = "{:g}".format, unit: str = "") -> str:
        """'1.2 s (1.1-1.4)': the median, then min-max when the runs differ."""
        median = f"{fmt(self.median)}{unit}"
        if len(self.values) == 1 or self.low == self.high:
            return median
        return f"{median} ({fmt(self.low)}-{fmt(self.high)})"


def seconds(value: float) -> str:
    return f"{value:.2f}"


def count(value: float) -> str:
    return f"{value:g}"


def ratio(ours: float, theirs: float) -> str:
    """'12x' (theirs / ours): how many times more the naive design needs."""
    if ours <= 0:
        return "n/a" if theirs <= 0 else "inf"
    return f"{theirs / ours:.1f}x"
