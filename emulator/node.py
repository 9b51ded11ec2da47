"""The contract between sans-I/O protocol cores and the drivers that run them."""

from __future__ import annotations

from typing import Protocol

from emulator.actions import Action, Address


class SansIoNode(Protocol):
    """A protocol core driven by three inputs: API calls, datagrams and timers.

    Timer contract: :meth:`next_deadline` returns the earliest absolute instant at which the node wants
    :meth:`handle_timer` called (or ``None``); ``handle_timer(now)`` handles everything due at ``now`` and does
    nothing when called early. Nothing here reads a clock: ``now`` always comes in as an argument.
    """

    def start(self, now: float) -> list[Action]: ...

    def receive_datagram(self, data: bytes, src: Address, dst: Address, now: float) -> list[Action]: ...

    def next_deadline(self) -> float | None: ...

    def handle_timer(self, now: float) -> list[Action]: ...
