"""The ESP anti-replay window (RFC 4303 §3.4.3), as a bitmap held in one Python int.

The window covers the ``size`` sequence numbers ending at the highest one accepted so far (``top``). Bit ``i`` of
``bitmap`` is set when ``top - i`` has been accepted (bit 0 is ``top`` itself). A received sequence number is

* new, when it is above ``top`` (the window will slide right) or inside the window with its bit clear;
* a replay, when it is inside the window with its bit set;
* outside the window, when it is ``size`` or more below ``top``.

Sequence numbers start at 1 (RFC 4303 §2.2: "the first packet sent using a given SA will contain a sequence
number of 1") and a sender never lets them cycle (§3.3.3), so 0 is below every window.

The check and the update are separate on purpose: RFC 4303 §3.4.3 has the receiver check the window first (so a
replay costs no ICV computation), verify the ICV, and only then update the window ("The receive window is updated
only if the ICV verification succeeds"), which keeps forged packets from sliding it. Appendix A2 of RFC 4303
describes the same split for the 64-bit case.
"""

from __future__ import annotations

from cgw_peer.esp.reasons import EspDrop

__all__ = ["DEFAULT_REPLAY_WINDOW", "ReplayWindow"]

DEFAULT_REPLAY_WINDOW = 1024
"""AWS ``ReplayWindowSize`` default (range 64-2048 packets; ``ike-dpd.md`` §1.1)."""

_REPLAY = EspDrop.REPLAY
_OUTSIDE = EspDrop.OUTSIDE_WINDOW


class ReplayWindow:
    """A sliding receive window of ``size`` packets (32-bit sequence numbers)."""

    __slots__ = ("_mask", "bitmap", "size", "top")

    def __init__(self, size: int = DEFAULT_REPLAY_WINDOW) -> None:
        if size < 1:
            raise ValueError(f"replay window size must be at least 1, got {size}")
        self.size = size
        self.top = 0
        """Highest sequence number accepted so far (0: none yet)."""
        self.bitmap = 0
        """Bit ``i`` set: ``top - i`` was accepted."""
        self._mask = (1 << size) - 1

    def check(self, seq: int) -> EspDrop | None:
        """None when ``seq`` is new; :attr:`EspDrop.REPLAY` or :attr:`EspDrop.OUTSIDE_WINDOW` otherwise.
        Changes nothing."""
        top = self.top
        if seq > top:
            return None
        if seq == 0:
            return _OUTSIDE
        diff = top - seq
        if diff >= self.size:
            return _OUTSIDE
        if (self.bitmap >> diff) & 1:
            return _REPLAY
        return None

    def update(self, seq: int) -> None:
        """Mark ``seq`` accepted (after its ICV verified), sliding the window right if it is above ``top``."""
        top = self.top
        if seq > top:
            shift = seq - top
            # Shifting past the whole window leaves only the new top; the mask keeps the int at `size` bits.
            self.bitmap = ((self.bitmap << shift) | 1) & self._mask if shift < self.size else 1
            self.top = seq
        else:
            self.bitmap |= 1 << (top - seq)

    def accepted(self, seq: int) -> bool:
        """Whether ``seq`` is marked accepted in the current window (for tests and inspection)."""
        diff = self.top - seq
        return 0 <= diff < self.size and seq > 0 and bool((self.bitmap >> diff) & 1)
