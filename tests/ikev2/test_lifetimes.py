"""Hard lifetimes (RFC 7296 §2.8: each side enforces its own, nothing is negotiated): when nobody rekeys, a
Child SA is deleted at Phase2LifetimeSeconds and the IKE SA at Phase1LifetimeSeconds, at exactly those
instants, and the tunnel goes DOWN with reason ``expired``; a rekey in time leaves nothing to expire."""

from __future__ import annotations

from cgw_peer.config import Behaviour, Role
from emulator.simnet import SimNetwork

from .helpers import AWS_ADDR, CGW_ADDR, config, options, pair

NO_REKEY = Behaviour(rekey_initiator=False, dpd_enabled=False)


def net_with(aws_beh: Behaviour, cgw_beh: Behaviour, **opts: int) -> SimNetwork:
    o = options(**opts)
    aws, cgw = pair(config(Role.AWS, o, behaviour=aws_beh), config(Role.CGW, o, behaviour=cgw_beh))
    net = SimNetwork(seed=3)
    net.add_node("aws", aws, [AWS_ADDR[0]])
    net.add_node("cgw", cgw, [CGW_ADDR[0]])
    return net


def at(net: SimNetwork, event: str, node: str) -> list[float]:
    return [round(r.t, 6) for r in net.trace.select(event, node=node)]


def test_child_then_ike_sa_expire_when_nobody_rekeys() -> None:
    net = net_with(NO_REKEY, NO_REKEY, phase1_lifetime_seconds=1000, phase2_lifetime_seconds=900)
    net.start_all()
    net.run_until(2000)
    # both sides hold the same lifetimes: each expires its own Child SA at 900 s and its IKE SA at 1000 s
    for node in ("aws", "cgw"):
        assert at(net, "tunnel_up", node) == [0.0]
        assert at(net, "child_sa_expired", node) == [900.0]
        assert at(net, "ike_sa_expired", node) == [1000.0]
        downs = net.trace.select("tunnel_down", node=node)
        assert [(round(r.t, 6), r.fields["reason"]) for r in downs] == [(900.0, "expired")]
        assert at(net, "routes_withdrawn", node) == [900.0]
    aws, cgw = net.node("aws"), net.node("cgw")
    for p in (aws, cgw):
        assert p.counters.get("child:expired") == 1 and p.counters.get("ike:expired") == 1  # type: ignore[attr-defined]
        assert p.status.status.value == "DOWN" and p.next_deadline() is None  # type: ignore[attr-defined]
        assert p.ike_spis() == set()  # type: ignore[attr-defined]
    # the Deletes went out (ESP at 900, IKE at 1000) and were answered, nothing retransmitted
    kinds = [(round(r.t, 6), r.node, r.fields["kind"]) for r in net.trace.select("datagram_sent")]
    assert (900.0, "aws", "delete_request") in kinds and (1000.0, "aws", "delete_request") in kinds
    assert not [k for k in kinds if "retransmit" in k[2]]


def test_child_expiry_of_one_side_takes_the_tunnel_down_on_both() -> None:
    """Only AWS has the short Phase 2 lifetime: its Delete at 900 s takes the CGW's Child SA with it."""
    o_aws = options(phase2_lifetime_seconds=900)
    aws, cgw = pair(config(Role.AWS, o_aws, behaviour=NO_REKEY), config(Role.CGW, options(), behaviour=NO_REKEY))
    net = SimNetwork(seed=3)
    net.add_node("aws", aws, [AWS_ADDR[0]])
    net.add_node("cgw", cgw, [CGW_ADDR[0]])
    net.start_all()
    net.run_until(1200)
    assert at(net, "child_sa_expired", "aws") == [900.0] and at(net, "child_sa_expired", "cgw") == []
    assert at(net, "tunnel_down", "aws") == [900.0] and at(net, "tunnel_down", "cgw") == [900.0]
    assert [r.fields["protocol"] for r in net.trace.select("delete_received", node="cgw")] == ["esp"]
    assert aws.status.status.value == "DOWN" and cgw.status.status.value == "DOWN"
    assert len(aws.ike_spis()) == 2  # the IKE SA stays until its own lifetime


def test_rekey_in_time_leaves_nothing_to_expire() -> None:
    net = net_with(Behaviour(dpd_enabled=False), NO_REKEY, phase1_lifetime_seconds=1000, phase2_lifetime_seconds=900)
    net.start_all()
    net.run_until(5000)
    for node in ("aws", "cgw"):
        assert at(net, "child_sa_expired", node) == [] and at(net, "ike_sa_expired", node) == []
        assert at(net, "tunnel_down", node) == []
    assert len(net.trace.select("rekey_done", node="aws")) >= 8
