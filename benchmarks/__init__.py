"""Benchmarks: each module measures one part of qemu-bmc against a reference peer.

A benchmark module has `NAME`, `add_arguments(parser)` (optional) and
`run(args) -> Result`. `python -m benchmarks` (or `./benchmarks/run.sh`) runs
them and prints one table; see benchmarks/__main__.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

SUBJECT = "qemu-bmc"  # the column the targets are checked on


@dataclass
class Row:
    """One measured quantity, one value per peer (column)."""

    benchmark: str
    metric: str
    unit: str
    values: dict[str, float]
    lower_is_better: bool
    limit: float | None = None  # absolute target for SUBJECT: <= limit (lower) or >= limit (higher)
    max_slowdown: float | None = None  # SUBJECT within this factor of `reference`
    reference: str | None = None

    def slowdown(self) -> float | None:
        """How many times worse SUBJECT is than the reference (1.0: equal, < 1: better)."""
        if self.reference is None:
            return None
        mine, ref = self.values.get(SUBJECT), self.values.get(self.reference)
        if mine is None or ref is None or not all(map(math.isfinite, (mine, ref))):
            return None
        if self.lower_is_better:
            return mine / ref if ref > 0 else math.inf
        return ref / mine if mine > 0 else math.inf

    def limit_verdict(self) -> str:
        """The absolute target: '' (none), 'pass' or 'FAIL'."""
        if self.limit is None:
            return ""
        mine = self.values.get(SUBJECT)
        if mine is None or not math.isfinite(mine):
            return "FAIL"
        return "pass" if (mine <= self.limit if self.lower_is_better else mine >= self.limit) else "FAIL"

    def slowdown_verdict(self) -> str:
        """The relative target: '' (none), 'pass' or 'FAIL'."""
        if self.max_slowdown is None:
            return ""
        s = self.slowdown()
        return "pass" if s is not None and s <= self.max_slowdown else "FAIL"

    def limit_cell(self) -> str:
        if self.limit is None:
            return "-"
        return f"{'≤' if self.lower_is_better else '≥'} {fmt(self.limit)} {self.unit}: {self.limit_verdict()}"

    def slowdown_cell(self) -> str:
        s = self.slowdown()
        text = "-" if s is None else f"{s:.2f}×"
        if self.max_slowdown is not None:
            text += f" (≤ {self.max_slowdown:g}× {self.reference}: {self.slowdown_verdict()})"
        return text


@dataclass
class Result:
    rows: list[Row]
    notes: list[str] = field(default_factory=list)  # how it was measured, one sentence each
    versions: dict[str, str] = field(default_factory=dict)  # what ran: name -> version


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if not math.isfinite(value):
        return "n/a"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def table(rows: list[Row]) -> str:
    """A Markdown table: one column per peer, then the absolute target and the slowdown."""
    peers: list[str] = []
    for row in rows:
        for peer in row.values:
            if peer not in peers:
                peers.append(peer)
    header = ["benchmark", "metric", *peers, "target", f"{SUBJECT} slowdown"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in rows:
        cells = [row.benchmark, f"{row.metric} ({row.unit})", *(fmt(row.values.get(p)) for p in peers),
                 row.limit_cell(), row.slowdown_cell()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
