"""Re-initiation with backoff: DPDTimeoutAction=restart, and retries of a failed negotiation.

One rule for both IKE versions. Attempts count from 1 after the tunnel was last UP and reset to 0 when it comes
UP again. The delay before attempt n is ``min(max, initial * 2**(n-1))``, shortened by up to ``jitter`` (a
fraction) at random, so that two sides restarting at the same instant do not collide again and a dead peer is
not stormed (strongSwan issue #292; ``ike-dpd.md`` §6 row 11).
"""

from __future__ import annotations

import random

from cgw_peer.config import Behaviour
from cgw_peer.events import restart_scheduled
from emulator.actions import Event


def backoff_delay(attempt: int, initial: float, maximum: float, jitter: float, rng: random.Random) -> float:
    """Seconds before restart attempt ``attempt`` (1-based): ``min(max, initial * 2**(attempt-1))`` shortened
    by up to ``jitter`` at random."""
    base = min(maximum, initial * (2.0 ** min(max(attempt - 1, 0), 62)))
    if jitter > 0:
        base *= 1.0 - jitter * rng.random()
    return base


class Restart:
    """Whether and when this side initiates IKE again."""

    __slots__ = ("at", "attempt", "closed", "restarting")

    def __init__(self) -> None:
        self.at: float | None = None
        """When the next initiation is due (None: none scheduled)."""
        self.attempt = 0
        """Restarts scheduled since the tunnel was last UP."""
        self.restarting = False
        """A DPD restart is in progress: failed negotiations are retried until the tunnel is UP."""
        self.closed = False
        """``close()`` was called: nothing re-initiates until ``initiate()``."""

    def schedule(self, now: float, beh: Behaviour, rng: random.Random) -> Event | None:
        """Schedule the next attempt; the ``restart_scheduled`` event (None when closed)."""
        if self.closed:
            return None
        self.attempt += 1
        delay = backoff_delay(
            self.attempt, beh.restart_backoff_initial, beh.restart_backoff_max, beh.restart_backoff_jitter, rng
        )
        self.at = now + delay
        return restart_scheduled(at=self.at, attempt=self.attempt, delay=delay)

    def due(self, now: float) -> bool:
        """The scheduled attempt is due at ``now`` (and is consumed)."""
        at = self.at
        if at is not None and now >= at:
            self.at = None
            return True
        return False

    def cancel(self) -> None:
        """The peer is bringing the tunnel up itself (or we initiate now): no scheduled attempt."""
        self.at = None

    def on_up(self) -> None:
        """The tunnel is UP: the next outage starts counting attempts from 1 again."""
        self.attempt = 0
        self.restarting = False
        self.at = None

    def close(self) -> None:
        self.closed = True
        self.restarting = False
        self.at = None
