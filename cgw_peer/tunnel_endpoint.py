"""One tunnel end that carries traffic: an IKE peer joined to its ESP SAs (sans-I/O).

:class:`TunnelEndpoint` wraps one IKE engine (:func:`cgw_peer.peer.create_peer`, either version, either role)
and an :class:`~cgw_peer.esp.EspSad`. It is a :class:`~emulator.node.SansIoNode` itself, so a driver or the
virtual-time network runs it in place of the bare engine. It

* follows the engine's own events to keep the SAD current (nothing is asked of the engine but its public API):

  - ``ike_sa_established``: remembers the IKE SA's outer endpoints (address, port after a NAT-T float); ESP in
    UDP uses the IKE ports (RFC 3948 §2.1);
  - ``child_sa_established``: installs the SA pair (:meth:`EspSa.pair_from_child_event`); the new outbound SA
    takes over at once, and the SA it replaces keeps decrypting (RFC 7296 §2.8, RFC 2409 §5.5);
  - ``delete_sent`` / ``delete_received`` with protocol ``esp``, ``child_sa_expired``: removes the pair that
    SPI belongs to (either direction's SPI names the pair; IKEv2 and strongSwan's IKEv1 delete both halves);
  - ``ike_sa_replaced`` (INITIAL_CONTACT): removes the pairs negotiated under the dropped IKE SA;
  - ``tunnel_down``: no usable pair is left, so the SAD is emptied (the counters stay);

* encrypts outbound inner packets on the current SA (:meth:`send`): ESP in UDP from the IKE SA's NAT-T port, or
  ESP as IP protocol 50 (see :data:`IP_PROTO_PORT`);
* sorts what arrives (:meth:`receive_datagram`): a datagram with both ports :data:`IP_PROTO_PORT` is ESP as IP
  protocol 50; on the NAT-T port (4500 at either end) a payload starting with the four-octet zero non-ESP marker
  is IKE and a single 0xFF octet is a NAT-keepalive, both handed to the engine, anything else is ESP (RFC 3948
  §2.2-2.3); every other datagram is the engine's;
* opens inbound ESP (:meth:`EspSad.decrypt`: anti-replay window of ``ReplayWindowSize``, ICV, padding, next
  header). An accepted packet is liveness for the engine (:meth:`IkePeer.note_esp_inbound`, which applies the
  ``Behaviour.liveness_traffic`` policy) and is queued for :meth:`take_received`; a refused one is counted
  under its :class:`~cgw_peer.esp.EspDrop` reason (``counters["dropped:<reason>"]``) and reported as
  ``datagram_dropped``. A flood of bad packets must not flood the trace: per reason, at most one event per
  :attr:`drop_event_interval` seconds (the counters keep every packet; the event's ``detail`` says how many were
  dropped since the last event).

Counters (:attr:`counters`): ``esp_in`` / ``esp_out`` (packets accepted / sent), ``esp_in_octets`` /
``esp_out_octets`` (inner octets: CloudWatch's ``TunnelDataIn`` counts bytes after decryption and
``TunnelDataOut`` bytes before encryption, ike-dpd.md §1.5), ``dropped:<reason>`` (inbound and outbound ESP,
e.g. ``dropped:esp_no_sa`` for a packet to send while no SA exists).
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from cgw_peer.esp import NAT_T_PORT, EspDrop, EspSa, EspSad
from emulator.actions import Action, Address, Event, Transmit

if TYPE_CHECKING:
    from cgw_peer.lifecycle.status import TunnelStatus
    from cgw_peer.peer import IkePeer

__all__ = ["DROP_EVENT_INTERVAL", "IP_PROTO_PORT", "KIND_ESP", "TunnelEndpoint"]

IP_PROTO_PORT = 0
"""Both ports of a :class:`~emulator.actions.Transmit` set to this value: the datagram is ESP as IP protocol 50,
not UDP (UDP port 0 is reserved, RFC 768 / IANA, so no UDP datagram uses it). The virtual-time network writes
such a datagram to its capture as an IP packet of protocol 50."""
KIND_ESP = "esp"
"""The ``Transmit.kind`` of ESP packets (fault plans and traces can single them out)."""
DROP_EVENT_INTERVAL = 1.0
"""Default of :attr:`TunnelEndpoint.drop_event_interval` (seconds)."""

_NON_ESP_MARKER = b"\x00\x00\x00\x00"
_KEEPALIVE = b"\xff"


def _address(text: str) -> Address:
    """``"ip:port"`` (as the engines write ``local``/``remote``; IPv6 without brackets) -> (ip, port)."""
    ip, _, port = text.rpartition(":")
    return ip.strip("[]"), int(port)


class TunnelEndpoint:
    """An IKE peer plus the ESP SAs it negotiated: one tunnel end that carries inner IP packets.

    ``peer``: the engine (:class:`cgw_peer.peer.IkePeer`). ``rng``: draws the AES-CBC IVs of outbound ESP (give
    it its own seeded generator; the engine keeps its own). ``replay_window``: the anti-replay window in packets
    (default: the engine's ``TunnelOptions.replay_window_size``, AWS ``ReplayWindowSize``, 1024). ``nat_t_port``:
    the encapsulation port (4500; tests on other ports pass theirs). ``keep_received``: how many decrypted inner
    packets :meth:`take_received` may have waiting (older ones are dropped, counted as
    ``dropped:inner_queue_full``), so an owner that never collects cannot grow memory without bound.
    """

    def __init__(
        self,
        peer: IkePeer,
        *,
        rng: random.Random,
        replay_window: int | None = None,
        nat_t_port: int = NAT_T_PORT,
        keep_received: int = 4096,
        drop_event_interval: float = DROP_EVENT_INTERVAL,
    ) -> None:
        self.peer = peer
        self.rng = rng
        self.replay_window = replay_window if replay_window is not None else int(peer.config.options.replay_window_size)
        self.nat_t_port = nat_t_port
        self.sad = EspSad()
        """The ESP SAs (inbound by SPI, the current outbound SA)."""
        self.counters: dict[str, int] = {"esp_in": 0, "esp_out": 0, "esp_in_octets": 0, "esp_out_octets": 0}
        self.drop_event_interval = drop_event_interval
        """Per drop reason, at most one ``datagram_dropped`` event per this many seconds (0: one per packet)."""
        self.received: deque[bytes] = deque()
        self._keep = keep_received
        self._ike_local: Address | None = None
        self._ike_remote: Address | None = None
        self._ike_spis: tuple[str, str] = ("", "")
        self._pairs: dict[int, tuple[int, int, tuple[str, str]]] = {}
        """SPI (either direction) -> (inbound SPI, outbound SPI, the IKE SA's (spi_i, spi_r))."""
        self._drop_last: dict[str, float] = {}
        self._drop_quiet: dict[str, int] = {}

    # -- the SansIoNode contract ------------------------------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        """Start the engine (it initiates if its configuration says so)."""
        return self._absorb(self.peer.start(now), now)

    def next_deadline(self) -> float | None:
        return self.peer.next_deadline()

    def handle_timer(self, now: float) -> list[Action]:
        return self._absorb(self.peer.handle_timer(now), now)

    def receive_datagram(self, data: bytes, src: Address, dst: Address, now: float) -> list[Action]:
        """One datagram as received: ESP is opened here, everything else goes to the engine. Never raises."""
        sport, dport = src[1], dst[1]
        if sport == IP_PROTO_PORT and dport == IP_PROTO_PORT:
            return self._esp(data, now)
        if (
            (sport == self.nat_t_port or dport == self.nat_t_port)
            and data[:4] != _NON_ESP_MARKER
            and data != _KEEPALIVE
        ):
            return self._esp(data, now)
        return self._absorb(self.peer.receive_datagram(data, src, dst, now), now)

    # -- the engine's API -------------------------------------------------------------------------------------

    def initiate(self, now: float) -> list[Action]:
        """:meth:`IkePeer.initiate`."""
        return self._absorb(self.peer.initiate(now), now)

    def close(self, now: float) -> list[Action]:
        """:meth:`IkePeer.close`: Deletes, tunnel DOWN; the SAD is emptied."""
        return self._absorb(self.peer.close(now), now)

    def note_esp_inbound(self, now: float) -> None:
        """:meth:`IkePeer.note_esp_inbound` (for owners that see ESP the endpoint did not open itself)."""
        self.peer.note_esp_inbound(now)

    @property
    def status(self) -> TunnelStatus:
        """The engine's tunnel status (VgwTelemetry Status and friends)."""
        return self.peer.status

    @property
    def config(self) -> Any:
        """The engine's :class:`~cgw_peer.config.PeerConfig`."""
        return self.peer.config

    def ike_spis(self) -> set[bytes]:
        """:meth:`IkePeer.ike_spis` (the UDP driver demultiplexes IKE with it)."""
        return self.peer.ike_spis()

    def call(self, method: str, now: float) -> list[Action]:
        """Call another engine API function that takes ``now`` and returns actions (``rekey_child``,
        ``rekey_ike``, ``check_liveness``...), following its events like every other call."""
        return self._absorb(getattr(self.peer, method)(now), now)

    # -- traffic ----------------------------------------------------------------------------------------------

    @property
    def can_send(self) -> bool:
        """An outbound SA exists (the tunnel carries traffic)."""
        return self.sad.outbound is not None

    def send(self, inner: bytes, now: float) -> list[Action]:
        """Encrypt one inner IP packet on the current SA: ``[Transmit]``, or ``[]`` when there is no SA (counted
        ``dropped:esp_no_sa``) or its sequence numbers are used up (``dropped:esp_seq_overflow``)."""
        sa = self.sad.outbound
        if sa is None:
            self._count(EspDrop.NO_SA)
            return []
        esp = self.sad.encrypt(inner, now)
        if esp is None:
            self._count(EspDrop.SEQ_OVERFLOW)
            return []
        c = self.counters
        c["esp_out"] += 1
        c["esp_out_octets"] += len(inner)
        src, dst = sa.src, sa.dst
        assert src is not None and dst is not None  # always set by _install
        return [Transmit(esp, src, dst, KIND_ESP)]

    def take_received(self) -> list[bytes]:
        """The inner packets decrypted since the last call, oldest first."""
        out = list(self.received)
        self.received.clear()
        return out

    def _esp(self, esp: bytes, now: float) -> list[Action]:
        inner, reason = self.sad.decrypt(esp, now)
        if inner is None:
            assert reason is not None
            return self._drop_event(reason, now)
        c = self.counters
        c["esp_in"] += 1
        c["esp_in_octets"] += len(inner)
        self.peer.note_esp_inbound(now)
        q = self.received
        if len(q) >= self._keep:
            q.popleft()
            self._count("inner_queue_full")
        q.append(inner)
        return []

    def _count(self, reason: str) -> None:
        key = "dropped:" + reason
        self.counters[key] = self.counters.get(key, 0) + 1

    def _drop_event(self, reason: str, now: float) -> list[Action]:
        self._count(reason)
        last = self._drop_last.get(reason)
        if last is not None and now - last < self.drop_event_interval:
            self._drop_quiet[reason] = self._drop_quiet.get(reason, 0) + 1
            return []
        self._drop_last[reason] = now
        quiet = self._drop_quiet.pop(reason, 0)
        fields: dict[str, Any] = {"reason": reason}
        if quiet:
            fields["detail"] = f"{quiet} more dropped for this reason since the last report"
        return [Event("datagram_dropped", fields)]

    # -- following the engine's events ------------------------------------------------------------------------

    def _absorb(self, actions: list[Action], now: float) -> list[Action]:
        for a in actions:
            if isinstance(a, Event):
                handler = _HANDLERS.get(a.name)
                if handler is not None:
                    handler(self, a.fields, now)
        return actions

    def _on_ike(self, f: Mapping[str, Any], now: float) -> None:
        self._ike_local = _address(str(f["local"]))
        self._ike_remote = _address(str(f["remote"]))
        self._ike_spis = (str(f["spi_i"]), str(f["spi_r"]))

    def _on_child(self, f: Mapping[str, Any], now: float) -> None:
        local, remote = self._ike_local, self._ike_remote
        if local is None or remote is None:
            local, remote = _address_of(self.peer, "local"), _address_of(self.peer, "remote")
        encap = bool(f.get("encap", False))
        if encap:
            # RFC 3948 §2.1: ESP in UDP rides on the IKE SA's ports, which are 4500 unless a NAT rewrote them.
            local = (local[0], local[1] if local[1] not in (500, IP_PROTO_PORT) else self.nat_t_port)
            remote = (remote[0], remote[1] if remote[1] not in (500, IP_PROTO_PORT) else self.nat_t_port)
        else:
            local, remote = (local[0], IP_PROTO_PORT), (remote[0], IP_PROTO_PORT)
        sa_in, sa_out = EspSa.pair_from_child_event(
            f, local, remote, rng=self.rng, replay_window=self.replay_window, now=now, encap=encap
        )
        self.sad.install(sa_in, sa_out)
        pair = (sa_in.spi, sa_out.spi, self._ike_spis)
        self._pairs[sa_in.spi] = pair
        self._pairs[sa_out.spi] = pair

    def _on_delete(self, f: Mapping[str, Any], now: float) -> None:
        if f.get("protocol") == "esp":
            self._delete_pair(int(str(f["spi"]), 16))

    def _on_child_expired(self, f: Mapping[str, Any], now: float) -> None:
        self._delete_pair(int(str(f["spi_in"]), 16))

    def _on_ike_replaced(self, f: Mapping[str, Any], now: float) -> None:
        spi = str(f["spi"])
        for pair in {p for p in self._pairs.values() if spi in p[2]}:
            self._delete_pair(pair[0])

    def _on_down(self, f: Mapping[str, Any], now: float) -> None:
        self.sad.clear()
        self._pairs.clear()

    def _delete_pair(self, spi: int) -> None:
        pair = self._pairs.get(spi)
        if pair is None:
            self.sad.delete(spi)
            return
        for s in pair[:2]:
            self.sad.delete(s)
            self._pairs.pop(s, None)

    # -- outputs ----------------------------------------------------------------------------------------------

    def esp_sa_rows(self) -> list[dict[str, str]]:
        """Wireshark ``esp_sa`` rows of the SAs held now (:meth:`EspSad.esp_sa_rows`)."""
        return self.sad.esp_sa_rows()


def _address_of(peer: Any, which: str) -> Address:
    addr: Address = getattr(peer, which)
    return addr


_HANDLERS = {
    "ike_sa_established": TunnelEndpoint._on_ike,
    "child_sa_established": TunnelEndpoint._on_child,
    "delete_sent": TunnelEndpoint._on_delete,
    "delete_received": TunnelEndpoint._on_delete,
    "child_sa_expired": TunnelEndpoint._on_child_expired,
    "ike_sa_replaced": TunnelEndpoint._on_ike_replaced,
    "tunnel_down": TunnelEndpoint._on_down,
}
"""The engine events the endpoint follows, and what each does to the SAD."""
