"""Helpers for IKEv2 tests: a peer pair and manual datagram transfer (aioquic ``tests/utils`` style)."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

from cgw_peer.config import Behaviour, IkeVersion, PeerConfig, Role, TrafficSelector, TunnelOptions
from cgw_peer.ikev2.peer import IkeV2Peer
from emulator.actions import Action, Event, Transmit

AWS_ADDR = ("203.0.113.1", 500)
CGW_ADDR = ("198.51.100.1", 500)
PSK = b"test.psk.0123456789"


def options(**kw: Any) -> TunnelOptions:
    base: dict[str, Any] = {
        "ike_versions": (IkeVersion.IKEV2,),
        "phase1_encryption_algorithms": ("AES128",),
        "phase1_integrity_algorithms": ("SHA2-256",),
        "phase1_dh_group_numbers": (19,),
        "phase2_encryption_algorithms": ("AES128",),
        "phase2_integrity_algorithms": ("SHA2-256",),
        "phase2_dh_group_numbers": (19,),
    }
    base.update(kw)
    return TunnelOptions(**base)


def config(role: Role, opts: TunnelOptions | None = None, behaviour: Behaviour | None = None, **kw: Any) -> PeerConfig:
    if role is Role.AWS:
        lts, rts = TrafficSelector("10.0.0.0/16"), TrafficSelector("192.168.0.0/24")
    else:
        lts, rts = TrafficSelector("192.168.0.0/24"), TrafficSelector("10.0.0.0/16")
    return PeerConfig(
        role=role,
        ike_version=IkeVersion.IKEV2,
        options=opts or options(),
        behaviour=behaviour or Behaviour(),
        psk=PSK,
        local_ts=lts,
        remote_ts=rts,
        **kw,
    )


def pair(
    aws_cfg: PeerConfig | None = None, cgw_cfg: PeerConfig | None = None, seed: int = 1
) -> tuple[IkeV2Peer, IkeV2Peer]:
    aws = IkeV2Peer(aws_cfg or config(Role.AWS), local=AWS_ADDR, remote=CGW_ADDR, rng=random.Random(seed))
    cgw = IkeV2Peer(cgw_cfg or config(Role.CGW), local=CGW_ADDR, remote=AWS_ADDR, rng=random.Random(seed + 1))
    return aws, cgw


def deliver(actions: list[Action], to: IkeV2Peer, now: float) -> list[Action]:
    """Feed every Transmit in ``actions`` to ``to``; returns what ``to`` did."""
    out: list[Action] = []
    for a in actions:
        if isinstance(a, Transmit):
            out += to.receive_datagram(a.data, a.src, a.dst, now)
    return out


def converse(a: IkeV2Peer, b: IkeV2Peer, first: list[Action], now: float, limit: int = 50) -> list[tuple[str, Action]]:
    """Ping-pong datagrams between ``a`` (which produced ``first``) and ``b`` until quiet. Returns
    (who, action) for every action, in order."""
    log: list[tuple[str, Action]] = [("a", x) for x in first]
    pending, sender = first, "a"
    for _ in range(limit):
        target = b if sender == "a" else a
        got = deliver(pending, target, now)
        sender = "b" if sender == "a" else "a"
        log += [(sender, x) for x in got]
        if not any(isinstance(x, Transmit) for x in got):
            break
        pending = got
    return log


def names(log: list[tuple[str, Action]], who: str | None = None) -> list[str]:
    return [x.name for w, x in log if isinstance(x, Event) and (who is None or w == who)]


def kinds(log: list[tuple[str, Action]]) -> list[str]:
    return [x.kind for _, x in log if isinstance(x, Transmit)]


def establish(aws: IkeV2Peer, cgw: IkeV2Peer, now: float = 0.0) -> list[tuple[str, Action]]:
    """CGW initiates; returns the conversation log (a = cgw, b = aws)."""
    return converse(cgw, aws, cgw.start(now), now)


def with_behaviour(cfg: PeerConfig, **kw: Any) -> PeerConfig:
    return replace(cfg, behaviour=replace(cfg.behaviour, **kw))
