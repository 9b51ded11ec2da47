"""scapy's ISAKMP layer as an independent dissector for our IKEv1 plaintext payload chains, both ways:
our bytes dissect in scapy to the same fields, and scapy-built payloads parse with our codec."""

from __future__ import annotations

import socket
import warnings
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from scapy.layers import isakmp as sk

from cgw_peer.ikev1.proposals import P1Suite, P2Suite, build_p1_sa, build_p2_sa
from cgw_peer.wire.constants import PayloadType
from cgw_peer.wire.header import IsakmpHeader, encode_header
from cgw_peer.wire.payloads import (
    Attribute,
    DeletePayload,
    HashPayload,
    IdPayload,
    KePayload,
    NoncePayload,
    NotifyPayload,
    Payload,
    SaPayload,
    VendorIdPayload,
    encode_chain,
    parse_chain,
)


def _message(payloads: list[Payload], exch: int = 2) -> bytes:
    np, chain = encode_chain(payloads)
    return encode_header(IsakmpHeader(b"\x01" * 8, b"\x02" * 8, np, 0x10, exch, 0, 0x01020304, 28 + len(chain))) + chain


def _layers(pkt: Any) -> list[Any]:
    out = []
    p = pkt.payload
    while p is not None and p.__class__.__name__ != "NoPayload":
        out.append(p)
        p = p.payload
    return out


def _scapy_attrs(pairs: list[tuple[Any, Any]], esp: bool) -> list[tuple[int, int]]:
    table = sk.IPSECAttributeTypes if esp else sk.ISAKMPAttributeTypes
    out = []
    for name, val in pairs:
        num, enc, _tlv = table.get(name, (name, {}, 0))
        out.append((int(num), int(enc.get(val, val))))
    return out


def _check_sa(ours: SaPayload, theirs: Any) -> None:
    assert theirs.doi == ours.doi and theirs.situation == ours.situation
    props = []
    p = theirs.prop
    while p is not None and p.__class__.__name__ == "ISAKMP_payload_Proposal":
        props.append(p)
        p = p.payload if p.payload.__class__.__name__ == "ISAKMP_payload_Proposal" else None
    assert len(props) == len(ours.proposals)
    for op, tp in zip(ours.proposals, props, strict=True):
        assert (tp.proposal, tp.proto, tp.SPIsize, tp.trans_nb, bytes(tp.SPI)) == (
            op.number,
            op.protocol,
            len(op.spi),
            len(op.transforms),
            op.spi,
        )
        t = tp.trans
        for ot in op.transforms:
            assert (t.transform_count, t.transform_id) == (ot.number, ot.transform_id)
            assert _scapy_attrs(t.transforms, op.protocol == 3) == [(a.type, a.value) for a in ot.attributes]
            t = t.payload


_p1 = st.builds(
    P1Suite,
    st.sampled_from([128, 256]),
    st.sampled_from(["sha1", "sha256", "sha384", "sha512"]),
    st.sampled_from([2, 14, 15, 19, 20]),
)
_p2 = st.one_of(
    st.builds(
        P2Suite,
        st.just("cbc"),
        st.sampled_from([128, 256]),
        st.sampled_from(["sha1", "sha256", "sha512"]),
        st.sampled_from([None, 2, 14]),
    ),
    st.builds(P2Suite, st.just("gcm"), st.sampled_from([128, 256]), st.none(), st.sampled_from([None, 14])),
)


@settings(max_examples=60, deadline=None)
@given(
    p1=st.lists(_p1, min_size=1, max_size=4),
    life=st.integers(900, 86400),
    ke=st.binary(min_size=1, max_size=64),
    nonce=st.binary(min_size=8, max_size=64),
    vid=st.binary(min_size=1, max_size=20),
)
def test_main_mode_chain_dissects_in_scapy(p1: list[P1Suite], life: int, ke: bytes, nonce: bytes, vid: bytes) -> None:
    sa = build_p1_sa(p1, life)
    msg = _message([sa, KePayload(ke), NoncePayload(nonce), VendorIdPayload(vid)])
    pkt = sk.ISAKMP(msg)
    assert (pkt.init_cookie, pkt.resp_cookie, pkt.version, pkt.exch_type, pkt.id, pkt.length) == (
        b"\x01" * 8,
        b"\x02" * 8,
        0x10,
        2,
        0x01020304,
        len(msg),
    )
    layers = _layers(pkt)
    assert [type(x).__name__ for x in layers][:1] == ["ISAKMP_payload_SA"]
    _check_sa(sa, layers[0])
    rest = [
        x
        for x in layers
        if type(x).__name__ in ("ISAKMP_payload_KE", "ISAKMP_payload_Nonce", "ISAKMP_payload_VendorID")
    ]
    assert [bytes(rest[0].ke), bytes(rest[1].nonce), bytes(rest[2].VendorID)] == [ke, nonce, vid]


@settings(max_examples=60, deadline=None)
@given(
    p2=st.lists(_p2, min_size=1, max_size=3),
    spi=st.binary(min_size=4, max_size=4),
    life=st.integers(900, 3600),
    h=st.binary(min_size=20, max_size=64),
    idt=st.one_of(
        st.tuples(st.just(1), st.integers(0, 255), st.integers(0, 65535), st.binary(min_size=4, max_size=4)),
        st.tuples(st.sampled_from([2, 4, 5, 6]), st.integers(0, 255), st.integers(0, 65535), st.binary(max_size=32)),
    ),
)
def test_quick_mode_chain_dissects_in_scapy(
    p2: list[P2Suite], spi: bytes, life: int, h: bytes, idt: tuple[int, int, int, bytes]
) -> None:
    sa = build_p2_sa(p2, spi, life, 1)
    idp = IdPayload(*idt)
    msg = _message([HashPayload(h), sa, idp], exch=32)
    layers = _layers(sk.ISAKMP(msg))
    assert bytes(layers[0].hash) == h
    _check_sa(sa, layers[1])
    i = layers[2]
    ident = socket.inet_aton(i.IdentData) if isinstance(i.IdentData, str) else bytes(i.IdentData)
    assert (i.IDtype, i.ProtoID, i.Port, ident) == idt


@settings(max_examples=80, deadline=None)
@given(
    ntype=st.sampled_from([14, 24578, 36136, 36137]),
    spi=st.binary(min_size=16, max_size=16),
    seq=st.binary(min_size=4, max_size=4),
    dspis=st.lists(st.binary(min_size=4, max_size=4), min_size=1, max_size=5),
)
def test_informational_chain_dissects_in_scapy(ntype: int, spi: bytes, seq: bytes, dspis: list[bytes]) -> None:
    n = NotifyPayload(ntype, 1, spi, seq)
    d = DeletePayload(3, 4, tuple(dspis))
    layers = _layers(sk.ISAKMP(_message([HashPayload(b"h" * 20), n, d], exch=5)))
    ln, ld = layers[1], layers[2]
    assert (ln.doi, ln.proto, ln.SPIsize, ln.notify_msg_type, bytes(ln.SPI), bytes(ln.notify_data)) == (
        1,
        1,
        16,
        ntype,
        spi,
        seq,
    )
    assert (ld.doi, ld.proto, ld.SPIsize, ld.SPIcount, [bytes(s) for s in ld.SPIs]) == (1, 3, 4, len(dspis), dspis)


@settings(max_examples=60, deadline=None)
@given(
    seq=st.integers(0, 2**32 - 1),
    spi=st.binary(min_size=16, max_size=16),
    nonce=st.binary(min_size=8, max_size=64),
    ke=st.binary(min_size=1, max_size=64),
    life=st.integers(1, 2**32 - 1),
)
def test_scapy_built_payloads_parse_with_ours(seq: int, spi: bytes, nonce: bytes, ke: bytes, life: int) -> None:
    trans = sk.ISAKMP_payload_Transform(
        transform_count=1,
        transform_id=1,
        transforms=[
            ("Encryption", "AES-CBC"),
            ("KeyLength", 256),
            ("Hash", "SHA2-256"),
            ("Authentication", "PSK"),
            ("GroupDesc", "2048MODPgr"),
            ("LifeType", "Seconds"),
            ("LifeDuration", life),
        ],
    )
    pkt = (
        sk.ISAKMP(init_cookie=b"\x01" * 8, resp_cookie=b"\x02" * 8, exch_type=2, next_payload=1)
        / sk.ISAKMP_payload_SA(prop=sk.ISAKMP_payload_Proposal(proto=1, trans_nb=1, trans=trans))
        / sk.ISAKMP_payload_KE(ke=ke)
        / sk.ISAKMP_payload_Nonce(nonce=nonce)
        / sk.ISAKMP_payload_Notify(doi=1, proto=1, notify_msg_type=36136, SPI=spi, notify_data=seq.to_bytes(4, "big"))
    )
    raw = bytes(pkt)
    got = parse_chain(raw[16], raw[28:])
    sa, kep, np_, n = got
    assert isinstance(sa, SaPayload) and isinstance(kep, KePayload) and isinstance(np_, NoncePayload)
    t = sa.proposals[0].transforms[0]
    life_attr = Attribute(12, life) if life <= 0xFFFF else Attribute(12, life, (life.bit_length() + 7) // 8)
    assert t.attributes == (
        Attribute(1, 7),
        Attribute(14, 256),
        Attribute(2, 4),
        Attribute(3, 1),
        Attribute(4, 14),
        Attribute(11, 1),
        life_attr,
    )
    assert (kep.data, np_.data) == (ke, nonce)
    assert n == NotifyPayload(36136, 1, spi, seq.to_bytes(4, "big"), 1)
    assert raw[16] == PayloadType.SA
