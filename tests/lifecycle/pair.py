"""A tunnel pair of either IKE version on the virtual-time network, configured identically apart from the
version, and the checks every lifecycle test applies to a finished trace."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from cgw_peer.config import Behaviour, IkeVersion, PeerConfig, Role, TrafficSelector, TunnelOptions
from cgw_peer.peer import IkePeer, create_peer
from emulator.campaign import invariants
from emulator.simnet import SimNetwork
from emulator.trace import BaseTrace, TraceRecord

AWS_IP = "203.0.113.1"
CGW_IP = "198.51.100.1"
PSK = b"lifecycle.psk.0123"

AUTHENTICATED_RECEIPT = invariants.AUTHENTICATED_RECEIPT
"""Events a node emits only when a fresh authenticated message from its peer arrived at that instant."""


def options(version: int, **kw: Any) -> TunnelOptions:
    base: dict[str, Any] = {
        "ike_versions": (IkeVersion.IKEV1 if version == 1 else IkeVersion.IKEV2,),
        "phase1_encryption_algorithms": ("AES128",),
        "phase1_integrity_algorithms": ("SHA2-256",),
        "phase1_dh_group_numbers": (19,),
        "phase2_encryption_algorithms": ("AES128",),
        "phase2_integrity_algorithms": ("SHA2-256",),
        "phase2_dh_group_numbers": (19,),
    }
    base.update(kw)
    return TunnelOptions(**base)


def peer_config(role: Role, version: int, opts: TunnelOptions, behaviour: Behaviour, **kw: Any) -> PeerConfig:
    if role is Role.AWS:
        lts, rts = TrafficSelector("10.0.0.0/16"), TrafficSelector("192.168.0.0/24")
    else:
        lts, rts = TrafficSelector("192.168.0.0/24"), TrafficSelector("10.0.0.0/16")
    return PeerConfig(
        role=role,
        ike_version=IkeVersion.IKEV1 if version == 1 else IkeVersion.IKEV2,
        options=opts,
        behaviour=behaviour,
        psk=PSK,
        local_ts=lts,
        remote_ts=rts,
        **kw,
    )


QUIET = Behaviour(dpd_enabled=False, restart_backoff_jitter=0.0)
"""A CGW that answers DPD but never probes, so AWS's timeline is the only one."""


class Pair:
    """AWS endpoint + CGW of one IKE version on a :class:`SimNetwork`, with fresh processes on revive."""

    def __init__(
        self,
        version: int,
        *,
        opts: TunnelOptions | None = None,
        aws_beh: Behaviour | None = None,
        cgw_beh: Behaviour | None = None,
        cgw_initiates: bool = True,
        seed: int = 1,
        wrap: Callable[[IkePeer, str], IkePeer] | None = None,
        cgw_extra: dict[str, Any] | None = None,
    ) -> None:
        self.version = version
        self.opts = opts or options(version)
        self.aws_cfg = peer_config(
            Role.AWS, version, self.opts, aws_beh or Behaviour(restart_backoff_jitter=0.0), name="aws"
        )
        self.cgw_cfg = peer_config(
            Role.CGW, version, self.opts, cgw_beh or QUIET, initiate=cgw_initiates, name="cgw", **(cgw_extra or {})
        )
        self.seed = seed
        self.started = False
        self.wrap = wrap
        """Applied to every peer process this pair creates (a test's recorder)."""
        self.incarnation = {"aws": 0, "cgw": 0}
        self.net = SimNetwork(seed=seed)
        self.net.add_node("aws", self.make("aws"), [AWS_IP])
        self.net.add_node("cgw", self.make("cgw"), [CGW_IP])

    def make(self, side: str, initiate: bool | None = None) -> IkePeer:
        cfg = self.aws_cfg if side == "aws" else self.cgw_cfg
        if initiate is not None:
            cfg = replace(cfg, initiate=initiate)
        rng = random.Random(f"{self.seed}:{side}:{self.incarnation[side]}")
        me, other = (AWS_IP, CGW_IP) if side == "aws" else (CGW_IP, AWS_IP)
        peer = create_peer(cfg, local=(me, 500), remote=(other, 500), rng=rng)
        return self.wrap(peer, side) if self.wrap is not None else peer

    def node(self, side: str) -> IkePeer:
        n: IkePeer = self.net.node(side)  # type: ignore[assignment]
        return n

    def crash(self, side: str, at: float) -> None:
        self.net.at(at, lambda: self.net.crash(side))

    def revive(self, side: str, at: float, initiate: bool | None = None) -> None:
        def go() -> None:
            self.incarnation[side] += 1
            self.net.revive(side, self.make(side, initiate))

        self.net.at(at, go)

    @property
    def trace(self) -> BaseTrace:
        return self.net.trace

    def run(self, until: float) -> BaseTrace:
        """Start both peers (on the first call) and run to ``until``; then check the trace's invariants."""
        if not self.started:
            self.started = True
            self.net.start_all(at=0.0)
        self.net.run_until(until)
        check_trace(self.net.trace, {s: self.node(s) for s in ("aws", "cgw")})
        return self.net.trace

    def sel(self, event: str, node: str = "aws") -> list[TraceRecord]:
        return self.net.trace.select(event, node)

    def times(self, event: str, node: str = "aws") -> list[float]:
        return [r.t for r in self.sel(event, node)]


def check_trace(trace: Iterable[TraceRecord], nodes: dict[str, IkePeer] | None = None) -> None:
    """The invariants every run must satisfy, whatever its faults (the product's checker,
    :func:`emulator.campaign.invariants.check_trace`, which campaigns run on every trace):

    * every event matches its declaration in ``cgw_peer.events`` (names, fields, types, choices);
    * per node, ``tunnel_up`` and ``tunnel_down`` alternate, starting with ``tunnel_up`` (at most one DOWN per UP),
      and every ``tunnel_down`` is followed at once by ``routes_withdrawn`` with the same reason;
    * the final status agrees with the last UP/DOWN event (after a crash the old process's events no longer
      count: a revived node starts DOWN);
    * ``dpd_timeout`` reports a ``last_inbound`` no older than any authenticated receipt before it, and never
      one in the future;
    * no datagram crashed a node (no ``internal_error`` drop, no ``driver_error``).
    """
    status = None if nodes is None else {name: peer.status.status.value for name, peer in nodes.items()}
    problems = invariants.check_trace(trace, status)
    assert not problems, "\n".join(problems[:20])
