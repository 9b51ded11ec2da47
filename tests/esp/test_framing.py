"""Outer headers: scapy (an independent IP/UDP implementation) agrees on every field and checksum of what
:class:`OuterFramer` builds, and :func:`parse_outer` sorts ESP, IKE (port 500, or 4500 with the non-ESP marker),
NAT-keepalives and malformed packets as RFC 3948 §2.2-2.3 says."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.ipsec import ESP

from cgw_peer.esp import (
    KIND_ESP,
    KIND_IKE,
    KIND_KEEPALIVE,
    KIND_MALFORMED,
    KIND_OTHER,
    OuterFramer,
    frame_esp,
    parse_outer,
)
from emulator.pcap import udp_frame

_ESP = b"\xc0\xde\x00\x01\x00\x00\x00\x07" + bytes(range(60))


@settings(max_examples=100, deadline=None)
@given(
    n=st.integers(min_value=8, max_value=1500),
    ident=st.integers(min_value=0, max_value=0xFFFF),
    encap=st.booleans(),
    df=st.booleans(),
    ttl=st.integers(min_value=1, max_value=255),
)
def test_ipv4_headers_match_scapy(n: int, ident: int, encap: bool, df: bool, ttl: int) -> None:
    esp = (_ESP * 30)[:n]
    pkt = OuterFramer("198.51.100.7", "203.0.113.9", encap=encap, sport=4500, dport=61234, ttl=ttl, df=df).frame(
        esp, ident
    )
    ip = IP(pkt)
    assert ip.version == 4 and ip.ihl == 5 and ip.len == len(pkt) and ip.id == ident and ip.ttl == ttl
    assert ip.flags == ("DF" if df else 0) and ip.frag == 0
    assert ip.src == "198.51.100.7" and ip.dst == "203.0.113.9"
    fresh = IP(raw_without_checksum(pkt))
    del fresh.chksum  # scapy computes it afresh when building
    assert IP(bytes(fresh)).chksum == ip.chksum
    if encap:
        assert ip.proto == 17 and ip[UDP].sport == 4500 and ip[UDP].dport == 61234
        assert ip[UDP].len == 8 + n and ip[UDP].chksum == 0  # RFC 3948 §2.1: zero over IPv4
        assert bytes(ip[UDP].payload) == esp
    else:
        assert ip.proto == 50 and bytes(ip.payload) == esp
    assert parse_outer(pkt).payload == esp and parse_outer(pkt).kind == KIND_ESP


def raw_without_checksum(pkt: bytes) -> bytes:
    """``pkt`` with its IPv4 checksum field zeroed, so that scapy computes the checksum afresh."""
    return pkt[:10] + b"\0\0" + pkt[12:]


def test_ipv4_checksum_is_what_scapy_computes() -> None:
    for n in (8, 9, 100, 1401):
        pkt = frame_esp((_ESP * 30)[:n], "10.1.2.3", "10.250.0.1", encap=n % 2 == 0, ident=n)
        fresh = IP(raw_without_checksum(pkt))
        del fresh.chksum
        assert IP(bytes(fresh)).chksum == int.from_bytes(pkt[10:12], "big")


def test_ipv6_outer() -> None:
    for encap in (True, False):
        for n in (8, 9, 333):
            esp = (_ESP * 10)[:n]
            pkt = frame_esp(esp, "2001:db8::1", "2001:db8::2", encap=encap)
            ip6 = IPv6(pkt)
            assert ip6.plen == len(pkt) - 40 and ip6.src == "2001:db8::1"
            if encap:
                udp = ip6[UDP]
                given_csum = udp.chksum
                del udp.chksum
                assert IPv6(bytes(ip6))[UDP].chksum == given_csum != 0
                assert bytes(IPv6(pkt)[UDP].payload) == esp
            else:
                assert ip6.nh == 50 and bytes(ip6.payload) == esp
            outer = parse_outer(pkt)
            assert outer.kind == KIND_ESP and outer.payload == esp and len(outer.src) == 16


def test_parse_outer_kinds() -> None:
    ike = b"\x01" * 8 + b"\x00" * 8 + b"\x2e\x20\x22\x08" + b"\x00" * 8
    marked = udp_frame("198.51.100.1", 4500, "203.0.113.1", 4500, b"\0\0\0\0" + ike)
    assert parse_outer(marked).kind == KIND_IKE and parse_outer(marked).payload == b"\0\0\0\0" + ike
    assert parse_outer(udp_frame("198.51.100.1", 500, "203.0.113.1", 500, ike)).kind == KIND_IKE
    keepalive = udp_frame("198.51.100.1", 4500, "203.0.113.1", 4500, b"\xff")
    assert parse_outer(keepalive).kind == KIND_KEEPALIVE
    # A NAT rewrote the source port; the destination is still 4500.
    natted = udp_frame("198.51.100.1", 31337, "203.0.113.1", 4500, _ESP)
    o = parse_outer(natted)
    assert (o.kind, o.sport, o.dport, o.payload) == (KIND_ESP, 31337, 4500, _ESP)
    assert parse_outer(udp_frame("198.51.100.1", 53, "203.0.113.1", 53, b"dns")).kind == KIND_OTHER
    # scapy's own ESP-in-IP frame.
    assert parse_outer(bytes(IP(src="1.2.3.4", dst="5.6.7.8") / ESP(spi=7, seq=1, data=b"x" * 20))).kind == KIND_ESP
    # Custom ports for tests on loopback.
    custom = udp_frame("127.0.0.1", 4501, "127.0.0.2", 4502, _ESP)
    assert parse_outer(custom).kind == KIND_OTHER and parse_outer(custom, nat_t_port=4502).kind == KIND_ESP


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=80))
def test_parse_outer_never_raises(data: bytes) -> None:
    assert parse_outer(data).kind in (KIND_ESP, KIND_IKE, KIND_KEEPALIVE, KIND_OTHER, KIND_MALFORMED)
    assert parse_outer(b"\x45" + data).kind in (KIND_ESP, KIND_IKE, KIND_KEEPALIVE, KIND_OTHER, KIND_MALFORMED)


def test_parse_outer_rejects_lies() -> None:
    pkt = frame_esp(_ESP, "10.0.0.1", "10.0.0.2", encap=True)
    assert parse_outer(pkt[:-1]).kind == KIND_MALFORMED  # total length beyond the packet
    assert parse_outer(pkt[:24]).kind == KIND_MALFORMED  # UDP header cut
    assert parse_outer(b"\x46" + pkt[1:]).kind in (KIND_ESP, KIND_MALFORMED)
    assert parse_outer(b"\x75" + pkt[1:]).kind == KIND_MALFORMED  # version 7
