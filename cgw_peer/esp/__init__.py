"""ESP (RFC 4303) in tunnel mode, in UDP (RFC 3948) or as IP protocol 50: sans-I/O, one object per SA direction.

Public API:

* :class:`EspSuite`: the transform (AES-CBC + HMAC-SHA1-96 / SHA2-256-128 / -384-192 / -512-256, or AES-GCM-16),
  parsed from the engines' proposal strings (``aes128-sha1-modp2048``, ``aes256gcm16``).
* :class:`EspSa`: one direction of an SA. ``EspSa.from_child_event(fields, "in"|"out", local, remote, rng=...)``
  or ``EspSa.pair_from_child_event(fields, local, remote, rng=...)`` builds it from a ``child_sa_established``
  event; ``encrypt(inner, now) -> bytes | None``, ``encapsulate(inner, now) -> bytes | None`` (with the outer
  IP/UDP header), ``decrypt(esp, now) -> (inner, None) | (None, EspDrop)``.
* :class:`EspSad`: the SAs of one tunnel end by SPI (``install(sa_in, sa_out)`` on establishment and rekey,
  ``delete(spi)``, ``encrypt``, ``decrypt``), with counters per reason.
* :class:`EspDrop`: the typed drop reasons. :class:`ReplayWindow`: the anti-replay window.
* Framing: :class:`OuterFramer`, :func:`frame_esp`, :func:`parse_outer` (ESP / IKE / NAT-keepalive sorting).
"""

from __future__ import annotations

from cgw_peer.esp.framing import (
    ESP_PROTO,
    KIND_ESP,
    KIND_IKE,
    KIND_KEEPALIVE,
    KIND_MALFORMED,
    KIND_OTHER,
    NAT_T_PORT,
    Outer,
    OuterFramer,
    frame_esp,
    internet_checksum,
    parse_outer,
)
from cgw_peer.esp.reasons import EspDrop
from cgw_peer.esp.replay import DEFAULT_REPLAY_WINDOW, ReplayWindow
from cgw_peer.esp.sa import NH_DUMMY, NH_IPV4, NH_IPV6, SEQ_MAX, DecryptResult, Direction, EspSa
from cgw_peer.esp.sad import EspSad
from cgw_peer.esp.suite import EspSuite

__all__ = [
    "DEFAULT_REPLAY_WINDOW",
    "ESP_PROTO",
    "KIND_ESP",
    "KIND_IKE",
    "KIND_KEEPALIVE",
    "KIND_MALFORMED",
    "KIND_OTHER",
    "NAT_T_PORT",
    "NH_DUMMY",
    "NH_IPV4",
    "NH_IPV6",
    "SEQ_MAX",
    "DecryptResult",
    "Direction",
    "EspDrop",
    "EspSa",
    "EspSad",
    "EspSuite",
    "Outer",
    "OuterFramer",
    "ReplayWindow",
    "frame_esp",
    "internet_checksum",
    "parse_outer",
]
