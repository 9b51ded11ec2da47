"""scapy's ESP (``scapy.layers.ipsec.SecurityAssociation``) is the independent implementation: it decrypts what we
encrypt and we decrypt what it encrypts, for every suite AWS allows, in UDP and as IP protocol 50, over
payload lengths and sequence numbers chosen by hypothesis."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, UDP
from scapy.layers.ipsec import ESP

from cgw_peer.esp import KIND_ESP, SEQ_MAX, parse_outer

from .helpers import LOCAL, REMOTE, SUITES, ipv4_icmp, sa_pair, scapy_sa

_SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_sizes = st.integers(min_value=0, max_value=1400)
_seqs = st.one_of(st.integers(min_value=1, max_value=SEQ_MAX), st.sampled_from([1, 2, SEQ_MAX - 1, SEQ_MAX]))


@pytest.mark.parametrize("encap", [True, False], ids=["udp4500", "ip50"])
@pytest.mark.parametrize("name", SUITES)
@_SETTINGS
@given(size=_sizes, seq=_seqs)
def test_scapy_decrypts_ours(name: str, encap: bool, size: int, seq: int) -> None:
    out, _ = sa_pair(name, encap=encap)
    out.seq = seq - 1
    inner = ipv4_icmp(size)
    packet = out.encapsulate(inner, 0.0)
    assert packet is not None
    pkt = IP(packet)
    assert pkt[IP].src == LOCAL[0] and pkt[IP].dst == REMOTE[0]
    if encap:
        assert pkt[IP].proto == 17 and pkt[UDP].sport == 4500 and pkt[UDP].dport == 4500
    else:
        assert pkt[IP].proto == 50
    assert pkt[ESP].spi == out.spi and pkt[ESP].seq == seq
    clear = scapy_sa(out).decrypt(pkt)
    assert bytes(clear) == inner


@pytest.mark.parametrize("encap", [True, False], ids=["udp4500", "ip50"])
@pytest.mark.parametrize("name", SUITES)
@_SETTINGS
@given(size=_sizes, seq=_seqs)
def test_we_decrypt_scapys(name: str, encap: bool, size: int, seq: int) -> None:
    out, inn = sa_pair(name, encap=encap)
    inner = ipv4_icmp(size)
    packet = bytes(scapy_sa(out).encrypt(IP(inner), seq_num=seq))
    outer = parse_outer(packet)
    assert outer.kind == KIND_ESP
    assert inn.decrypt(outer.payload, 1.0) == (inner, None)
    assert inn.window is not None and inn.window.top == seq
    # scapy pads the same way we do (RFC 4303 §2.4: 1, 2, 3, ...), so the lengths agree too.
    mine = out.encrypt(inner, 0.0)
    assert mine is not None and len(mine) == len(outer.payload)
