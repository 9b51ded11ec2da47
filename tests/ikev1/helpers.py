"""Shared set-up for the IKEv1 tests: an AWS endpoint and a CGW wired on a SimNetwork (virtual time)."""

from __future__ import annotations

import random
from typing import Any

from cgw_peer.config import PROFILES, Behaviour, PeerConfig, Role, TunnelOptions
from cgw_peer.ikev1.peer import IkeV1Peer
from emulator.simnet import SimNetwork
from emulator.trace import TraceRecord

AWS_IP = "203.0.113.1"
CGW_IP = "198.51.100.1"
AWS_ADDR = (AWS_IP, 500)
CGW_ADDR = (CGW_IP, 500)

# A CGW that answers DPD but never probes, so AWS's probe timeline is the only one in the trace.
QUIET_CGW = Behaviour(dpd_enabled=False)


def aws_config(**kw: Any) -> PeerConfig:
    opts = kw.pop("options", TunnelOptions())
    return PeerConfig(role=Role.AWS, options=opts, behaviour=kw.pop("behaviour", PROFILES["aws"]), **kw)


def cgw_config(**kw: Any) -> PeerConfig:
    kw.setdefault("proposals", ("aes128-sha1-modp2048",))
    kw.setdefault("esp_proposals", ("aes128-sha1-modp2048",))
    return PeerConfig(role=Role.CGW, behaviour=kw.pop("behaviour", QUIET_CGW), **kw)


def make_peer(cfg: PeerConfig, seed: int) -> IkeV1Peer:
    if cfg.role is Role.AWS:
        return IkeV1Peer(cfg, local=AWS_ADDR, remote=CGW_ADDR, rng=random.Random(seed))
    return IkeV1Peer(cfg, local=CGW_ADDR, remote=AWS_ADDR, rng=random.Random(seed))


def make_net(
    aws_cfg: PeerConfig | None = None,
    cgw_cfg: PeerConfig | None = None,
    seed: int = 1,
    *,
    cgw_peer: IkeV1Peer | None = None,
) -> tuple[SimNetwork, IkeV1Peer, IkeV1Peer]:
    """``cgw_peer``: a CGW built by the test (e.g. a misbehaving subclass) instead of one from ``cgw_cfg``."""
    aws = make_peer(aws_cfg or aws_config(), seed * 2 + 1)
    cgw = cgw_peer or make_peer(cgw_cfg or cgw_config(), seed * 2 + 2)
    net = SimNetwork(seed=seed)
    net.add_node("aws", aws, [AWS_IP])
    net.add_node("cgw", cgw, [CGW_IP])
    return net, aws, cgw


def sel(net: SimNetwork, event: str, node: str | None = None) -> list[TraceRecord]:
    return [r for r in net.trace.records if r.event == event and (node is None or r.node == node)]


def times(net: SimNetwork, event: str, node: str | None = None) -> list[float]:
    return [r.t for r in sel(net, event, node)]


def sent(net: SimNetwork, kind: str, node: str | None = None) -> list[TraceRecord]:
    return [r for r in sel(net, "datagram_sent", node) if r.fields.get("kind") == kind]
