"""GWLB plugged into the dataplane (fixtures/tgw/gwlb-story12.yaml): GENEVE on the wire, symmetry, failure
story 12 (tgw.md §5: cross-zone off + all targets of one AZ down), failover policies, per-hop captures."""

from __future__ import annotations

import struct
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from emulator.cli import ConfigError
from emulator.pcap import LINKTYPE_RAW, PcapWriter, read_pcap
from tests.tools import require_tool
from tgw_dataplane import geneve
from tgw_dataplane.craft import FlowSpec as Flow
from tgw_dataplane.craft import build, parse_flow
from tgw_dataplane.dataplane import Dataplane
from tgw_dataplane.gwlb import GatewayLoadBalancer, GwlbEndpointBox, GwlbTargetAppliance, expire_gwlbs, gwlb_of
from tgw_dataplane.model import Topology, load_topology
from tgw_dataplane.packet import Packet, parse

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "tgw" / "gwlb-story12.yaml"
AZ_A_TARGETS = ("i-fw-a1", "i-fw-a2")


def story12(cross_zone: bool = False, **options: Any) -> Topology:
    t = load_topology(FIXTURE)
    g = t.gwlbs["gwlb-1"]
    g.cross_zone = cross_zone
    g.options.update(options)
    return t


class Captures:
    """A capture_sink collecting frames per node; can write one pcap per node (raw IPv4/IPv6)."""

    def __init__(self) -> None:
        self.frames: dict[str, list[tuple[float, bytes]]] = defaultdict(list)

    def __call__(self, node: str, now: float, frame: bytes) -> None:
        self.frames[node].append((now, frame))

    def write(self, out: Path) -> dict[str, Path]:
        paths = {}
        for node, frames in self.frames.items():
            p = out / (node.replace("/", "_") + ".pcap")
            w = PcapWriter.open(str(p), LINKTYPE_RAW)
            for ts, f in frames:
                w.write(ts, f)
            w.close()
            paths[node] = p
        return paths


def _pkt(data: bytes) -> Packet:
    p = parse(data)
    assert isinstance(p, Packet)
    return p


def flows_entering(dp: Dataplane, az_eni: str, n: int) -> list[Flow]:
    """``n`` TCP flows A -> B whose appliance-mode pick on the security attachment is ``az_eni``."""
    out = []
    for port in range(30000, 40000):
        f = parse_flow(f"tcp 10.0.1.10:{port} > 10.1.2.20:443")
        if dp.pick_appliance_eni("tgw-attach-sec", _pkt(f.request())) == az_eni:
            out.append(f)
            if len(out) == n:
                return out
    raise AssertionError("not enough flows")


def ack(f: Flow) -> bytes:
    """A mid-flow ACK from the client (after the SYN / SYN-ACK that craft builds)."""
    return build(f.src, f.dst, 6, f.sport, f.dport, flags=0x10, seq=1001, ack=5001)


def kinds(hops: list[dict[str, Any]] | None) -> list[tuple[str, str]]:
    assert hops is not None
    return [(h["node"], h["kind"]) for h in hops]


def gwlb_hops(hops: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    assert hops is not None
    return [h for h in hops if h["kind"] == "gwlb"]


def test_flow_goes_through_one_target_both_ways_in_geneve(tmp_path: Path) -> None:
    cap = Captures()
    dp = Dataplane(story12(), capture_sink=cap)
    f = parse_flow("tcp 10.0.1.10:40000 > 10.1.2.20:443")
    fwd = dp.send(f.request(), "i-a", 0.0, trace=True)
    rev = dp.send(f.reply(), "i-b", 0.01, trace=True)
    assert (fwd.verdict, rev.verdict) == ("delivered", "delivered")
    (g1,), (g2,) = gwlb_hops(fwd.hops), gwlb_hops(rev.hops)
    assert g1["target"] == g2["target"] and g1["flow_cookie"] == g2["flow_cookie"]
    assert g1["new_flow"] and not g2["new_flow"]
    # The hop order: TGW ENI in the security VPC -> GWLB node -> target -> endpoint -> TGW.
    k = [kind for _n, kind in kinds(fwd.hops)]
    i = k.index("gwlb")
    assert k[i - 1 : i + 4] == ["tgw-attachment-eni", "gwlb", "gwlb-target", "gwlb-endpoint", "tgw"]
    # On the wire to and from the target: GENEVE with the three AWS options, the inner packet unchanged.
    target = g1["target"]
    frames = [fr for _t, fr in cap.frames[target]]
    assert len(frames) == 4  # request there and back, reply there and back
    metas = [geneve.decapsulate_ipv4(fr) for fr in frames]
    assert {m.flow_cookie for _h, m, _i in metas} == {int(g1["flow_cookie"], 16)}
    assert metas[0][2] == _pkt(f.request()).data[:8] + metas[0][2][8:]  # same packet (TTL may differ)
    assert metas[0][1].endpoint_id == geneve.vpce_id_to_int(
        "vpce-0b2b2b2b2b2b2b2b2" if g1["az"] == "us-east-1b" else "vpce-0a1a1a1a1a1a1a1a1"
    )
    # The pcaps written from the captures are read back by scapy's dissector as GENEVE.
    from scapy.contrib.geneve import GENEVE
    from scapy.layers.inet import IP, TCP

    paths = cap.write(tmp_path)
    pk = [IP(fr) for _ts, fr in read_pcap(str(paths[target]))]
    assert all(p.haslayer(GENEVE) and p[GENEVE].options[2].classid == 0x0108 for p in pk)
    assert [str(p[GENEVE][TCP].flags) for p in pk] == ["S", "S", "SA", "SA"]


def test_story12_cross_zone_off_keeps_sending_to_dead_targets(tmp_path: Path) -> None:
    cap = Captures()
    dp = Dataplane(story12(cross_zone=False), capture_sink=cap)
    g = gwlb_of(dp, "gwlb-1")
    for t in AZ_A_TARGETS:
        g.set_target_health(t, False)
    flows_a = flows_entering(dp, "eni-sec-use1-az1", 10)
    flows_b = flows_entering(dp, "eni-sec-use1-az2", 10)
    for i, f in enumerate(flows_a):
        r = dp.send(f.request(), "i-a", float(i), trace=True)
        assert (r.verdict, r.reason) == ("dropped", "gwlb_target_unreachable")
        (h,) = gwlb_hops(r.hops)
        assert h["az"] == "us-east-1a" and h["fail_open"] and h["target"] in AZ_A_TARGETS
    for i, f in enumerate(flows_b):
        r = dp.send(f.request(), "i-a", float(i), trace=True)
        assert r.verdict == "delivered"
        assert gwlb_hops(r.hops)[0]["target"].startswith("i-fw-b")
    # The AZ-a node really sent GENEVE to the dead AZ-a targets (captured on its side, no answer).
    sent = [geneve.decapsulate_ipv4(fr)[0] for _t, fr in cap.frames["gwlb-1/us-east-1a"]]
    assert len(sent) == 10
    assert {h.dst for h in sent} <= {g.by_id[t].ip for t in AZ_A_TARGETS}
    assert dp.drops == {"gwlb_target_unreachable": 10}
    assert g.counters["gwlb_target_unreachable"] == 10


def test_story12_cross_zone_on_reroutes_to_the_other_az() -> None:
    cap = Captures()
    dp = Dataplane(story12(cross_zone=True), capture_sink=cap)
    g = gwlb_of(dp, "gwlb-1")
    for t in AZ_A_TARGETS:
        g.set_target_health(t, False)
    for i, f in enumerate(flows_entering(dp, "eni-sec-use1-az1", 10)):
        fwd = dp.send(f.request(), "i-a", float(i), trace=True)
        rev = dp.send(f.reply(), "i-b", float(i) + 0.01, trace=True)
        assert (fwd.verdict, rev.verdict) == ("delivered", "delivered")
        (h,) = gwlb_hops(fwd.hops)
        # Still the AZ-a node (the TGW keeps using the AZ-a ENI), but the target is in AZ-b.
        assert h["az"] == "us-east-1a" and h["target_az"] == "us-east-1b" and not h["fail_open"]
        assert gwlb_hops(rev.hops)[0]["target"] == h["target"]
    assert dp.drops == {}
    # The GENEVE packets from the AZ-a node go to AZ-b target addresses.
    node_ip = g.nodes["us-east-1a"].ip
    hdrs = [geneve.decapsulate_ipv4(fr)[0] for _t, fr in cap.frames["gwlb-1/us-east-1a"]]
    assert {h.dst for h in hdrs if h.src == node_ip} <= {g.by_id["i-fw-b1"].ip, g.by_id["i-fw-b2"].ip}
    assert len(hdrs) == 40  # 10 flows x 2 packets x (to the target, back from it)


def test_appliance_mode_off_splits_the_flow_over_two_nodes() -> None:
    """Without appliance mode the reply enters the other AZ's endpoint; that node has its own flow table, picks
    its own target, and the stateful target drops the SYN-ACK it never saw the SYN for."""
    t = story12()
    t.tgws["tgw-1"].attachments["tgw-attach-sec"].appliance_mode = False  # type: ignore[union-attr]
    dp = Dataplane(t)
    f = parse_flow("tcp 10.0.1.10:40000 > 10.1.2.20:443")
    fwd = dp.send(f.request(), "i-a", 0.0, trace=True)
    rev = dp.send(f.reply(), "i-b", 0.01, trace=True)
    assert fwd.verdict == "delivered"
    assert (rev.verdict, rev.reason) == ("dropped", "gwlb_target_dropped:appliance_no_state")
    (h1,), (h2,) = gwlb_hops(fwd.hops), gwlb_hops(rev.hops)
    assert (h1["az"], h2["az"]) == ("us-east-1a", "us-east-1b")
    assert h2["new_flow"] and h1["target"] != h2["target"]


def test_no_rebalance_vs_rebalance_for_an_established_flow() -> None:
    results = {}
    for policy in ("no_rebalance", "rebalance"):
        dp = Dataplane(story12(**{"target_failover.on_unhealthy": policy, "target_failover.on_deregistration": policy}))
        g = gwlb_of(dp, "gwlb-1")
        f = flows_entering(dp, "eni-sec-use1-az1", 1)[0]
        assert dp.send(f.request(), "i-a", 0.0).verdict == "delivered"
        assert dp.send(f.reply(), "i-b", 0.1).verdict == "delivered"
        first = dp.send(ack(f), "i-a", 0.2, trace=True)
        assert first.verdict == "delivered"
        victim = gwlb_hops(first.hops)[0]["target"]
        g.set_target_health(victim, False)
        r = dp.send(ack(f), "i-a", 1.0, trace=True)
        results[policy] = (r.reason, gwlb_hops(r.hops)[0])
        assert r.verdict == "dropped"
    # no_rebalance: the flow stays on the dead target; rebalance: it moves to a live target in the same AZ,
    # whose firewall never saw the handshake and drops the mid-flow ACK.
    reason, hop = results["no_rebalance"]
    assert reason == "gwlb_target_unreachable" and not hop["rebalanced"]
    reason, hop = results["rebalance"]
    assert reason == "gwlb_target_dropped:appliance_no_state" and hop["rebalanced"]
    assert hop["target_az"] == "us-east-1a"


def test_router_targets_pass_rebalanced_flows() -> None:
    t = story12(**{"target_failover.on_unhealthy": "rebalance", "target_failover.on_deregistration": "rebalance"})
    for iid in ("i-fw-a1", "i-fw-a2"):
        t.vpcs["vpc-sec"].instances[iid].options["inspect"] = "router"
    dp = Dataplane(t)
    f = flows_entering(dp, "eni-sec-use1-az1", 1)[0]
    r = dp.send(f.request(), "i-a", 0.0, trace=True)
    gwlb_of(dp, "gwlb-1").set_target_health(gwlb_hops(r.hops)[0]["target"], False)
    assert dp.send(ack(f), "i-a", 1.0).verdict == "delivered"


def test_instance_failure_before_health_checks_notice() -> None:
    dp = Dataplane(story12())
    f = flows_entering(dp, "eni-sec-use1-az1", 1)[0]
    r = dp.send(f.request(), "i-a", 0.0, trace=True)
    tgt = gwlb_hops(r.hops)[0]["target"]
    dp.set_eni_health(tgt, False)  # the appliance dies; GWLB still believes it healthy
    r2 = dp.send(ack(f), "i-a", 1.0, trace=True)
    assert r2.reason == "gwlb_target_unreachable" and gwlb_hops(r2.hops)[0]["target"] == tgt


def test_three_tuple_stickiness_refused_with_appliance_mode() -> None:
    with pytest.raises(
        ConfigError, match=r"gwlbs\.gwlb-1\.options\.stickiness: 3-tuple is not supported .*tgw-attach-sec"
    ):
        Dataplane(story12(**{"stickiness.type": "source_ip_dest_ip_proto"}))
    t = story12(**{"stickiness.type": "source_ip_dest_ip"})
    t.tgws["tgw-1"].attachments["tgw-attach-sec"].appliance_mode = False  # type: ignore[union-attr]
    dp = Dataplane(t)
    assert gwlb_of(dp, "gwlb-1").attrs.stickiness.value == "2-tuple"


def test_bad_gwlb_options_name_the_field() -> None:
    with pytest.raises(ConfigError, match=r"gwlbs\.gwlb-1\.options\.tcp\.idle_timeout\.seconds: 30 is out of range"):
        Dataplane(story12(**{"tcp.idle_timeout.seconds": 30}))
    t = story12()
    t.vpcs["vpc-sec"].instances["i-fw-a1"].options["inspect"] = "ids"
    with pytest.raises(ConfigError, match=r"instance i-fw-a1\.options\.inspect: 'ids' is not one of"):
        Dataplane(t)


def test_idle_expiry_and_reset_through_the_dataplane() -> None:
    cap = Captures()
    dp = Dataplane(story12(**{"send_tcp_reset.on_idle_timeout.enabled": True}), capture_sink=cap)
    f = flows_entering(dp, "eni-sec-use1-az1", 1)[0]
    assert dp.send(f.request(), "i-a", 0.0).verdict == "delivered"
    assert dp.send(f.reply(), "i-b", 0.1).verdict == "delivered"
    # 400 s later (TCP idle timeout 350 s) the GWLB entry is gone: a mid-flow ACK is dropped and answered.
    r = dp.send(ack(f), "i-a", 400.0, trace=True)
    assert (r.verdict, r.reason) == ("dropped", "gwlb_no_flow_reset")
    box = dp.middlebox("vpce-0a1a1a1a1a1a1a1a1")
    assert isinstance(box, GwlbEndpointBox) and len(box.resets) == 1
    rst = _pkt(box.resets[0])
    assert rst.flags & 0x04 and (rst.sport, rst.dport) == (443, f.sport)
    assert cap.frames["vpce-0a1a1a1a1a1a1a1a1"][-1][1] == box.resets[0]
    # A new SYN opens a new flow.
    assert dp.send(f.request(), "i-a", 401.0).verdict == "delivered"
    assert expire_gwlbs(dp, 401.5) == []
    assert gwlb_of(dp, "gwlb-1").flow_count() == 1


def test_plain_packet_to_a_target_is_dropped() -> None:
    dp = Dataplane(story12())
    box = dp.middlebox("i-fw-a1")
    assert isinstance(box, GwlbTargetAppliance)
    f = parse_flow("tcp 10.0.1.10:40000 > 10.1.2.20:443")
    assert box.process(_pkt(f.request()), box.ctx, 0.0) == "gwlb_target_not_geneve"
    assert box.handle_geneve(f.request(), 0.0) == "geneve_outer_not_geneve"


def test_gwlb_state_is_per_dataplane() -> None:
    a, b = Dataplane(story12()), Dataplane(story12())
    ga, gb = gwlb_of(a, "gwlb-1"), gwlb_of(b, "gwlb-1")
    assert isinstance(ga, GatewayLoadBalancer) and ga is not gb
    ga.set_target_health("i-fw-a1", False)
    assert gb.by_id["i-fw-a1"].healthy


def _need(tool: str) -> str:
    return require_tool(tool)


@pytest.mark.realpeer
def test_tshark_reads_the_story12_hop_captures(tmp_path: Path) -> None:
    tshark = _need("tshark")
    cap = Captures()
    dp = Dataplane(story12(), capture_sink=cap)
    for t in AZ_A_TARGETS:
        gwlb_of(dp, "gwlb-1").set_target_health(t, False)
    for i, f in enumerate(flows_entering(dp, "eni-sec-use1-az1", 3) + flows_entering(dp, "eni-sec-use1-az2", 3)):
        dp.send(f.request(), "i-a", float(i))
        dp.send(f.reply(), "i-b", float(i) + 0.01)
    paths = cap.write(tmp_path)
    outer_src = {}
    for node in ("gwlb-1/us-east-1a", "gwlb-1/us-east-1b"):
        out = (
            subprocess.run(
                [
                    tshark,
                    "-n",
                    "-r",
                    str(paths[node]),
                    "-T",
                    "fields",
                    "-E",
                    "separator=|",
                    "-e",
                    "geneve.option.class",
                    "-e",
                    "ip.src",
                    "-e",
                    "_ws.malformed",
                ],
                capture_output=True,
                text=True,
                check=True,
                timeout=60,
            )
            .stdout.rstrip("\n")
            .splitlines()
        )
        assert len(out) == (6 if node.endswith("a") else 12), node
        srcs = []
        for line in out:
            cls, ips, malformed = line.split("|")
            assert cls == "0x0108,0x0108,0x0108" and malformed == ""
            outer, inner = ips.split(",")
            assert inner in ("10.0.1.10", "10.1.2.20")  # the inner packet is dissected below GENEVE
            srcs.append(outer)
        outer_src[node] = srcs
    # AZ a: the node sent the SYNs and SYN-ACKs to its dead targets and nothing came back.
    assert set(outer_src["gwlb-1/us-east-1a"]) == {"10.3.10.254"}
    # AZ b: every packet went to a target and came back from it.
    assert outer_src["gwlb-1/us-east-1b"].count("10.3.11.254") == 6


def test_endpoint_mtu_8500() -> None:
    dp = Dataplane(story12())
    ok = build("10.0.1.10", "10.1.2.20", 17, 5000, 53, size=8500)
    big = build("10.0.1.10", "10.1.2.20", 17, 5000, 53, size=8501)
    assert dp.send(ok, "i-a", 0.0).verdict == "delivered"
    r = dp.send(big, "i-a", 0.1)
    # The TGW (VPC MTU 8500) drops it first; a GWLB with a smaller MTU setting drops at the endpoint.
    assert r.reason == "mtu_exceeded"
    dp2 = Dataplane(story12(mtu=1500))
    r2 = dp2.send(build("10.0.1.10", "10.1.2.20", 17, 5000, 53, size=1501), "i-a", 0.0)
    assert r2.reason == "gwlb_mtu_exceeded"
    assert dp2.send(build("10.0.1.10", "10.1.2.20", 17, 5000, 53, size=1500), "i-a", 0.0).verdict == "delivered"


def test_cli_replay_writes_geneve_hop_captures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from scapy.contrib.geneve import GENEVE
    from scapy.layers.inet import IP

    from emulator.cli import main

    pcap = tmp_path / "in.pcap"
    w = PcapWriter.open(str(pcap), LINKTYPE_RAW)
    f = parse_flow("tcp 10.0.1.10:40000 > 10.1.2.20:443")
    w.write(0.0, f.request())
    w.write(0.01, f.reply())
    w.close()
    assert main(["tgw", "replay", str(FIXTURE), str(pcap), "--out", str(tmp_path / "out")]) == 0
    capsys.readouterr()
    hops = tmp_path / "out" / "hops"
    geneve_files = [p for p in hops.iterdir() if p.name.startswith("gwlb-1_")]
    assert len(geneve_files) == 1  # the one AZ the flow used
    pk = [IP(fr) for _ts, fr in read_pcap(str(geneve_files[0]))]
    assert len(pk) == 4 and all(p.haslayer(GENEVE) for p in pk)


def _rst_arrivals(dp: Dataplane) -> list[tuple[str, str, int, int, int]]:
    """(verdict, node, sport, dport, seq) of the emitted packets that are RSTs."""
    out = []
    for r in dp.emitted:
        p = r.packet
        assert p is not None and p.flags & 0x04
        (seq,) = struct.unpack_from("!I", p.data, (p.data[0] & 0x0F) * 4 + 4)  # IPv4 (RFC 791), TCP seq
        out.append((r.verdict, r.node, p.sport, p.dport, seq))
    return out


def test_reset_for_a_flow_without_entry_reaches_the_sender() -> None:
    cap = Captures()
    dp = Dataplane(story12(**{"send_tcp_reset.on_idle_timeout.enabled": True}), capture_sink=cap)
    f = flows_entering(dp, "eni-sec-use1-az1", 1)[0]
    assert dp.send(f.request(), "i-a", 0.0).verdict == "delivered"
    r = dp.send(ack(f), "i-a", 400.0)  # the GWLB entry idled out (TCP idle 350 s)
    assert (r.verdict, r.reason) == ("dropped", "gwlb_no_flow_reset")
    # RFC 9293 §3.10.7.1: the RST answering a segment with ACK 5001 carries seq 5001; it goes back through the
    # endpoint's subnet, the TGW and spoke A to i-a, where it is captured.
    assert _rst_arrivals(dp) == [("delivered", "i-a", 443, f.sport, 5001)]
    assert cap.frames["i-a"][-1] == (400.0, dp.emitted[-1].packet.wire())  # type: ignore[union-attr]


def test_resets_on_idle_expiry_reach_both_hosts() -> None:
    dp = Dataplane(story12(**{"send_tcp_reset.on_idle_timeout.enabled": True}))
    f = flows_entering(dp, "eni-sec-use1-az1", 1)[0]
    assert dp.send(f.request(), "i-a", 0.0).verdict == "delivered"  # SYN seq 1000
    assert dp.send(f.reply(), "i-b", 0.1).verdict == "delivered"  # SYN-ACK seq 5000 ack 1001
    assert dp.send(ack(f), "i-a", 0.2).verdict == "delivered"  # ACK seq 1001 ack 5001
    assert dp.expire_flows(100.0) == 0 and not dp.emitted
    dp.expire_flows(351.0)
    # Each host gets a RST at its own RCV.NXT (RFC 9293 §3.10.7.3): i-a acknowledged 5001, i-b 1001.
    assert sorted(_rst_arrivals(dp)) == [
        ("delivered", "i-a", 443, f.sport, 5001),
        ("delivered", "i-b", f.sport, 443, 1001),
    ]
    assert gwlb_of(dp, "gwlb-1").flow_count() == 0
    assert expire_gwlbs(dp, 1000.0) == []


def test_expire_gwlbs_sends_the_resets_it_returns() -> None:
    dp = Dataplane(story12(**{"send_tcp_reset.on_idle_timeout.enabled": True, "reset_on_expiry": "initiator"}))
    f = flows_entering(dp, "eni-sec-use1-az1", 1)[0]
    dp.send(f.request(), "i-a", 0.0)
    dp.send(f.reply(), "i-b", 0.1)
    resets = expire_gwlbs(dp, 400.0)
    assert [r.packet.data for r in dp.emitted] == resets  # type: ignore[union-attr]  (as sent, before the TGW TTL)
    assert [a[:2] for a in _rst_arrivals(dp)] == [("delivered", "i-a")]


def test_gwlb_uses_the_dataplane_node_state() -> None:
    dp = Dataplane(story12())
    f = flows_entering(dp, "eni-sec-use1-az1", 1)[0]
    tgt = gwlb_of(dp, "gwlb-1").target_for(dp_key(f), "us-east-1a", 0.0)
    assert tgt is not None
    dp.set_eni_health(tgt.id, False)
    assert not dp.node_up(tgt.id)
    r = dp.send(f.request(), "i-a", 0.0)
    assert (r.verdict, r.reason) == ("dropped", "gwlb_target_unreachable")


def dp_key(f: Flow) -> int:
    return _pkt(f.request()).key


def test_attachment_ids_are_exact_64_bit_integers() -> None:
    from tgw_dataplane.gwlb import GwlbAttributes, attachment_number

    big = (1 << 64) - 3  # not representable as a double
    a = GwlbAttributes.from_options({"attachment_ids": {"vpce-1": big, "vpce-2": str(big - 1)}})
    assert (attachment_number("vpce-1", a), attachment_number("vpce-2", a)) == (big, big - 1)
    for bad in (1 << 64, -1, "x", True, 1.5):
        with pytest.raises(ConfigError, match=r"gwlb\.options\.attachment_ids\.vpce-1: .* not an integer in"):
            GwlbAttributes.from_options({"attachment_ids": {"vpce-1": bad}})
