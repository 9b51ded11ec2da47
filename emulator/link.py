"""One direction of a simulated path, with a seeded fault plan.

A :class:`Link` has no clock and no I/O: ``transmit(data, kind, now)`` returns the instants at which copies of
the datagram arrive (none when it is lost). The same plan therefore runs in virtual time and under the asyncio
driver. Every random choice comes from the link's own ``random.Random``, so a seed replays a run exactly.
One-way faults are simply a plan on one direction only.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

DropPredicate = Callable[[bytes, str, float], bool]
"""``(data, kind, now) -> True`` to drop the datagram."""


@dataclass(frozen=True)
class FaultPlan:
    """What a link does to datagrams. All probabilities are per datagram, in [0, 1]."""

    loss: float = 0.0
    """Probability that a datagram is lost."""
    delay: float = 0.0
    """Fixed one-way delay, seconds."""
    jitter: float = 0.0
    """Extra delay drawn uniformly from [0, jitter] seconds."""
    duplicate: float = 0.0
    """Probability that a second copy arrives (``duplicate_delay`` later)."""
    duplicate_delay: float = 0.001
    reorder: float = 0.0
    """Probability that a datagram is held back ``reorder_delay`` seconds, letting later ones overtake it."""
    reorder_delay: float = 0.05
    blackholes: tuple[tuple[float, float], ...] = ()
    """Windows ``[start, end)`` in which every datagram is lost."""
    drop_kinds: frozenset[str] = frozenset()
    """Drop every datagram whose ``kind`` is in this set (e.g. ``{"dpd_ack"}``)."""
    drop_kinds_window: tuple[float, float] = (0.0, float("inf"))
    """When ``drop_kinds`` applies, ``[start, end)``."""
    drop_if: DropPredicate | None = field(default=None, compare=False)
    """Arbitrary predicate; True drops the datagram."""

    def __post_init__(self) -> None:
        for name in ("loss", "duplicate", "reorder"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name}: must be in [0, 1], got {v!r}")
        for name in ("delay", "jitter", "duplicate_delay", "reorder_delay"):
            v = getattr(self, name)
            if v < 0:
                raise ValueError(f"{name}: must be >= 0, got {v!r}")
        for w in self.blackholes:
            if len(w) != 2 or w[0] > w[1]:
                raise ValueError(f"blackholes: a window must be [start, end) with start <= end, got {w!r}")

    @property
    def perfect(self) -> bool:
        return self == PERFECT

    @classmethod
    def from_mapping(cls, m: dict[str, Any], where: str = "faults") -> FaultPlan:
        """Build from a scenario-file mapping; unknown keys are an error naming the field."""
        allowed = {
            "loss",
            "delay",
            "jitter",
            "duplicate",
            "duplicate_delay",
            "reorder",
            "reorder_delay",
            "blackholes",
            "drop_kinds",
            "drop_kinds_window",
        }
        for k in m:
            if k not in allowed:
                raise ValueError(f"{where}.{k}: unknown field (allowed: {', '.join(sorted(allowed))})")
        kw: dict[str, Any] = {}
        for k, v in m.items():
            if k == "blackholes":
                kw[k] = tuple((float(a), float(b)) for a, b in v)
            elif k == "drop_kinds":
                kw[k] = frozenset(str(x) for x in v)
            elif k == "drop_kinds_window":
                kw[k] = (float(v[0]), float(v[1]))
            else:
                try:
                    kw[k] = float(v)
                except (TypeError, ValueError):
                    raise ValueError(f"{where}.{k}: expected a number, got {v!r}") from None
        try:
            return cls(**kw)
        except ValueError as e:
            raise ValueError(f"{where}.{e}") from None


PERFECT = FaultPlan()


class Link:
    """One direction of a path: applies a :class:`FaultPlan` with its own seeded RNG."""

    __slots__ = ("delivered", "lost", "plan", "rng", "sent")

    def __init__(self, plan: FaultPlan = PERFECT, rng: random.Random | None = None) -> None:
        self.plan = plan
        self.rng = rng or random.Random(0)
        self.sent = 0
        self.lost = 0
        self.delivered = 0

    def transmit(self, data: bytes, kind: str, now: float) -> list[float]:
        """Arrival instants of the copies of this datagram (empty if lost)."""
        p = self.plan
        self.sent += 1
        if p is PERFECT:
            self.delivered += 1
            return [now]
        for start, end in p.blackholes:
            if start <= now < end:
                self.lost += 1
                return []
        if p.drop_kinds and kind in p.drop_kinds and p.drop_kinds_window[0] <= now < p.drop_kinds_window[1]:
            self.lost += 1
            return []
        if p.drop_if is not None and p.drop_if(data, kind, now):
            self.lost += 1
            return []
        rng = self.rng
        if p.loss and rng.random() < p.loss:
            self.lost += 1
            return []
        at = now + p.delay
        if p.jitter:
            at += rng.uniform(0.0, p.jitter)
        if p.reorder and rng.random() < p.reorder:
            at += p.reorder_delay
        out = [at]
        if p.duplicate and rng.random() < p.duplicate:
            out.append(at + p.duplicate_delay)
        self.delivered += len(out)
        return out
