"""A Site-to-Site VPN connection's traffic, sans-I/O: the pieces between the IKE engines and the TGW dataplane.

* :mod:`cgw_peer.connection.tunnel`: :class:`VpnTunnel`, one side of one tunnel (the
  :class:`~cgw_peer.tunnel_endpoint.TunnelEndpoint` with its ESP, the BGP speaker inside it, AWS's limits).
* :mod:`cgw_peer.connection.bgp`: :class:`BgpSpeaker`, the BGP session of a dynamic VPN (hold time, keepalives).
* :mod:`cgw_peer.connection.limits`: token buckets: AWS's per-tunnel figures and EC2 bandwidth with burst credits.
* :mod:`cgw_peer.connection.hosts`: :class:`EchoHost`, emulated hosts answering ICMP / UDP / TCP echo.
* :mod:`cgw_peer.connection.packets`: inner IPv4 packets (struct) and the probe header of generated traffic.

The virtual-time glue (scenario files with a ``connection:`` section) is :mod:`emulator.connection`.
"""

from __future__ import annotations

from cgw_peer.connection.bgp import BgpSpeaker, BgpTimers
from cgw_peer.connection.hosts import EchoHost
from cgw_peer.connection.limits import Ec2Bandwidth, TokenBucket, TunnelLimit
from cgw_peer.connection.tunnel import VpnTunnel

__all__ = ["BgpSpeaker", "BgpTimers", "Ec2Bandwidth", "EchoHost", "TokenBucket", "TunnelLimit", "VpnTunnel"]
