"""The struct parser and the packet builder against scapy's dissector (an independent oracle)."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6

from tgw_dataplane.craft import build
from tgw_dataplane.packet import PROTO_ICMP, PROTO_TCP, PROTO_UDP, Packet, flow_key, parse

addr4 = st.integers(0, 2**32 - 1).map(lambda a: str(ipaddress.IPv4Address(a)))
addr6 = st.integers(0, 2**128 - 1).map(lambda a: str(ipaddress.IPv6Address(a)))
port = st.integers(0, 65535)


@settings(max_examples=60, deadline=None)
@given(
    st.one_of(st.tuples(addr4, addr4), st.tuples(addr6, addr6)),
    st.sampled_from([PROTO_TCP, PROTO_UDP, PROTO_ICMP]),
    port,
    port,
    st.integers(0, 255),
    st.integers(1, 255),
    st.binary(max_size=64),
)
def test_parse_matches_scapy(
    ends: tuple[str, str], proto: int, sp: int, dp: int, flags: int, ttl: int, pl: bytes
) -> None:
    src, dst = ends
    v6 = ":" in src
    if proto == PROTO_ICMP and v6:
        proto = 58
    data = build(src, dst, proto, sp, dp, flags=flags, ttl=ttl, payload=pl)
    p = parse(data)
    assert isinstance(p, Packet)
    s = IPv6(data) if v6 else IP(data)
    fam = ipaddress.IPv6Address if v6 else ipaddress.IPv4Address
    assert fam(p.src) == ipaddress.ip_address(s.src)
    assert fam(p.dst) == ipaddress.ip_address(s.dst)
    assert p.ttl == (s.hlim if v6 else s.ttl)
    assert p.length == len(data)
    if proto == PROTO_TCP:
        assert (p.sport, p.dport, p.flags) == (s[TCP].sport, s[TCP].dport, int(s[TCP].flags))
        # our checksum equals the one scapy computes for the same segment
        rebuilt = (IPv6 if v6 else IP)(bytes(s))
        del rebuilt[TCP].chksum
        assert (IPv6 if v6 else IP)(bytes(rebuilt))[TCP].chksum == s[TCP].chksum
    elif proto == PROTO_UDP:
        assert (p.sport, p.dport) == (s[UDP].sport, s[UDP].dport)
        rebuilt = (IPv6 if v6 else IP)(bytes(s))
        del rebuilt[UDP].chksum
        assert (IPv6 if v6 else IP)(bytes(rebuilt))[UDP].chksum == s[UDP].chksum
    elif not v6:
        assert p.icmp_type == s[ICMP].type
    if not v6:
        rebuilt = IP(bytes(s))
        del rebuilt.chksum
        assert IP(bytes(rebuilt)).chksum == s.chksum
    assert p.key == flow_key(6 if v6 else 4, p.proto, p.src, p.dst, p.sport, p.dport)


@settings(max_examples=40, deadline=None)
@given(addr4, addr4, port, port, st.integers(2, 255))
def test_ttl_rewrite_keeps_a_valid_ipv4_checksum(src: str, dst: str, sp: int, dp: int, ttl: int) -> None:
    p = parse(build(src, dst, PROTO_TCP, sp, dp, ttl=ttl))
    assert isinstance(p, Packet)
    p.ttl -= 1
    out = IP(p.wire())
    assert out.ttl == ttl - 1
    again = IP(p.wire())
    del again.chksum
    assert IP(bytes(again)).chksum == out.chksum  # RFC 1624 incremental update == full recomputation
