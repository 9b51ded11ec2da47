"""The sans-I/O façade every driver and scenario uses: :func:`create_peer` and the :class:`IkePeer` protocol.

One ``IkePeer`` is one side (CGW or AWS endpoint) of one tunnel. It manages its IKE and IPsec SAs over time
(restarts, rekeys) and is driven by API calls, datagrams and timers, each with ``now``; it returns
:mod:`emulator.actions` (``Transmit`` / ``Event``). It never reads a clock, never does I/O, and draws every
random value from the injected ``random.Random``.

Events (the product's public vocabulary, ``Event.name`` and fields):

* ``ike_sa_established`` (spi_i, spi_r, version, proposal), ``child_sa_established`` (spi_in, spi_out, proposal)
* ``tunnel_up``, ``tunnel_down`` (reason), ``routes_withdrawn``
* ``dpd_request_sent`` / ``dpd_request_received`` / ``dpd_ack_sent`` / ``dpd_ack_received`` (seq)
* ``dpd_timeout`` (action, last_inbound), ``restart_scheduled`` (at, attempt)
* ``delete_received`` (protocol, spi), ``delete_sent`` (protocol, spi)
* ``rekey_started`` (sa: "ike" | "child"), ``rekey_done`` (sa)
* ``datagram_dropped`` (reason), ``aws_log`` (message), ``sa_keys`` (see :mod:`emulator.keytables`)
* ``negotiation_failed`` (exchange, reason): an exchange we initiated gave up (retransmits exhausted, or the
  peer answered with an error notify such as NO_PROPOSAL_CHOSEN).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Protocol

from cgw_peer.config import IkeVersion, PeerConfig
from emulator.actions import Action, Address

if TYPE_CHECKING:
    from cgw_peer.lifecycle.status import TunnelStatus


class IkePeer(Protocol):
    """One tunnel, one side (see the module docstring for the events it emits)."""

    config: PeerConfig
    counters: dict[str, int]
    """Drop reasons and DPD anomalies, e.g. ``{"dropped:bad_hash": 2, "dpd:wrong_seq_ack": 1}``."""

    def start(self, now: float) -> list[Action]:
        """Initiate if ``config.initiates_at_startup``, else wait for the peer."""
        ...

    def initiate(self, now: float) -> list[Action]:
        """Bring the tunnel up now (no-op while it is up or being negotiated)."""
        ...

    def receive_datagram(self, data: bytes, src: Address, dst: Address, now: float) -> list[Action]:
        """One UDP payload as received (with the non-ESP marker when a port is not 500). Never raises."""
        ...

    def next_deadline(self) -> float | None:
        """Earliest instant at which :meth:`handle_timer` wants to run (None: no timer)."""
        ...

    def handle_timer(self, now: float) -> list[Action]:
        """Handle everything due at ``now``; an early call is a no-op."""
        ...

    def close(self, now: float) -> list[Action]:
        """Clean shutdown: send Deletes, tunnel DOWN, no restart."""
        ...

    def note_esp_inbound(self, now: float) -> None:
        """Inbound ESP was seen for this tunnel (liveness, per ``Behaviour.liveness_traffic``)."""
        ...

    @property
    def status(self) -> TunnelStatus:
        """Status UP/DOWN, StatusMessage, LastStatusChange, phase-1/phase-2 states."""
        ...

    def ike_spis(self) -> set[bytes]:
        """8-byte initiator cookies/SPIs of the live IKE SAs of this peer (for driver demultiplexing)."""
        ...


def create_peer(config: PeerConfig, *, local: Address, remote: Address, rng: random.Random) -> IkePeer:
    """The IKE engine for ``config.ike_version``: IKEv1 (:class:`cgw_peer.ikev1.peer.IkeV1Peer`) or IKEv2."""
    if config.ike_version is IkeVersion.IKEV1:
        from cgw_peer.ikev1.peer import IkeV1Peer

        return IkeV1Peer(config, local=local, remote=remote, rng=rng)
    from cgw_peer.ikev2.peer import IkeV2Peer  # type: ignore[import-not-found,unused-ignore]

    peer: IkePeer = IkeV2Peer(config, local=local, remote=remote, rng=rng)
    return peer
