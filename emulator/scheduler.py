"""A deterministic discrete-event scheduler over a :class:`VirtualClock`.

Entries are ``(at, seq, callback)`` in a heap; ``seq`` is a monotonic counter, so entries due at the same
instant run in the order they were scheduled (simpy's ``eid``). Nothing here depends on wall time.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

from emulator.clock import VirtualClock
from emulator.errors import ConfigError


class BudgetExceeded(ConfigError, RuntimeError):
    """A run went past its event budget (``max_events``): too many trace records or scheduled callbacks.

    A configuration error (the ``awsnetemu`` command prints it as one line and exits 2): the budget or the timers
    that fire this often must change. Also a :class:`RuntimeError`, as the scheduler's limit always was."""


class TimerHandle:
    """A scheduled call; :meth:`cancel` makes it a no-op."""

    __slots__ = ("args", "at", "callback", "cancelled")

    def __init__(self, at: float, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.at = at
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Scheduler:
    """Runs callbacks in virtual time order."""

    def __init__(self, clock: VirtualClock | None = None) -> None:
        self.clock = clock or VirtualClock()
        self._queue: list[tuple[float, int, TimerHandle]] = []
        self._seq = 0
        self.events_run = 0

    @property
    def now(self) -> float:
        return self.clock.time()

    def call_at(self, at: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        if at < self.now:
            at = self.now
        handle = TimerHandle(at, callback, args)
        self._seq += 1
        heapq.heappush(self._queue, (at, self._seq, handle))
        return handle

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        return self.call_at(self.now + max(0.0, delay), callback, *args)

    def peek(self) -> float | None:
        """The instant of the next live entry, or ``None`` when nothing is scheduled."""
        q = self._queue
        while q and q[0][2].cancelled:
            heapq.heappop(q)
        return q[0][0] if q else None

    def step(self) -> bool:
        """Run the next entry. Returns False when the queue is empty."""
        q = self._queue
        while q:
            at, _, handle = heapq.heappop(q)
            if handle.cancelled:
                continue
            self.clock.advance_to(at)
            self.events_run += 1
            handle.callback(*handle.args)
            return True
        return False

    def run_until(self, until: float, max_events: int | None = None) -> None:
        """Run every entry due at or before ``until``, then set the clock to ``until``.

        ``max_events``: raise :class:`BudgetExceeded` after that many callbacks (a loop that never lets virtual
        time reach ``until``, e.g. a timer re-armed at the same instant, stops here instead of hanging)."""
        n = 0
        while True:
            nxt = self.peek()
            if nxt is None or nxt > until:
                break
            if max_events is not None and n >= max_events:
                raise BudgetExceeded(
                    f"max_events: the run stopped at t={self.now:.6f}: more than {max_events:,} scheduled "
                    f"callbacks before t={until:g} (raise the event budget, or lengthen the timers that fire this "
                    "often)"
                )
            self.step()
            n += 1
        if until > self.now:
            self.clock.advance_to(until)

    def run(self, max_events: int | None = None) -> None:
        """Run until the queue is empty."""
        n = 0
        while self.peek() is not None:
            if max_events is not None and n >= max_events:
                raise BudgetExceeded(f"max_events: more than {max_events:,} scheduled callbacks")
            self.step()
            n += 1
