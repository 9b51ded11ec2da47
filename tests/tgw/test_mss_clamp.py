"""MSS clamping (tgw.md §1.11: "the transit gateway enforces MSS clamping"): a TCP SYN or SYN-ACK whose MSS
option exceeds the egress MTU - 40 (IPv4) / - 60 (IPv6) leaves the TGW with that value; the TCP checksum is
updated so that scapy (an independent dissector) finds it correct; the setting ``mss_clamp`` turns it off;
flow plans never let a SYN skip it."""

from __future__ import annotations

import dataclasses
import warnings

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tgw_dataplane.capture import HopCaptures
from tgw_dataplane.dataplane import Dataplane
from tgw_dataplane.model import Topology
from tgw_dataplane.packet import Packet, clamp_mss, parse

from .conftest import topo

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from scapy.layers.inet import IP, TCP
    from scapy.layers.inet6 import IPv6

OPTS = [("MSS", 8961), ("NOP", None), ("WScale", 7), ("SAckOK", b""), ("Timestamp", (1, 0))]


def syn(src: str = "10.0.1.10", dst: str = "10.1.2.20", options: list | None = None, flags: str = "S") -> bytes:  # type: ignore[type-arg]
    ip = IPv6(src=src, dst=dst) if ":" in src else IP(src=src, dst=dst)
    sport, dport = (443, 40000) if "A" in flags else (40000, 443)  # a SYN-ACK answers the client's SYN
    return bytes(ip / TCP(sport=sport, dport=dport, flags=flags, options=OPTS if options is None else options))


def mss_of(data: bytes) -> int | None:
    tcp = (IPv6 if data[0] >> 4 == 6 else IP)(data)[TCP]
    return dict((k, v) for k, v in tcp.options).get("MSS")


def checksum_ok(data: bytes) -> bool:
    pkt = (IPv6 if data[0] >> 4 == 6 else IP)(data)
    got = pkt[TCP].chksum
    del pkt[TCP].chksum
    again = (IPv6 if data[0] >> 4 == 6 else IP)(bytes(pkt))
    return bool(again[TCP].chksum == got)


def parsed(data: bytes) -> Packet:
    p = parse(data)
    assert isinstance(p, Packet)
    return p


@pytest.mark.parametrize(
    ("options", "limit", "want"),
    [
        (OPTS, 8460, 8460),
        ([("NOP", None), ("MSS", 9000)], 1460, 1460),  # the value at an odd offset: two checksum words
        ([("NOP", None), ("NOP", None), ("NOP", None), ("MSS", 65535)], 1, 1),
        ([("MSS", 1400)], 1460, 1400),  # already small enough: untouched
        ([("WScale", 7), ("SAckOK", b"")], 1460, None),  # no MSS option
    ],
)
def test_clamp_against_scapy(options: list, limit: int, want: int | None) -> None:  # type: ignore[type-arg]
    data = syn(options=options)
    p = parsed(data)
    before = mss_of(data)
    got = clamp_mss(p, limit)
    assert mss_of(p.data) == (want if want is not None else None)
    assert checksum_ok(p.data)
    if before is not None and before > limit:
        assert got == (before, limit) and len(p.data) == len(data)
        # only the MSS value and the checksum changed
        diff = [i for i in range(len(data)) if data[i] != p.data[i]]
        assert set(diff) <= {36, 37} | set(range(20 + 20, len(data)))
    else:
        assert got is None and p.data == data


def test_clamp_ipv6_and_syn_ack() -> None:
    p = parsed(syn("2001:db8::1", "2001:db8::2", flags="SA"))
    assert clamp_mss(p, 8440) == (8961, 8440)
    assert mss_of(p.data) == 8440 and checksum_ok(p.data)


@given(st.integers(0, 65535), st.integers(1, 65535), st.integers(0, 3))
def test_clamp_keeps_the_checksum_correct(mss: int, limit: int, nops: int) -> None:
    data = syn(options=[("NOP", None)] * nops + [("MSS", mss), ("SAckOK", b"")])
    p = parsed(data)
    clamp_mss(p, limit)
    assert mss_of(p.data) == min(mss, limit) and checksum_ok(p.data)


def test_malformed_options_are_left_alone() -> None:
    data = bytearray(syn(options=[("MSS", 9000)]))
    data[41] = 9  # the MSS option's length now runs past the header
    p = parsed(bytes(data))
    assert clamp_mss(p, 1460) is None and p.data == bytes(data)


def test_tgw_clamps_syn_and_syn_ack_to_the_vpc_mtu(seed: Topology) -> None:
    seed.tgws["tgw-1"].attachments["tgw-attach-c"].appliance_mode = True  # type: ignore[union-attr]
    cap = HopCaptures()
    dp = Dataplane(seed, capture_sink=cap)
    r = dp.send(syn(), "i-a", 0.0, trace=True)
    assert r.verdict == "delivered" and r.packet is not None
    assert mss_of(r.packet.wire()) == 8460 and checksum_ok(r.packet.wire())
    tgw_hops = [h for h in r.hops or [] if h["kind"] == "tgw"]
    assert tgw_hops[0]["mss_clamped"] == [8961, 8460] and "mss_clamped" not in tgw_hops[1]
    assert dp.mss_clamped == 1
    # captures: what A sent still has 8961, what B received has 8460
    assert mss_of(cap.frames("i-a")[0][1]) == 8961
    assert mss_of(cap.frames("i-b")[-1][1]) == 8460
    back = dp.send(syn("10.1.2.20", "10.0.1.10", flags="SA"), "i-b", 0.01)
    assert back.verdict == "delivered" and back.packet is not None and mss_of(back.packet.wire()) == 8460
    # a SYN small enough passes untouched
    small = syn(options=[("MSS", 1460)])
    r2 = dp.send(small, "i-a", 0.02)
    assert r2.packet is not None and r2.packet.data == small and dp.mss_clamped == 2


def test_flow_plans_do_not_let_a_syn_skip_the_clamp(seed: Topology) -> None:
    dp = Dataplane(seed)
    for t in range(5):  # the SYN retransmitted: the later copies find the flow's plan, and still get clamped
        r = dp.send(syn(), "i-a", float(t))
        assert r.packet is not None and mss_of(r.packet.wire()) == 8460
    assert dp.mss_clamped == 5


def test_vpn_egress_clamps_to_1460() -> None:
    dp = Dataplane(topo("story_blackhole_mtu_vpn"))
    r = dp.send(syn(dst="192.168.100.1"), "i-a", 0.0)
    assert (r.verdict, r.node) == ("delivered", "tgw-attach-vpn")
    assert r.packet is not None and mss_of(r.packet.wire()) == 1460


def test_setting_off(seed: Topology) -> None:
    off = dataclasses.replace(seed, settings=dataclasses.replace(seed.settings, mss_clamp=False))
    dp = Dataplane(off)
    r = dp.send(syn(), "i-a", 0.0)
    assert r.packet is not None and mss_of(r.packet.wire()) == 8961 and dp.mss_clamped == 0
