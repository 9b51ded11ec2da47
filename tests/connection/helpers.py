"""Shared pieces of the connection tests: two tunnel endpoints on a virtual-time network, inner packets."""

from __future__ import annotations

import random
import struct
from dataclasses import replace
from typing import Any

from cgw_peer.config import PROFILES, IkeVersion, PeerConfig, Role, TunnelOptions
from cgw_peer.esp import internet_checksum
from cgw_peer.peer import create_peer
from cgw_peer.tunnel_endpoint import TunnelEndpoint
from emulator.link import FaultPlan
from emulator.simnet import SimNetwork

AWS_IP = "203.0.113.1"
CGW_IP = "198.51.100.1"
PSK = b"test.psk.0123456789"


def configs(
    version: int,
    esp: str,
    *,
    encap: bool = False,
    aws: dict[str, Any] | None = None,
    cgw: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
) -> tuple[PeerConfig, PeerConfig]:
    """(AWS, CGW) configurations for one IKE version and one ESP proposal (``aes128-sha1``, ``aes128gcm16``);
    ``aws``/``cgw``: Behaviour overrides; ``options``: TunnelOptions fields."""
    v = IkeVersion.IKEV1 if version == 1 else IkeVersion.IKEV2
    opts = TunnelOptions(ike_versions=(v,), **(options or {}))
    common: dict[str, Any] = dict(
        ike_version=v,
        options=opts,
        psk=PSK,
        proposals=("aes128-sha256-modp2048",),
        esp_proposals=(f"{esp}-modp2048",),
    )
    a = PeerConfig(role=Role.AWS, behaviour=PROFILES["aws"], **common)
    c = PeerConfig(role=Role.CGW, behaviour=PROFILES["strongswan"], force_encap=encap, **common)
    if aws:
        a = replace(a, behaviour=replace(a.behaviour, **aws))
    if cgw:
        c = replace(c, behaviour=replace(c.behaviour, **cgw))
    return a, c


def endpoints(
    version: int = 1,
    esp: str = "aes128-sha1",
    *,
    encap: bool = False,
    seed: int = 1,
    delay: float = 0.0,
    replay_window: int | None = None,
    aws: dict[str, Any] | None = None,
    cgw: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
) -> tuple[SimNetwork, TunnelEndpoint, TunnelEndpoint]:
    """A network with the AWS endpoint (``aws``) and the CGW (``cgw``), not started."""
    acfg, ccfg = configs(version, esp, encap=encap, aws=aws, cgw=cgw, options=options)
    a = create_peer(acfg, local=(AWS_IP, 500), remote=(CGW_IP, 500), rng=random.Random(seed * 10 + 1))
    c = create_peer(ccfg, local=(CGW_IP, 500), remote=(AWS_IP, 500), rng=random.Random(seed * 10 + 2))
    ea = TunnelEndpoint(a, rng=random.Random(seed * 10 + 3), replay_window=replay_window)
    ec = TunnelEndpoint(c, rng=random.Random(seed * 10 + 4), replay_window=replay_window)
    net = SimNetwork(seed=seed)
    net.add_node("aws", ea, [AWS_IP])
    net.add_node("cgw", ec, [CGW_IP])
    if delay:
        net.set_faults(AWS_IP, CGW_IP, FaultPlan(delay=delay))
        net.set_faults(CGW_IP, AWS_IP, FaultPlan(delay=delay))
    return net, ea, ec


def udp4(src: str, dst: str, sport: int, dport: int, payload: bytes, ident: int = 1) -> bytes:
    """An IPv4 UDP packet with correct checksums, built with struct (independent of the code under test)."""
    s = bytes(int(x) for x in src.split("."))
    d = bytes(int(x) for x in dst.split("."))
    ulen = 8 + len(payload)
    pseudo = s + d + struct.pack("!BBH", 0, 17, ulen)
    csum = internet_checksum(pseudo + struct.pack("!HHHH", sport, dport, ulen, 0) + payload) or 0xFFFF
    udp = struct.pack("!HHHH", sport, dport, ulen, csum) + payload
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + ulen, ident, 0, 64, 17, 0, s, d)
    hdr = hdr[:10] + struct.pack("!H", internet_checksum(hdr)) + hdr[12:]
    return hdr + udp


def icmp_echo(src: str, dst: str, ident: int = 1, seq: int = 1, payload: bytes = b"ping") -> bytes:
    """An IPv4 ICMP echo request with correct checksums."""
    icmp = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + payload
    icmp = icmp[:2] + struct.pack("!H", internet_checksum(icmp)) + icmp[4:]
    s = bytes(int(x) for x in src.split("."))
    d = bytes(int(x) for x in dst.split("."))
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), seq, 0, 64, 1, 0, s, d)
    hdr = hdr[:10] + struct.pack("!H", internet_checksum(hdr)) + hdr[12:]
    return hdr + icmp
