"""GWLB flow table (tgw_dataplane.gwlb.GatewayLoadBalancer), driven directly with parsed packets."""

from __future__ import annotations

import ipaddress
import random
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulator.cli import ConfigError
from tgw_dataplane import geneve
from tgw_dataplane import gwlb as G
from tgw_dataplane.packet import Packet, parse


def tcp(src: str, dst: str, sport: int, dport: int, flags: int = 0x10, seq: int = 1000, ack: int = 0) -> Packet:
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    th = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0)
    if s.version == 4:
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0, 64, 6, 0, s.packed, d.packed)
    else:
        ip = struct.pack("!IHBB", 6 << 28, 20, 6, 64) + s.packed + d.packed
    p = parse(ip + th)
    assert isinstance(p, Packet)
    return p


def udp(src: str, dst: str, sport: int, dport: int) -> Packet:
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    uh = struct.pack("!HHHH", sport, dport, 8, 0)
    p = parse(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 0, 0, 64, 17, 0, s.packed, d.packed) + uh)
    assert isinstance(p, Packet)
    return p


def icmp(src: str, dst: str) -> Packet:
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    body = struct.pack("!BBHHH", 8, 0, 0, 1, 1)
    p = parse(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 0, 0, 64, 1, 0, s.packed, d.packed) + body)
    assert isinstance(p, Packet)
    return p


TARGETS = [
    ("i-fw1a", "10.100.1.10", "az1"),
    ("i-fw2a", "10.100.1.11", "az1"),
    ("i-fw1b", "10.100.2.10", "az2"),
    ("i-fw2b", "10.100.2.11", "az2"),
]
NODES = [("az1", "subnet-gwlb-a", "10.100.1.254"), ("az2", "subnet-gwlb-b", "10.100.2.254")]


def lb(**opts: object) -> G.GatewayLoadBalancer:
    cross = bool(opts.pop("cross_zone", False))
    return G.GatewayLoadBalancer(
        "gwlb-1", G.GwlbAttributes.from_options(opts, cross_zone=cross), TARGETS, NODES, random.Random(7)
    )


SYN = 0x02
SYNACK = 0x12
ACK = 0x10


@given(
    pair=st.one_of(
        st.tuples(st.ip_addresses(v=4), st.ip_addresses(v=4)), st.tuples(st.ip_addresses(v=6), st.ip_addresses(v=6))
    ),
    sp=st.integers(1, 65535),
    dp=st.integers(1, 65535),
    sticky=st.sampled_from(["5-tuple", "source_ip_dest_ip_proto", "source_ip_dest_ip"]),
)
def test_both_directions_share_one_entry_and_target(pair: tuple[object, object], sp: int, dp: int, sticky: str) -> None:
    a, b = str(pair[0]), str(pair[1])
    g = lb(stickiness=sticky)
    d1 = g.select("az1", tcp(a, b, sp, dp, SYN), 0.0)
    d2 = g.select("az1", tcp(b, a, dp, sp, SYNACK), 0.1)
    assert d1.new_flow and not d2.new_flow
    assert d1.entry is d2.entry and d1.target is d2.target
    assert d1.target is not None and d1.target.az == "az1"  # cross-zone off: the node's own AZ
    assert g.flow_count() == 1


def test_stickiness_granularity() -> None:
    # 5-tuple: different ports are different flows; 3-tuple: one per (src, dst, proto); 2-tuple: one per pair.
    pkts = [tcp("10.0.1.10", "10.1.2.20", 40000 + i, 443, SYN) for i in range(20)]
    pkts += [udp("10.0.1.10", "10.1.2.20", 5000, 53), icmp("10.1.2.20", "10.0.1.10")]
    counts = {}
    for sticky in ("5-tuple", "3-tuple", "2-tuple"):
        g = lb(stickiness=sticky)
        for p in pkts:
            g.select("az1", p, 0.0)
        counts[sticky] = g.flow_count()
    assert counts == {"5-tuple": 22, "3-tuple": 3, "2-tuple": 1}


def test_flows_spread_over_the_az_targets_only() -> None:
    g = lb()
    seen = {g.select("az2", tcp("10.0.1.10", "10.1.2.20", 1024 + i, 443, SYN), 0.0).target.id for i in range(200)}  # type: ignore[union-attr]
    assert seen == {"i-fw1b", "i-fw2b"}
    g = lb(cross_zone=True)
    seen = {g.select("az2", tcp("10.0.1.10", "10.1.2.20", 1024 + i, 443, SYN), 0.0).target.id for i in range(200)}  # type: ignore[union-attr]
    assert seen == {"i-fw1a", "i-fw2a", "i-fw1b", "i-fw2b"}


def test_idle_timeouts_tcp_350_other_120() -> None:
    g = lb()
    t = tcp("10.0.1.10", "10.1.2.20", 40000, 443, SYN)
    u = udp("10.0.1.10", "10.1.2.20", 5000, 53)
    e_t = g.select("az1", t, 0.0).entry
    e_u = g.select("az1", u, 0.0).entry
    assert g.next_deadline() == 120.0
    # Refreshing within the timeout keeps the entry.
    assert g.select("az1", u, 119.0).entry is e_u
    assert g.select("az1", t, 349.0).entry is e_t
    # 120 s of silence later the UDP entry is gone (a new one, new cookie); TCP survives until 349+350.
    assert g.select("az1", u, 239.5).entry is not e_u
    assert g.select("az1", t, 698.0).entry is e_t
    assert g.expire(2000.0) == []
    assert g.flow_count() == 0
    assert g.counters["gwlb_idle_expired"] == 2


def test_tcp_idle_timeout_is_configurable_within_range() -> None:
    g = lb(**{"tcp.idle_timeout.seconds": 60})
    e = g.select("az1", tcp("10.0.1.10", "10.1.2.20", 1, 2, SYN), 0.0).entry
    assert g.select("az1", tcp("10.0.1.10", "10.1.2.20", 1, 2, ACK), 61.0).entry is not e
    for bad in (59, 6001, "x", True):
        with pytest.raises(ConfigError, match=r"gwlb\.options\.tcp\.idle_timeout\.seconds"):
            G.GwlbAttributes.from_options({"tcp.idle_timeout.seconds": bad})


def test_send_tcp_reset_on_non_syn_without_entry() -> None:
    g = lb(**{"send_tcp_reset.on_idle_timeout.enabled": True})
    mid = tcp("10.0.1.10", "10.1.2.20", 40000, 443, ACK, seq=5000, ack=9000)
    d = g.select("az1", mid, 0.0)
    assert d.reason == G.R_NO_FLOW_RESET and d.target is None and g.flow_count() == 0
    (rst,) = d.resets
    from scapy.layers.inet import IP, TCP

    r = IP(rst)
    # RFC 9293 §3.10.7.1: the incoming segment had ACK, so the RST carries seq = SEG.ACK, to the sender.
    assert (r.src, r.dst, r[TCP].sport, r[TCP].dport) == ("10.1.2.20", "10.0.1.10", 443, 40000)
    assert r[TCP].flags == "R" and r[TCP].seq == 9000
    # Checksums are right (scapy recomputes them from scratch and must agree).
    r2 = IP(rst)
    del r2.chksum
    del r2[TCP].chksum
    assert bytes(IP(bytes(r2))) == rst
    # Default (off): the mid-flow packet simply creates an entry.
    assert lb().select("az1", mid, 0.0).new_flow


def test_reset_on_idle_expiry_to_both_ends() -> None:
    g = lb(**{"send_tcp_reset.on_idle_timeout.enabled": "true"})
    g.select("az1", tcp("10.0.1.10", "10.1.2.20", 40000, 443, SYN, seq=100), 0.0)
    g.select("az1", tcp("10.1.2.20", "10.0.1.10", 443, 40000, SYNACK, seq=700, ack=101), 0.1)
    g.select("az1", tcp("10.0.1.10", "10.1.2.20", 40000, 443, ACK, seq=101, ack=701), 0.2)
    assert g.expire(300.0) == []
    resets = g.expire(351.0)
    from scapy.layers.inet import IP, TCP

    got = sorted((IP(r).dst, IP(r)[TCP].seq, str(IP(r)[TCP].flags)) for r in resets)
    # Each end gets a RST whose seq is the ACK it last sent (its RCV.NXT), so its TCP accepts it.
    assert got == [("10.0.1.10", 701, "R"), ("10.1.2.20", 101, "R")]
    assert g.flow_count() == 0


def test_no_rebalance_keeps_flows_on_the_failed_target() -> None:
    g = lb()
    flows = [tcp("10.0.1.10", "10.1.2.20", 20000 + i, 443, SYN) for i in range(100)]
    first = {i: g.select("az1", p, 0.0).target for i, p in enumerate(flows)}
    victim = first[0]
    assert victim is not None
    g.set_target_health(victim.id, False)
    on_victim = [i for i, t in first.items() if t is victim]
    for i in on_victim:
        d = g.select("az1", flows[i], 1.0)
        assert d.target is victim and d.reason == G.R_TARGET_UNREACHABLE
    for i in set(first) - set(on_victim):
        d = g.select("az1", flows[i], 1.0)
        assert d.target is first[i] and d.reason is None
    # New flows avoid it.
    for i in range(100):
        d = g.select("az1", tcp("10.0.1.11", "10.1.2.20", 30000 + i, 443, SYN), 1.0)
        assert d.target is not victim
    # When it recovers, its old flows flow again.
    g.set_target_health(victim.id, True)
    assert g.select("az1", flows[on_victim[0]], 2.0).reason is None


def test_rebalance_moves_only_the_failed_targets_flows() -> None:
    g = lb(**{"target_failover.on_unhealthy": "rebalance", "target_failover.on_deregistration": "rebalance"})
    flows = [tcp("10.0.1.10", "10.1.2.20", 20000 + i, 443, SYN) for i in range(100)]
    first = {i: g.select("az1", p, 0.0).target for i, p in enumerate(flows)}
    victim = first[0]
    assert victim is not None
    g.set_target_health(victim.id, False)
    for i, p in enumerate(flows):
        d = g.select("az1", p, 1.0)
        assert d.reason is None
        if first[i] is victim:
            assert d.rebalanced and d.target is not victim and d.target is not None and d.target.az == "az1"
        else:
            assert not d.rebalanced and d.target is first[i]


def test_deregistration_rebalances_after_the_delay() -> None:
    g = lb(
        **{
            "target_failover.on_deregistration": "rebalance",
            "target_failover.on_unhealthy": "rebalance",
            "deregistration_delay.timeout_seconds": 30,
        }
    )
    p = tcp("10.0.1.10", "10.1.2.20", 20000, 443, SYN)
    t0 = g.select("az1", p, 0.0).target
    assert t0 is not None
    g.deregister_target(t0.id, 10.0)
    assert g.select("az1", p, 20.0).target is t0  # draining: existing flow stays during the delay
    d = g.select("az1", p, 40.5)
    assert d.rebalanced and d.target is not t0


def test_failover_attributes_must_match() -> None:
    with pytest.raises(ConfigError, match=r"target_failover\.on_unhealthy: must equal"):
        G.GwlbAttributes.from_options(
            {"target_failover.on_unhealthy": "rebalance", "target_failover.on_deregistration": "no_rebalance"}
        )
    with pytest.raises(ConfigError, match=r"gwlb\.options\.stickiness: 'sticky' is not one of"):
        G.GwlbAttributes.from_options({"stickiness": "sticky"})
    with pytest.raises(ConfigError, match="unknown key"):
        G.GwlbAttributes.from_options({"stickyness": "5-tuple"})


@pytest.mark.parametrize("cross_zone", [False, True])
def test_all_targets_of_one_az_down(cross_zone: bool) -> None:
    """Failure story 12 at the flow-table level: cross-zone off fails open to the dead AZ targets."""
    g = lb(cross_zone=cross_zone)
    for t in ("i-fw1a", "i-fw2a"):
        g.set_target_health(t, False)
    ds = [g.select("az1", tcp("10.0.1.10", "10.1.2.20", 20000 + i, 443, SYN), 0.0) for i in range(50)]
    if cross_zone:
        assert all(d.reason is None and d.target is not None and d.target.az == "az2" for d in ds)
        assert not any(d.fail_open for d in ds)
    else:
        assert all(d.fail_open and d.reason == G.R_TARGET_UNREACHABLE for d in ds)
        assert {d.target.id for d in ds if d.target} == {"i-fw1a", "i-fw2a"}
    # az2 is unaffected either way.
    assert g.select("az2", tcp("10.0.1.10", "10.1.2.20", 1, 443, SYN), 0.0).reason is None


def test_all_targets_everywhere_down_fails_open_with_cross_zone() -> None:
    g = lb(cross_zone=True)
    for t, _ip, _az in TARGETS:
        g.set_target_health(t, False, forwards=True)  # health checks fail but appliances still pass traffic
    d = g.select("az1", tcp("10.0.1.10", "10.1.2.20", 1, 443, SYN), 0.0)
    assert d.fail_open and d.reason is None


def test_no_node_and_no_targets() -> None:
    g = G.GatewayLoadBalancer("g", G.GwlbAttributes(), [("i-x", "10.100.1.10", "az1")], NODES, random.Random(1))
    assert g.select("az3", tcp("1.1.1.1", "2.2.2.2", 1, 2, SYN), 0.0).reason == G.R_NO_NODE
    assert g.select("az2", tcp("1.1.1.1", "2.2.2.2", 1, 2, SYN), 0.0).reason == G.R_NO_TARGETS


def test_geneve_to_target_and_back() -> None:
    g = lb()
    p = tcp("10.0.1.10", "10.1.2.20", 40000, 443, SYN)
    d = g.select("az1", p, 0.0)
    frame = g.to_target("az1", d, p.data, geneve.vpce_id_to_int("vpce-0123456789abcdef0"), 42)
    hdr, meta, inner = geneve.decapsulate_ipv4(frame)
    assert inner == p.data
    assert hdr.src == int(ipaddress.IPv4Address("10.100.1.254"))
    assert d.target is not None and hdr.dst == d.target.ip
    assert d.entry is not None and meta.flow_cookie == d.entry.cookie and meta.attachment_id == 42
    back = G.target_reflect(frame)
    hdr2, meta2, inner2 = geneve.decapsulate_ipv4(back)
    assert (hdr2.src, hdr2.dst, meta2, inner2) == (hdr.dst, hdr.src, meta, inner)
    # The reverse direction carries the same cookie (one entry for both directions).
    r = tcp("10.1.2.20", "10.0.1.10", 443, 40000, SYNACK)
    d2 = g.select("az1", r, 0.1)
    _h, meta3, _i = geneve.decapsulate_ipv4(g.to_target("az1", d2, r.data, 1, 42))
    assert meta3.flow_cookie == meta.flow_cookie


def test_ipv6_inner_uses_ipv4_outer() -> None:
    g = lb()
    p = tcp("2001:db8::a", "2001:db8::b", 40000, 443, SYN)
    d = g.select("az1", p, 0.0)
    frame = g.to_target("az1", d, p.data, 1, 2)
    assert frame[0] == 0x45 and frame[20 + 8 + 2 : 20 + 8 + 4] == b"\x86\xdd"
    assert d.target is g.select("az1", tcp("2001:db8::b", "2001:db8::a", 443, 40000, SYNACK), 0.1).target


@given(
    events=st.lists(st.tuples(st.integers(0, 30), st.booleans(), st.floats(0, 50)), min_size=1, max_size=60),
    at=st.floats(0, 2000),
)
def test_expiry_scan_matches_brute_force(events: list[tuple[int, bool, float]], at: float) -> None:
    """The early-stopping scans of expire/next_deadline agree with checking every entry."""
    g = lb(**{"tcp.idle_timeout.seconds": 60})
    now = 0.0
    for port, is_tcp, dt in events:
        now += dt
        g.select(
            "az1",
            tcp("10.0.1.10", "10.1.2.20", 1000 + port, 443, SYN)
            if is_tcp
            else udp("10.0.1.10", "10.1.2.20", 1000 + port, 53),
            now,
        )
    entries = [e for n in g.nodes.values() for e in n.flows.values()]
    assert g.next_deadline() == min(e.last + e.timeout for e in entries)
    t = now + at
    survivors = sum(1 for e in entries if t - e.last <= e.timeout)
    g.expire(t)
    assert g.flow_count() == survivors
