"""Clocks. Protocol cores never read these: drivers pass ``now`` in."""

from __future__ import annotations

import time


class VirtualClock:
    """A clock that moves only when told to, and never backwards (trio's MockClock rule)."""

    __slots__ = ("_now",)

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)

    def time(self) -> float:
        return self._now

    def advance_to(self, at: float) -> None:
        if at < self._now:
            raise ValueError(f"time can't go backwards: {at} < {self._now}")
        self._now = at

    def advance(self, delay: float) -> None:
        if delay < 0:
            raise ValueError(f"time can't go backwards: delay {delay}")
        self._now += delay


class MonotonicClock:
    """Real time, for drivers on real sockets."""

    __slots__ = ("_origin",)

    def __init__(self) -> None:
        self._origin = time.monotonic()

    def time(self) -> float:
        return time.monotonic() - self._origin
