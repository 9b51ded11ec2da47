"""An AWS tunnel endpoint with an emulated network behind it: ``awsnetemu vpn --role aws --topology FILE``.

:class:`AwsSite` is a sans-I/O node (what the UDP driver runs in place of the bare engine): a
:class:`~cgw_peer.tunnel_endpoint.TunnelEndpoint` (IKE + ESP) for one tunnel of a TGW VPN attachment, and the
:mod:`tgw_dataplane` of a topology behind it. A real customer gateway's traffic is decrypted and enters the TGW
through the VPN attachment; packets delivered to an instance of the topology are answered by an emulated host
(:class:`~cgw_peer.connection.hosts.EchoHost`: ICMP echo, UDP echo, TCP echo on every port), and the answers go
back through the TGW, out of the VPN attachment and into the tunnel, encrypted on the current SA. Everything
happens inside the call that brought the packet (no extra timers).

The tunnel's state drives the attachment as in a connection scenario with static routing: the tunnel's routes
are in the TGW while it is UP (``tgw_routes_changed``). Drops are counted in :attr:`AwsSite.drops` by reason (the
dataplane's, or ``esp_no_sa`` for an answer with no SA to carry it); :attr:`AwsSite.answered` counts answers sent.
"""

from __future__ import annotations

from typing import Any

from cgw_peer import events as ev
from cgw_peer.connection.hosts import EchoHost
from cgw_peer.tunnel_endpoint import TunnelEndpoint
from emulator.actions import Action, Address, Event
from emulator.errors import ConfigError

__all__ = ["AwsSite", "load_site_dataplane"]


def load_site_dataplane(path: str, attachment: str | None, tunnel: str | None) -> tuple[Any, str, str]:
    """``(dataplane, attachment id, tunnel name)`` for ``awsnetemu vpn --topology``; errors name the flag. Without
    ``attachment`` the topology must have exactly one VPN attachment; without ``tunnel``, its first tunnel."""
    from tgw_dataplane.dataplane import Dataplane
    from tgw_dataplane.loader import load_any
    from tgw_dataplane.model import VpnAttachment

    try:
        dp = Dataplane(load_any(path))
    except ConfigError as e:
        raise ConfigError(f"topology: {e}") from None
    vpns = {a: x for a, x in dp.topology.attachments().items() if isinstance(x, VpnAttachment)}
    if attachment is None:
        if len(vpns) != 1:
            raise ConfigError(
                f"attachment: name the VPN attachment (the topology has: {', '.join(sorted(vpns)) or 'none'})"
            )
        attachment = next(iter(vpns))
    att = vpns.get(attachment)
    if att is None:
        raise ConfigError(
            f"attachment: no VPN attachment {attachment!r} (VPN attachments: {', '.join(sorted(vpns)) or 'none'})"
        )
    if tunnel is None:
        tunnel = att.tunnels[0]
    elif tunnel not in att.tunnels:
        raise ConfigError(f"tunnel: {attachment} has no tunnel {tunnel!r} (tunnels: {', '.join(att.tunnels)})")
    for t in att.tunnels:
        dp.set_tunnel_state(attachment, t, False)
    return dp, attachment, tunnel


class AwsSite:
    """The AWS end of one tunnel with the TGW and emulated VPC hosts behind it (see the module docstring)."""

    def __init__(self, endpoint: TunnelEndpoint, dataplane: Any, attachment: str, tunnel: str) -> None:
        self.endpoint = endpoint
        self.dp = dataplane
        self.attachment = attachment
        self.tunnel = tunnel
        instances = dataplane.topology.instances()
        self.instances = set(instances)
        self.hosts = EchoHost(i.ip for i in instances.values() if i.ip and ":" not in i.ip)
        self.drops: dict[str, int] = {}
        self.answered = 0
        self._up = False

    # -- the driver's contract --------------------------------------------------------------------------------

    @property
    def config(self) -> Any:
        return self.endpoint.config

    @property
    def status(self) -> Any:
        return self.endpoint.status

    @property
    def counters(self) -> dict[str, int]:
        return self.endpoint.peer.counters

    def start(self, now: float) -> list[Action]:
        return self._after(self.endpoint.start(now), now)

    def receive_datagram(self, data: bytes, src: Address, dst: Address, now: float) -> list[Action]:
        return self._after(self.endpoint.receive_datagram(data, src, dst, now), now)

    def next_deadline(self) -> float | None:
        return self.endpoint.next_deadline()

    def handle_timer(self, now: float) -> list[Action]:
        return self._after(self.endpoint.handle_timer(now), now)

    def initiate(self, now: float) -> list[Action]:
        return self._after(self.endpoint.initiate(now), now)

    def close(self, now: float) -> list[Action]:
        return self._after(self.endpoint.close(now), now)

    def ike_spis(self) -> set[bytes]:
        return self.endpoint.ike_spis()

    # -- traffic ----------------------------------------------------------------------------------------------

    def _after(self, actions: list[Action], now: float) -> list[Action]:
        up = self.endpoint.can_send and self.endpoint.status.status == "UP"
        if up != self._up:
            self._up = up
            self.dp.set_tunnel_state(self.attachment, self.tunnel, up)
            e = ev.tgw_routes_changed(attachment=self.attachment, tunnel=self.tunnel, up=up)
            actions = [*actions, Event(e.name, e.fields)]
        if self.endpoint.received:
            for inner in self.endpoint.take_received():
                actions = [*actions, *self._forward(inner, self.attachment, now, 0)]
        return actions

    def _forward(self, packet: bytes, source: str, now: float, depth: int) -> list[Action]:
        res = self.dp.send(packet, source, now)
        if res.verdict != "delivered":
            self._drop(str(res.reason))
            return []
        out = res.packet.wire() if res.packet is not None else packet
        if res.node == self.attachment:
            acts = self.endpoint.send(out, now)
            if not acts:
                self._drop("esp_no_sa")
            return acts
        if res.node in self.instances and depth == 0:
            actions: list[Action] = []
            for reply in self.hosts.respond(out):
                self.answered += 1
                actions += self._forward(reply, res.node, now, depth + 1)
            return actions
        self._drop("not_answered")
        return []

    def _drop(self, reason: str) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + 1
