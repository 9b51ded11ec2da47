"""Why an ESP packet was dropped (or not sent): one typed reason per cause, each counted where it happened.

The values are the ``reason`` strings of ``datagram_dropped`` events and the keys of the per-SA and per-tunnel
counters (:attr:`cgw_peer.esp.EspSa.drops`, :attr:`cgw_peer.esp.EspSad.drops`). Nothing on the ESP path raises
for bad input from the wire; it returns one of these.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["EspDrop"]


class EspDrop(StrEnum):
    """A dropped ESP packet's reason."""

    TRUNCATED = "esp_truncated"
    """Shorter than SPI, sequence number, IV, the smallest ciphertext and the ICV, or (CBC) a ciphertext that is
    not whole 16-octet blocks: the packet was cut or is not ESP for this SA."""
    UNKNOWN_SPI = "esp_unknown_spi"
    """No inbound SA with this SPI (RFC 4303 §3.4.2: "If no valid Security Association exists ... the receiver
    MUST discard the packet"); also a packet handed to an SA with another SPI."""
    REPLAY = "esp_replay"
    """The sequence number is inside the anti-replay window and was already accepted (RFC 4303 §3.4.3)."""
    OUTSIDE_WINDOW = "esp_outside_window"
    """The sequence number is left of the anti-replay window (or 0, which no sender uses)."""
    BAD_ICV = "esp_bad_icv"
    """The integrity check failed (RFC 4303 §3.4.4): tampered, wrong key, or forged."""
    BAD_PADDING = "esp_bad_padding"
    """The ICV verified but the padding is not 1, 2, 3, ... or is longer than the plaintext (RFC 4303 §2.4:
    the receiver SHOULD check it)."""
    BAD_NEXT_HEADER = "esp_bad_next_header"
    """The ICV verified but the next header is neither IPv4 (4) nor IPv6 (41), or the inner packet's version
    does not match it: a tunnel-mode SA carries only IP packets (RFC 4303 §2.6 and §3.1.2)."""
    DUMMY = "esp_dummy"
    """A dummy packet (next header 59, RFC 4303 §2.6), discarded silently as the RFC asks; not an attack."""
    SEQ_OVERFLOW = "esp_seq_overflow"
    """Outbound: the 32-bit sequence number is used up; the packet is not sent (RFC 4303 §3.3.3: the counter
    MUST NOT cycle, a new SA must be negotiated first)."""
    NO_SA = "esp_no_sa"
    """Outbound: the tunnel has no outbound SA (not yet established, or deleted)."""
