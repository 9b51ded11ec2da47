"""One tunnel of a Site-to-Site VPN connection, one side: the tunnel endpoint (IKE + ESP), the BGP speaker that
runs inside it (dynamic routing), and AWS's per-tunnel limits (sans-I/O, a :class:`~emulator.node.SansIoNode`).

:class:`VpnTunnel` wraps a :class:`~cgw_peer.tunnel_endpoint.TunnelEndpoint`:

* after every call into the endpoint it looks whether the tunnel can carry packets (an outbound SA exists) and
  tells the BGP speaker when that changes (the transport came up / went down);
* decrypted inner packets addressed to the speaker's inside address go to the speaker; the others wait in
  :meth:`take_received` for the owner (the TGW on the AWS side, the on-premises network on the customer's);
* :meth:`send` encrypts an inner packet, after the outbound limit (:class:`~cgw_peer.connection.limits.
  TunnelLimit`); decrypted packets meet the inbound limit. Packets over a limit, or with no SA to carry them,
  are counted in :attr:`drops` under their reason and reported to the caller (``None`` from :meth:`send` means
  sent).

Routing state, as AWS reports it (``TunnelState``, ike-dpd.md §1.5): for a static VPN the tunnel is routable while
its Status is UP (:attr:`up`); for a BGP VPN while the BGP session is established and the peer advertised
prefixes (:attr:`routable`).
"""

from __future__ import annotations

from collections.abc import Callable

from cgw_peer.connection.bgp import BgpSpeaker
from cgw_peer.connection.limits import TunnelLimit
from cgw_peer.esp import EspDrop
from cgw_peer.lifecycle.status import Status, TunnelStatus
from cgw_peer.tunnel_endpoint import TunnelEndpoint
from emulator.actions import Action, Address, Event

__all__ = ["VpnTunnel"]


class VpnTunnel:
    """One side of one tunnel: endpoint + optional BGP speaker + optional limits (see the module docstring).

    ``name``: the tunnel's name (``tunnel1``). ``on_change``: called with ``(tunnel, now)`` after any call that
    may have changed :attr:`routable` (the owner re-evaluates its routes there)."""

    def __init__(
        self,
        endpoint: TunnelEndpoint,
        *,
        name: str,
        bgp: BgpSpeaker | None = None,
        limit_out: TunnelLimit | None = None,
        limit_in: TunnelLimit | None = None,
        on_change: Callable[[VpnTunnel, float], None] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.name = name
        self.bgp = bgp
        self.limit_out = limit_out
        self.limit_in = limit_in
        self.on_change = on_change
        self.drops: dict[str, int] = {}
        """Inner packets not carried, by reason (``esp_no_sa``, ``tunnel_bandwidth_exceeded``, ...)."""
        self._received: list[bytes] = []
        self.refused: list[tuple[bytes, str]] = []
        """Decrypted inner packets the inbound limit refused, with the reason, since :meth:`take_refused`."""
        self._transport = False
        self._routable = False

    # -- state ------------------------------------------------------------------------------------------------

    @property
    def up(self) -> bool:
        """The tunnel's Status is UP (an IPsec SA pair is installed)."""
        return self.endpoint.status.status is Status.UP and self.endpoint.can_send

    @property
    def routable(self) -> bool:
        """Routes through this tunnel are in use: static, the tunnel is UP; BGP, the session is established with
        prefixes received."""
        if self.bgp is None:
            return self.up
        return self.bgp.routes_usable

    @property
    def status(self) -> TunnelStatus:
        """The IKE engine's tunnel status (VgwTelemetry)."""
        return self.endpoint.status

    # -- SansIoNode -------------------------------------------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        return self._after(self.endpoint.start(now), now)

    def receive_datagram(self, data: bytes, src: Address, dst: Address, now: float) -> list[Action]:
        return self._after(self.endpoint.receive_datagram(data, src, dst, now), now)

    def next_deadline(self) -> float | None:
        a = self.endpoint.next_deadline()
        b = self.bgp.next_deadline() if self.bgp is not None else None
        if a is None:
            return b
        return a if b is None or a <= b else b

    def handle_timer(self, now: float) -> list[Action]:
        out: list[Action] = []
        d = self.endpoint.next_deadline()
        if d is not None and d <= now:
            out += self.endpoint.handle_timer(now)
        bgp = self.bgp
        if bgp is not None:
            d = bgp.next_deadline()
            if d is not None and d <= now:
                pkts, events = bgp.handle_timer(now)
                out += events
                for p in pkts:
                    out += self._encrypt(p, now)
        return self._after(out, now)

    # -- the engine's API -------------------------------------------------------------------------------------

    def initiate(self, now: float) -> list[Action]:
        return self._after(self.endpoint.initiate(now), now)

    def close(self, now: float) -> list[Action]:
        return self._after(self.endpoint.close(now), now)

    def ike_spis(self) -> set[bytes]:
        return self.endpoint.ike_spis()

    def note_esp_inbound(self, now: float) -> None:
        self.endpoint.note_esp_inbound(now)

    # -- traffic ----------------------------------------------------------------------------------------------

    def send(self, inner: bytes, now: float) -> tuple[list[Action], str | None]:
        """Encrypt ``inner`` into the tunnel: ``(actions, None)`` when sent, ``([], reason)`` when not."""
        lim = self.limit_out
        if lim is not None:
            reason = lim.admit(len(inner), now)
            if reason is not None:
                self._drop(reason)
                return [], reason
        acts = self.endpoint.send(inner, now)
        if not acts:
            self._drop(EspDrop.NO_SA)
            return [], EspDrop.NO_SA
        return acts, None

    def take_received(self) -> list[bytes]:
        """Decrypted inner packets for the owner since the last call (BGP's own are not among them)."""
        out, self._received = self._received, []
        return out

    def take_refused(self) -> list[tuple[bytes, str]]:
        """Inner packets the inbound limit refused since the last call (at most 4,096 kept), with the reason."""
        out, self.refused = self.refused, []
        return out

    def _encrypt(self, inner: bytes, now: float) -> list[Action]:
        # BGP's own packets bypass the limits (a few per minute) but need an SA like everything else.
        return self.endpoint.send(inner, now)

    def _after(self, actions: list[Action], now: float) -> list[Action]:
        ep = self.endpoint
        bgp = self.bgp
        if bgp is not None:
            transport = ep.can_send
            if transport != self._transport:
                self._transport = transport
                pkts, events = bgp.transport_up(now) if transport else bgp.transport_down(now)
                actions = [*actions, *events]
                for p in pkts:
                    actions += self._encrypt(p, now)
        received = ep.take_received() if ep.received else ()
        lim = self.limit_in
        local = bgp.local_packed if bgp is not None else None
        for inner in received:
            if lim is not None:
                reason = lim.admit(len(inner), now)
                if reason is not None:
                    self._drop(reason)
                    if len(self.refused) < 4096:
                        self.refused.append((inner, reason))
                    continue
            if bgp is not None and inner[16:20] == local and inner[0] >> 4 == 4:
                pkts, events = bgp.receive(inner, now)
                actions = [*actions, *events]
                for p in pkts:
                    actions += self._encrypt(p, now)
                continue
            self._received.append(inner)
        routable = self.routable
        if routable != self._routable or any(isinstance(a, Event) and a.name == "tunnel_down" for a in actions):
            self._routable = routable
            if self.on_change is not None:
                self.on_change(self, now)
        return actions

    def _drop(self, reason: str) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + 1
