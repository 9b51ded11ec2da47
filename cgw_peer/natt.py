"""NAT traversal, the same in both IKE versions (RFC 3947 / RFC 3948 for IKEv1, RFC 7296 §2.23 for IKEv2).

* IKE starts on UDP 500. Once NAT is detected (NAT-D / NAT_DETECTION_* hashes differ) or encapsulation is
  forced, the initiator floats to 4500 (a peer configured on another port keeps it, as charon does,
  ``real-peers.md`` §1.7).
* On an encapsulation port every IKE message carries the four-octet zero non-ESP marker (RFC 3948 §2.2), both
  ways. The port decides, ours or the one the peer is configured on, never a source port a NAT rewrote.
* The side whose own address is translated sends a NAT keepalive (the single octet 0xFF, RFC 3948 §2.3) every
  ``Behaviour.nat_keepalive`` seconds. It gets no reply and proves nothing: never liveness.
* A NAT may remap the peer's address or port; the new one is adopted only from an authenticated message
  (RFC 3947 §5.2, RFC 7296 §2.23).
"""

from __future__ import annotations

IKE_PORT = 500
NATT_PORT = 4500
NON_ESP_MARKER = b"\x00\x00\x00\x00"
"""RFC 3948 §2.2: four zero octets in front of IKE on a UDP-encapsulation port."""
NAT_KEEPALIVE = b"\xff"
"""RFC 3948 §2.3: a NAT keepalive is the single octet 0xFF; it gets no reply and proves nothing."""


def needs_marker(local_port: int, configured_remote_port: int) -> bool:
    """Whether IKE datagrams on our ``local_port`` carry the non-ESP marker, both ways: on the NAT-T port, and on
    every port when the peer is configured off 500 (charon does so even for the first message)."""
    return local_port != IKE_PORT or configured_remote_port != IKE_PORT


class Keepalive:
    """When the next NAT keepalive is due (only while our own address is translated)."""

    __slots__ = ("at", "interval")

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.at: float | None = None

    def start(self, now: float, nat_local: bool) -> None:
        """An IKE SA was established: keep our NAT mapping alive if we are behind a NAT."""
        self.at = now + self.interval if nat_local and self.interval > 0 else None

    def stop(self) -> None:
        self.at = None

    def due(self, now: float) -> bool:
        """A keepalive is due at ``now``; the next one is scheduled."""
        at = self.at
        if at is not None and now >= at:
            self.at = now + self.interval
            return True
        return False
