"""A peer that chooses a shorter Phase 2 lifetime than ours drives the rekey; we keep a backstop and, when we
do rekey its SA, offer its lifetime again (interop with charon, tests/realpeer: rekey_time=3s)."""

from __future__ import annotations

import random
from dataclasses import replace

from cgw_peer.config import PROFILES, IkeVersion, PeerConfig, Role, TunnelOptions
from cgw_peer.peer import create_peer
from emulator.simnet import SimNetwork

AWS, CGW = "203.0.113.10", "198.51.100.20"


def _net(cgw_rekeys: bool) -> tuple[SimNetwork, object, object]:
    aws_opts = TunnelOptions(ike_versions=(IkeVersion.IKEV1,), phase2_lifetime_seconds=3600)
    cgw_opts = TunnelOptions(ike_versions=(IkeVersion.IKEV1,), phase2_lifetime_seconds=900)
    aws_cfg = PeerConfig(role=Role.AWS, options=aws_opts, psk=b"short.life.psk")
    cgw_beh = replace(PROFILES["strongswan"], rekey_initiator=cgw_rekeys, dpd_delay=30, dpd_interval=30)
    cgw_cfg = PeerConfig(role=Role.CGW, options=cgw_opts, psk=b"short.life.psk", behaviour=cgw_beh)
    aws = create_peer(aws_cfg, local=(AWS, 500), remote=(CGW, 500), rng=random.Random(1))
    cgw = create_peer(cgw_cfg, local=(CGW, 500), remote=(AWS, 500), rng=random.Random(2))
    net = SimNetwork(seed=3)
    net.add_node("aws", aws, [AWS])
    net.add_node("cgw", cgw, [CGW])
    net.start_all(at=0.0)
    return net, aws, cgw


def test_the_peer_with_the_shorter_lifetime_drives_the_rekey() -> None:
    net, _, _ = _net(cgw_rekeys=True)
    net.run_until(2000)
    started = net.trace.select("rekey_started", sa="child")
    assert started, "no child rekey at all"
    # The CGW (900 s) rekeys between 900-540 and 900-270 s; our backstop (0.95 * 900 = 855 s) never fires.
    assert all(r.node == "cgw" for r in started)
    assert 360 <= started[0].t <= 630
    assert not net.trace.select("tunnel_down")


def test_our_backstop_rekey_offers_the_peers_lifetime() -> None:
    net, aws, _ = _net(cgw_rekeys=False)
    net.run_until(1000)
    started = net.trace.select("rekey_started", sa="child")
    assert [r.node for r in started] == ["aws"]
    assert abs(started[0].t - 0.95 * 900) < 1e-6
    newest = aws.children[-1]  # type: ignore[attr-defined]
    assert newest.lifetime == 900  # we offered the peer's lifetime, not our 3600
    assert not net.trace.select("tunnel_down")
