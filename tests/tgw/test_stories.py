"""Failure stories of tgw.md §5 as fixtures (fixtures/tgw/story_*.yaml), each checked packet by packet."""

from __future__ import annotations

import ipaddress

import pytest

from tests.tgw.conftest import topo
from tgw_dataplane.craft import build, parse_flow
from tgw_dataplane.dataplane import Dataplane, Result
from tgw_dataplane.model import PinnedFlowPolicy, VpcRoute, VpcRouteTargetKind
from tgw_dataplane.packet import PROTO_TCP, TCP_ACK, TCP_SYN, Packet, parse


def handshake(dp: Dataplane, flow: str, src: str, dst: str, now: float = 0.0) -> tuple[Result, Result]:
    f = parse_flow(flow)
    return dp.send(f.request(), src, now, trace=True), dp.send(f.reply(), dst, now + 0.001, trace=True)


def nodes(r: Result, kind: str) -> list[str]:
    return [h["node"] for h in r.hops or [] if h["kind"] == kind]


def egress_enis(r: Result, attachment: str) -> list[str]:
    return [h["egress_eni"] for h in r.hops or [] if h.get("egress_attachment") == attachment]


# --- #2/#3/#5 missing appliance mode (IaC default) -------------------------------------------------------
def test_missing_appliance_mode_defaults_to_disable_and_retransmits_fail() -> None:
    t = topo("story_missing_appliance_mode")
    assert t.tgws["tgw-1"].attachments["tgw-attach-c"].appliance_mode is False  # type: ignore[union-attr]
    dp = Dataplane(t)
    f = parse_flow("tcp 10.0.1.10:40000 > 10.1.2.20:443")
    # #5: the symptom looks like "slow": every SYN retransmission gets through, every SYN-ACK is dropped.
    verdicts = []
    for i in range(3):
        verdicts.append(dp.send(f.request(), "i-a", i * 1.0).verdict)
        verdicts.append(dp.send(f.reply(), "i-b", i * 1.0 + 0.01).verdict)
    assert verdicts == ["delivered", "dropped"] * 3
    assert dp.drops == {"appliance_no_state": 3}
    fw2 = dp.middlebox("i-fw2")
    assert fw2 is not None and fw2.drops == {"appliance_no_state": 3}  # type: ignore[attr-defined]


# --- #4 appliance mode toggled mid-flow -----------------------------------------------------------------------
def test_appliance_mode_enabled_mid_flow_moves_established_flows() -> None:
    """APP: enabling appliance mode "might affect that attachment's current route". A flow set up with AZ
    affinity (both hosts in AZ1, so FW1 holds its state) is re-hashed on its next packet; for the flows that
    hash to AZ2 the next packet meets FW2 without state and is dropped; the others continue."""
    t = topo("seed")
    t.vpcs["vpc-b"].instances["i-b"].subnet = "subnet-b1"
    t.vpcs["vpc-b"].instances["i-b"].ip = "10.1.1.20"
    dp = Dataplane(t)
    moved = stayed = 0
    for sport in range(40000, 40040):
        f = parse_flow(f"tcp 10.0.1.10:{sport} > 10.1.1.20:443")
        fwd, rev = dp.send(f.request(), "i-a", 0.0, trace=True), dp.send(f.reply(), "i-b", 0.01, trace=True)
        assert (fwd.verdict, rev.verdict) == ("delivered", "delivered")
        assert nodes(fwd, "stateful-firewall") == nodes(rev, "stateful-firewall") == ["i-fw1"]
    dp.set_appliance_mode("tgw-attach-c", True)
    for sport in range(40000, 40040):
        ack = build("10.0.1.10", "10.1.1.20", PROTO_TCP, sport, 443, flags=TCP_ACK, seq=1001, ack=5001)
        r = dp.send(ack, "i-a", 1.0, trace=True)
        eni = egress_enis(r, "tgw-attach-c")[0]
        if eni == "eni-c-use1-az2":
            assert (r.verdict, r.reason) == ("dropped", "appliance_no_state")
            moved += 1
        else:
            assert r.verdict == "delivered"
            stayed += 1
    assert moved > 5 and stayed > 5


# --- #6/#7 AZ-mismatched firewall route -----------------------------------------------------------------------
def test_az_mismatched_firewall_route() -> None:
    dp = Dataplane(topo("story_az_mismatch"))
    same = handshake(dp, "tcp 10.0.1.10:40001 > 10.1.1.20:443", "i-a", "i-app1")
    other = handshake(dp, "tcp 10.0.1.10:40002 > 10.1.2.20:443", "i-a", "i-app2")
    assert [r.verdict for r in same] == ["delivered", "delivered"]
    assert [r.verdict for r in other] == ["delivered", "dropped"]
    assert nodes(other[0], "stateful-firewall") == ["i-fwb1"]  # keyed on the TGW ENI's AZ
    assert other[1].node == "i-fwb2" and other[1].reason == "appliance_no_state"


def test_az_mismatched_firewall_route_fixed_by_destination_subnet_routes() -> None:
    t = topo("story_az_mismatch")
    for rtb in ("rtb-b-tgw1", "rtb-b-tgw2"):
        t.vpcs["vpc-b"].route_tables[rtb].routes = [
            VpcRoute(ipaddress.ip_network("10.1.1.0/24"), "eni-fwb1", VpcRouteTargetKind.ENI),
            VpcRoute(ipaddress.ip_network("10.1.2.0/24"), "eni-fwb2", VpcRouteTargetKind.ENI),
        ]
    t.validate()
    dp = Dataplane(t)
    for dst, host in (("10.1.1.20", "i-app1"), ("10.1.2.20", "i-app2")):
        fwd, rev = handshake(dp, f"tcp 10.0.1.10:40003 > {dst}:443", "i-a", host)
        assert (fwd.verdict, rev.verdict) == ("delivered", "delivered")


# --- #8 standby database in the other AZ ---------------------------------------------------------------------------
def test_rds_standby_in_other_az_times_out() -> None:
    dp = Dataplane(topo("story_rds_standby"), flow_logs=True)
    prim = handshake(dp, "tcp 10.20.1.10:50000 > 10.30.1.50:5432", "i-app", "i-rds-primary")
    stby = handshake(dp, "tcp 10.20.1.10:50001 > 10.30.2.50:5432", "i-app", "i-rds-standby")
    assert [r.verdict for r in prim] == ["delivered", "delivered"]
    assert [r.verdict for r in stby] == ["delivered", "dropped"]
    assert dp.flow_logs is not None
    to_inspect = {
        (r["srcaddr"], r["dstaddr"]): r["tgw-dst-az-id"]
        for r in dp.flow_logs.records()
        if r["tgw-attachment-id"] == "tgw-attach-inspect" and r["flow-direction"] == "egress"
    }
    # the diagnosis: the standby's answer enters the inspection VPC in another AZ than the request did
    assert to_inspect[("10.20.1.10", "10.30.2.50")] == "euw2-az2"
    assert to_inspect[("10.30.2.50", "10.20.1.10")] == "euw2-az3"
    assert to_inspect[("10.30.1.50", "10.20.1.10")] == to_inspect[("10.20.1.10", "10.30.1.50")]


# --- #9 two TGWs on one appliance VPC ------------------------------------------------------------------------------
def test_two_tgws_do_not_share_affinity() -> None:
    dp = Dataplane(topo("story_two_tgws"))
    agree = disagree = 0
    for sport in range(41000, 41060):
        fwd, rev = handshake(dp, f"tcp 10.0.1.10:{sport} > 10.1.1.20:443", "i-a", "i-b")
        assert fwd.verdict == "delivered"
        assert [h["node"] for h in fwd.hops or [] if h["kind"] == "tgw"] == ["tgw-1", "tgw-1"]
        # each TGW has its own ENIs in the inspection VPC; compare the AZ (= firewall) each one picked
        f1 = [h["egress_az_id"] for h in fwd.hops or [] if h.get("egress_attachment") == "tgw-attach-1c"]
        f2 = [h["egress_az_id"] for h in rev.hops or [] if h.get("egress_attachment") == "tgw-attach-2c"]
        if f1 == f2:
            agree += 1
            assert rev.verdict == "delivered"
        else:
            disagree += 1
            assert (rev.verdict, rev.reason) == ("dropped", "appliance_no_state")
    assert agree > 5 and disagree > 5


# --- #10 IGW/TGW asymmetry -----------------------------------------------------------------------------------------
def test_igw_tgw_asymmetry() -> None:
    dp = Dataplane(topo("story_igw_asymmetry"))
    dropped = delivered = 0
    for sport in range(42000, 42040):
        syn = build("198.51.100.7", "10.1.1.80", PROTO_TCP, sport, 443, flags=TCP_SYN)
        fwd = dp.send(syn, "igw-c", 0.0, trace=True)
        assert fwd.verdict == "delivered" and nodes(fwd, "stateful-firewall") == ["i-fw1"]
        synack = build("10.1.1.80", "198.51.100.7", PROTO_TCP, 443, sport, flags=TCP_SYN | TCP_ACK)
        rev = dp.send(synack, "i-web", 0.01, trace=True)
        if egress_enis(rev, "tgw-attach-c") == ["eni-c-use1-az1"]:
            assert rev.verdict == "delivered" and rev.node == "internet"
            delivered += 1
        else:
            assert (rev.verdict, rev.reason, rev.node) == ("dropped", "appliance_no_state", "i-fw2")
            dropped += 1
    assert dropped > 5 and delivered > 5


# --- #13 source AZ without an attachment subnet ----------------------------------------------------------------------
def test_source_az_without_attachment_subnet() -> None:
    dp = Dataplane(topo("story_missing_az"))
    out = dp.send(parse_flow("tcp 10.0.3.10:40000 > 10.1.1.20:443").request(), "i-a3", 0.0, trace=True)
    assert (out.verdict, out.reason, out.node) == ("dropped", "no_attachment_subnet_in_az", "i-a3")
    # the other direction reaches i-a3 through an AZ where the attachment has a subnet (AZ1, affinity) ...
    inbound = dp.send(parse_flow("tcp 10.1.1.20:443 > 10.0.3.10:40000").request(), "i-b1", 0.0, trace=True)
    assert inbound.verdict == "delivered" and egress_enis(inbound, "tgw-attach-a") == ["eni-a-use1-az1"]
    # ... and from AZ3 of vpc-b (no AZ3 subnet in tgw-attach-a) to a "random" AZ, stable per flow.
    picks = set()
    for sport in range(43000, 43040):
        f = parse_flow(f"tcp 10.1.3.20:{sport} > 10.0.1.10:443")
        r1 = dp.send(f.request(), "i-b3", 0.0, trace=True)
        r2 = dp.send(f.request(), "i-b3", 1.0, trace=True)
        assert r1.verdict == "delivered"
        assert egress_enis(r1, "tgw-attach-a") == egress_enis(r2, "tgw-attach-a")
        picks.update(egress_enis(r1, "tgw-attach-a"))
    assert picks == {"eni-a-use1-az1", "eni-a-use1-az2"}


# --- AZ / ENI failure with pinned flows ---------------------------------------------------------------------------
def _pinned_flows(dp: Dataplane, n: int = 60) -> dict[int, str]:
    out = {}
    for sport in range(44000, 44000 + n):
        fwd, rev = handshake(dp, f"tcp 10.0.1.10:{sport} > 10.1.1.20:443", "i-a", "i-b")
        assert fwd.verdict == rev.verdict == "delivered"
        out[sport] = egress_enis(fwd, "tgw-attach-c")[0]
    return out


def _ack(dp: Dataplane, sport: int, now: float) -> Result:
    return dp.send(build("10.0.1.10", "10.1.1.20", PROTO_TCP, sport, 443, flags=TCP_ACK), "i-a", now, trace=True)


@pytest.mark.parametrize("policy", list(PinnedFlowPolicy))
def test_az_failure_with_pinned_flows(policy: PinnedFlowPolicy) -> None:
    t = topo("story_az_failure")
    t.settings.pinned_flow_on_failure = policy
    dp = Dataplane(t)
    pins = _pinned_flows(dp)
    on_az3 = [s for s, e in pins.items() if e == "eni-c-use1-az3"]
    others = [s for s, e in pins.items() if e != "eni-c-use1-az3"]
    assert len(on_az3) > 5
    dp.set_az_health("use1-az3", False)
    for s in others:  # flows pinned elsewhere are untouched (HRW)
        r = _ack(dp, s, 10.0)
        assert r.verdict == "delivered" and egress_enis(r, "tgw-attach-c") == [pins[s]]
    for s in on_az3:
        r = _ack(dp, s, 10.0)
        if policy is PinnedFlowPolicy.REHASH:
            # moved to a surviving firewall that never saw the handshake: a stateful appliance drops it
            assert egress_enis(r, "tgw-attach-c")[0] != "eni-c-use1-az3"
            assert r.reason == "appliance_no_state"
        elif policy is PinnedFlowPolicy.BLACKHOLE:
            assert r.reason == "pinned_flow_blackholed"
        else:
            assert r.reason == "az_failed"
    # new flows avoid the failed AZ
    fresh = _pinned_flows(dp, 0)
    for sport in range(45000, 45030):
        fwd, _ = handshake(dp, f"tcp 10.0.1.10:{sport} > 10.1.1.20:443", "i-a", "i-b", 11.0)
        assert fwd.verdict == "delivered" and egress_enis(fwd, "tgw-attach-c")[0] != "eni-c-use1-az3"
    del fresh
    dp.set_az_health("use1-az3", True)
    for s in on_az3:
        r = _ack(dp, s, 12.0)
        if policy is PinnedFlowPolicy.KEEP_UNTIL_IDLE:
            assert r.verdict == "delivered" and egress_enis(r, "tgw-attach-c") == ["eni-c-use1-az3"]
        elif policy is PinnedFlowPolicy.BLACKHOLE:
            assert r.reason == "pinned_flow_blackholed"
    # after the idle timeout (TCP 350 s) a pin is forgotten: a new SYN is hashed afresh and delivered
    for s in on_az3:
        f = parse_flow(f"tcp 10.0.1.10:{s} > 10.1.1.20:443")
        assert dp.send(f.request(), "i-a", 12.0 + 351.0).verdict == "delivered"


def test_pins_survive_other_enis_failing_and_expire_after_idle() -> None:
    dp = Dataplane(topo("story_az_failure"))
    pins = _pinned_flows(dp, 30)
    s = next(s for s, e in pins.items() if e == "eni-c-use1-az1")
    dp.set_eni_health("eni-c-use1-az2", False)
    assert egress_enis(_ack(dp, s, 100.0), "tgw-attach-c") == ["eni-c-use1-az1"]
    assert dp.expire_flows(100.0 + 349.0) == len(pins) - 1  # all but the one refreshed at t=100
    assert dp.expire_flows(100.0 + 351.0) == 1
    assert dp.flow_table("tgw-attach-c") == {}


# --- peering across regions ----------------------------------------------------------------------------------------
def test_peering_across_regions() -> None:
    dp = Dataplane(topo("story_peering"), flow_logs=True)
    fwd, rev = handshake(dp, "tcp 10.0.1.10:40000 > 10.50.2.20:22", "i-east", "i-west")
    assert (fwd.verdict, rev.verdict) == ("delivered", "delivered")
    assert [h["node"] for h in fwd.hops or [] if h["kind"] == "tgw"] == ["tgw-east", "tgw-west"]
    west_hop = next(h for h in fwd.hops or [] if h["node"] == "tgw-west")
    assert west_hop["az"] is None  # arrived over peering: no ingress AZ
    assert west_hop["egress_az_id"] in ("usw2-az1", "usw2-az2")
    assert dp.flow_logs is not None
    regions = {r["region"] for r in dp.flow_logs.records()}
    assert regions == {"us-east-1", "us-west-2"}


def test_peering_needs_the_accepter_static_route() -> None:
    t = topo("story_peering")
    t.tgws["tgw-west"].route_tables["rtb-west"].routes = []
    dp = Dataplane(t, flow_logs=True)
    fwd, rev = handshake(dp, "tcp 10.0.1.10:40000 > 10.50.2.20:22", "i-east", "i-west")
    assert fwd.verdict == "delivered"
    assert (rev.verdict, rev.reason, rev.node) == ("dropped", "no_route", "tgw-west")
    assert dp.flow_logs is not None
    lost = [r for r in dp.flow_logs.records() if r["packets-lost-no-route"] != "0"]
    assert len(lost) == 1 and lost[0]["tgw-id"] == "tgw-west" and lost[0]["tgw-dst-az-id"] == "-"


# --- blackhole routes, MTU, VPN routes following tunnel state, TTL ------------------------------------------------
def test_blackhole_routes_isolate_spokes() -> None:
    dp = Dataplane(topo("story_blackhole_mtu_vpn"), flow_logs=True)
    r = dp.send(parse_flow("tcp 10.0.1.10:40000 > 10.1.1.20:443").request(), "i-a", 0.0, trace=True)
    assert (r.verdict, r.reason, r.node) == ("dropped", "blackhole", "tgw-1")
    r = dp.send(parse_flow("udp 10.0.1.10:5000 > 10.0.99.5:53").request(), "i-a", 0.0)
    assert (r.verdict, r.reason, r.node) == ("dropped", "blackhole", "i-a")  # VPC route to blackhole
    r = dp.send(parse_flow("tcp 10.0.1.10:40000 > 93.184.216.34:443").request(), "i-a", 0.0, trace=True)
    assert (r.verdict, r.node) == ("delivered", "internet")
    assert dp.flow_logs is not None
    bh = [x for x in dp.flow_logs.records() if x["packets-lost-blackhole"] == "1"]
    assert len(bh) == 1 and bh[0]["dstaddr"] == "10.1.1.20"
    assert dp.drops == {"blackhole": 2}


def test_mtu_exceeded_is_a_silent_counted_drop() -> None:
    dp = Dataplane(topo("story_blackhole_mtu_vpn"), flow_logs=True)
    ok = build("10.0.1.10", "93.184.216.34", PROTO_TCP, 1, 443, size=8500)
    big = build("10.0.1.10", "93.184.216.34", PROTO_TCP, 1, 443, size=8501)
    jumbo = build("10.0.1.10", "93.184.216.34", PROTO_TCP, 1, 443, size=9001)
    assert dp.send(ok, "i-a", 0.0).verdict == "delivered"
    for p in (big, jumbo):
        r = dp.send(p, "i-a", 0.0)
        assert (r.verdict, r.reason) == ("dropped", "mtu_exceeded")
    # towards the VPN (1500 bytes)
    assert dp.send(build("10.0.1.10", "192.168.1.1", PROTO_TCP, 1, 22, size=1500), "i-a", 0.0).verdict == "delivered"
    r = dp.send(build("10.0.1.10", "192.168.1.1", PROTO_TCP, 1, 22, size=1501), "i-a", 0.0)
    assert (r.verdict, r.reason) == ("dropped", "mtu_exceeded")
    assert dp.drops == {"mtu_exceeded": 3}
    assert dp.flow_logs is not None
    assert sum(int(x["packets-lost-mtu-exceeded"]) for x in dp.flow_logs.records()) == 3


def test_vpn_routes_follow_tunnel_state_and_static_wins() -> None:
    dp = Dataplane(topo("story_blackhole_mtu_vpn"))
    to_pl = build("10.0.1.10", "192.168.1.1", PROTO_TCP, 1, 22)  # prefix-list route (static)
    to_bgp = build("10.0.1.10", "192.168.100.1", PROTO_TCP, 1, 22)  # only the propagated /16
    for p in (to_pl, to_bgp):
        r = dp.send(p, "i-a", 0.0, trace=True)
        assert (r.verdict, r.node) == ("delivered", "tgw-attach-vpn")
    tgw_hop = next(h for h in r.hops or [] if h["kind"] == "tgw")
    assert tgw_hop["route"] == "192.168.0.0/16 -> tgw-attach-vpn (propagated vpn)"
    dp.set_tunnel_state("tgw-attach-vpn", "tunnel1", False)
    assert dp.send(to_bgp, "i-a", 1.0).verdict == "delivered"  # tunnel2 still up
    dp.set_tunnel_state("tgw-attach-vpn", "tunnel2", False)
    # the propagated route is withdrawn: the default route now leaks it to the egress VPC (§5 #14) ...
    r = dp.send(to_bgp, "i-a", 2.0)
    assert (r.verdict, r.node) == ("delivered", "internet")
    # ... while the static prefix-list route stays and drops on the dead tunnels
    r = dp.send(to_pl, "i-a", 2.0)
    assert (r.verdict, r.reason) == ("dropped", "vpn_tunnel_down")
    dp.set_tunnel_state("tgw-attach-vpn", "tunnel1", True)
    assert dp.send(to_bgp, "i-a", 3.0).node == "tgw-attach-vpn"


def test_ttl_expires_at_the_tgw() -> None:
    dp = Dataplane(topo("story_blackhole_mtu_vpn"), flow_logs=True)
    r = dp.send(build("10.0.1.10", "93.184.216.34", PROTO_TCP, 1, 443, ttl=1), "i-a", 0.0)
    assert (r.verdict, r.reason) == ("dropped", "ttl_expired")
    r = dp.send(build("10.0.1.10", "93.184.216.34", PROTO_TCP, 1, 443, ttl=2), "i-a", 0.0)
    assert r.verdict == "delivered" and r.packet is not None and r.packet.ttl == 1
    out = parse(r.packet.wire())
    assert isinstance(out, Packet) and out.ttl == 1
    assert dp.flow_logs is not None
    assert sum(int(x["packets-lost-ttl-expired"]) for x in dp.flow_logs.records()) == 1


def test_expire_frees_pins_and_firewall_state() -> None:
    dp = Dataplane(topo("story_az_failure"))
    _pinned_flows(dp, 10)
    fw_entries = sum(len(getattr(dp.middlebox(f), "conntrack", {})) for f in ("i-fw1", "i-fw2", "i-fw3"))
    assert fw_entries == 10
    assert dp.expire(100.0) == 0
    assert dp.expire(1000.0) == 20  # 10 pins + 10 conntrack entries (TCP idle 350 s)
    assert dp.flow_table("tgw-attach-c") == {}
