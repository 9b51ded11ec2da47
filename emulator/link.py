"""One direction of a simulated path, with a seeded fault plan.

A :class:`Link` has no clock and no I/O: ``transmit(data, kind, now)`` returns the instants at which copies of
the datagram arrive (none when it is lost). The same plan therefore runs in virtual time and under the asyncio
driver. Every random choice comes from the link's own ``random.Random``, so a seed replays a run exactly.
One-way faults are simply a plan on one direction only.

The faults use tc-netem's names where netem has one: random ``loss``, bursty loss with the Gilbert-Elliott model
(``gilbert_*``, netem's ``loss gemodel p r 1-h 1-k``), ``delay`` and ``jitter``, ``duplicate``, ``reorder``,
``corrupt`` (one flipped bit). A plan without the newer fields draws exactly the random numbers it always drew,
so old seeds replay the same runs.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from emulator import validate

DropPredicate = Callable[[bytes, str, float], bool]
"""``(data, kind, now) -> True`` to drop the datagram."""

_PROBABILITIES = (
    "loss",
    "duplicate",
    "reorder",
    "gilbert_p",
    "gilbert_r",
    "gilbert_loss_bad",
    "gilbert_loss_good",
    "corrupt",
)
"""The plan fields that are probabilities in [0, 1]."""


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
    gilbert_p: float = 0.0
    """Gilbert-Elliott bursty loss (tc-netem ``loss gemodel p r 1-h 1-k``): probability, per datagram, that the
    link moves from the good to the bad state. 0 turns the model off (the link stays good)."""
    gilbert_r: float = 1.0
    """... probability, per datagram, of moving from the bad state back to the good one (netem's ``r``)."""
    gilbert_loss_bad: float = 1.0
    """... loss probability while bad (netem's ``1-h``; 1: every datagram in a burst is lost)."""
    gilbert_loss_good: float = 0.0
    """... loss probability while good (netem's ``1-k``)."""
    corrupt: float = 0.0
    """Probability that a delivered copy has one bit flipped at a random position (tc-netem ``corrupt``).
    The receiver must drop it as malformed or not authentic; it never changes whether the datagram arrives."""

    def __post_init__(self) -> None:
        # Programmatic construction gets the same rules as a file (emulator.validate), named by the bare field;
        # the error is a ConfigError, which is a ValueError.
        self._check("")

    def _check(self, where: str) -> None:
        def at(name: str) -> str:
            return f"{where}.{name}" if where else name

        for name in _PROBABILITIES:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0.0 <= v <= 1.0:
                validate.fail(at(name), f"must be a probability in [0, 1], got {v!r}")
        for name in ("delay", "jitter", "duplicate_delay", "reorder_delay"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not (math.isfinite(v) and v >= 0):
                validate.fail(at(name), f"must be a finite number of seconds >= 0, got {v!r}")
        for i, w in enumerate(self.blackholes):
            validate.window(w, at(f"blackholes[{i}]"))
        validate.window(self.drop_kinds_window, at("drop_kinds_window"))
        if isinstance(self.drop_kinds, set):  # a set given in code: frozen here so the plan stays hashable
            object.__setattr__(self, "drop_kinds", frozenset(self.drop_kinds))
        if not isinstance(self.drop_kinds, frozenset) or not all(isinstance(k, str) for k in self.drop_kinds):
            validate.fail(at("drop_kinds"), f"must be a set of datagram kinds (text), got {self.drop_kinds!r}")

    @property
    def perfect(self) -> bool:
        return self == PERFECT

    FIELDS: ClassVar[tuple[str, ...]] = (
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
        "gilbert_p",
        "gilbert_r",
        "gilbert_loss_bad",
        "gilbert_loss_good",
        "corrupt",
    )
    """The keys of a fault plan in a file (scenario ``links:`` / ``plan:``, ``awsnetemu vpn --faults``)."""

    @classmethod
    def from_mapping(cls, m: Any, where: str = "faults") -> FaultPlan:
        """Build from a file's mapping; every value is checked (type, range, finiteness) and a bad one is a
        :class:`~emulator.errors.ConfigError` (a ``ValueError``) naming ``where.field`` and the allowed values.

        Windows (``blackholes`` items, ``drop_kinds_window``) are ``[start, end]`` with ``end >= start``; ``end``
        may be ``.inf`` (open-ended). Delays are finite seconds >= 0; probabilities are in [0, 1].
        """
        m = validate.mapping(m, where)
        validate.keys(m, where, cls.FIELDS)
        kw: dict[str, Any] = {}
        for k, v in m.items():
            w = f"{where}.{k}"
            if k == "blackholes":
                kw[k] = tuple(validate.window(x, f"{w}[{i}]") for i, x in enumerate(validate.sequence(v, w)))
            elif k == "drop_kinds":
                kw[k] = frozenset(validate.string_list(v, w))
            elif k == "drop_kinds_window":
                kw[k] = validate.window(v, w)
            elif k in _PROBABILITIES:
                kw[k] = validate.number(v, w, minimum=0.0, maximum=1.0)
            else:
                kw[k] = validate.number(v, w, minimum=0.0)
        return cls(**kw)


PERFECT = FaultPlan()


class Link:
    """One direction of a path: applies a :class:`FaultPlan` with its own seeded RNG."""

    __slots__ = ("bad", "corrupted", "delivered", "lost", "plan", "rng", "sent")

    def __init__(self, plan: FaultPlan = PERFECT, rng: random.Random | None = None) -> None:
        self.plan = plan
        self.rng = rng or random.Random(0)
        self.sent = 0
        self.lost = 0
        self.delivered = 0
        self.corrupted = 0
        self.bad = False
        """Gilbert-Elliott state: True while the link is in its bad (bursty loss) state."""

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
        if p.gilbert_p:
            # Two-state Markov chain, one step per datagram (Gilbert 1960, Elliott 1963; netem's gemodel): the
            # state moves first, then the datagram meets the new state's loss probability. Draws happen only
            # with the model on, so a plan without it replays exactly as before.
            if self.bad:
                if rng.random() < p.gilbert_r:
                    self.bad = False
            elif rng.random() < p.gilbert_p:
                self.bad = True
            drop = p.gilbert_loss_bad if self.bad else p.gilbert_loss_good
            if drop and rng.random() < drop:
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

    def corrupt(self, data: bytes) -> bytes:
        """One delivered copy of ``data`` after the plan's ``corrupt`` fault: unchanged, or with one bit flipped
        at a position drawn from the link's RNG (netem flips one random bit). Call once per arrival that
        :meth:`transmit` returned; it draws nothing when ``corrupt`` is 0."""
        c = self.plan.corrupt
        if not c or not data or self.rng.random() >= c:
            return data
        self.corrupted += 1
        bit = self.rng.randrange(len(data) * 8)
        out = bytearray(data)
        out[bit >> 3] ^= 0x80 >> (bit & 7)
        return bytes(out)
