"""Shared helpers for the benchmarks: timing loops and the result table."""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Row:
    name: str
    value: float
    unit: str
    target: str = ""
    ok: bool | None = None
    note: str = ""


def rate(fn: Callable[[], object], min_time: float = 0.5, min_iter: int = 1) -> float:
    """Calls of ``fn`` per second (CPU time of this process), measured for at least ``min_time`` seconds."""
    n = 0
    t0 = time.process_time()
    while True:
        fn()
        n += 1
        dt = time.process_time() - t0
        if n >= min_iter and dt >= min_time:
            return n / dt


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize()


def fmt(rows: list[Row]) -> str:
    out = []
    w = max((len(r.name) for r in rows), default=10)
    for r in rows:
        flag = "" if r.ok is None else ("  OK " if r.ok else "  MISS")
        out.append(f"{r.name:<{w}}  {r.value:>14,.1f} {r.unit:<12} {r.target:<14}{flag} {r.note}")
    return "\n".join(out)
