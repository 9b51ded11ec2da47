"""IKEv2 codec: round trips (hypothesis), strict rejection of malformed input with DecodeError only, and
scapy's IKEv2 dissector as an independent reading of our plaintext messages."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cgw_peer.errors import DecodeError
from cgw_peer.ikev2 import codec
from cgw_peer.ikev2.codec import DeletePayload, Header, NotifyPayload, Proposal, Transform, Ts
from cgw_peer.ikev2.constants import Exchange, Payload

transforms = st.builds(
    Transform,
    st.integers(1, 5),
    st.integers(0, 0xFFFF),
    st.one_of(st.none(), st.sampled_from([128, 192, 256])),
)
proposals = st.lists(
    st.builds(
        Proposal,
        st.integers(1, 255),
        st.sampled_from([1, 3]),
        st.sampled_from([b"", b"\x01\x02\x03\x04", b"12345678"]),
        st.lists(transforms, min_size=1, max_size=8),
    ),
    min_size=1,
    max_size=4,
)
v4 = st.integers(0, 2**32 - 1)
selectors = st.lists(
    st.tuples(v4, v4, st.integers(0, 255), st.integers(0, 65535), st.integers(0, 65535)).map(
        lambda t: Ts(4, min(t[0], t[1]), max(t[0], t[1]), t[2], min(t[3], t[4]), max(t[3], t[4]))
    ),
    min_size=1,
    max_size=5,
)


@given(proposals)
def test_sa_round_trip(props: list[Proposal]) -> None:
    got = codec.parse_sa(codec.encode_sa(props))
    assert [(p.num, p.protocol, p.spi, p.transforms) for p in got] == [
        (p.num, p.protocol, p.spi, p.transforms) for p in props
    ]


@given(selectors)
def test_ts_round_trip(ts: list[Ts]) -> None:
    assert codec.parse_ts(codec.encode_ts(ts)) == ts


@given(st.integers(0, 0xFFFF), st.binary(max_size=64), st.integers(0, 255), st.binary(max_size=16))
def test_notify_round_trip(ntype: int, data: bytes, proto: int, spi: bytes) -> None:
    n = NotifyPayload(ntype, data, proto, spi)
    assert codec.parse_notify(n.encode()) == n


@given(st.lists(st.binary(min_size=4, max_size=4), max_size=10))
def test_delete_round_trip(spis: list[bytes]) -> None:
    d = DeletePayload(3, tuple(spis)) if spis else DeletePayload(1)
    assert codec.parse_delete(d.encode()) == d


@settings(max_examples=400)
@given(st.binary(max_size=200), st.sampled_from([Payload.SA, Payload.TSI, Payload.NOTIFY, Payload.DELETE]))
def test_parsers_raise_only_decode_error(data: bytes, kind: int) -> None:
    parse = {
        Payload.SA: codec.parse_sa,
        Payload.TSI: codec.parse_ts,
        Payload.NOTIFY: codec.parse_notify,
        Payload.DELETE: codec.parse_delete,
    }[Payload(kind)]
    with contextlib.suppress(DecodeError):
        parse(data)
    with contextlib.suppress(DecodeError):
        codec.parse_chain(data[0] if data else 0, data, 1)
    with contextlib.suppress(DecodeError):
        codec.parse_header(data)


def test_unknown_critical_payload_rejected() -> None:
    # One unknown payload type (200) with the critical bit: RFC 7296 §2.5 says reject.
    body = bytes([0, 0x80, 0, 8]) + b"abcd"
    with pytest.raises(DecodeError) as e:
        codec.parse_chain(200, body)
    assert e.value.reason == "unsupported_critical_payload"
    # Not critical: skipped over (kept as raw).
    assert [p.ptype for p in codec.parse_chain(200, bytes([0, 0, 0, 8]) + b"abcd")] == [200]


def test_scapy_reads_our_ike_sa_init() -> None:
    """scapy's contrib IKEv2 dissector (independent code) reads the header, SA, KE, Nonce and Notify payloads
    of the IKE_SA_INIT request our peer builds."""
    pytest.importorskip("scapy")
    from scapy.contrib.ikev2 import IKEv2  # type: ignore[import-untyped,unused-ignore]

    from .helpers import pair

    _, cgw = pair()
    (tx,) = cgw.start(0.0)[:1]
    data = tx.data  # type: ignore[union-attr]
    pkt = IKEv2(data)
    assert pkt.init_SPI == data[:8] and pkt.exch_type == Exchange.IKE_SA_INIT and pkt.id == 0
    assert pkt.length == len(data)
    names = []
    p = pkt.payload
    while p is not None and p.name != "NoPayload":
        names.append(p.name)
        p = p.payload
    assert names[:3] == ["IKEv2 SA", "IKEv2 Key Exchange", "IKEv2 Nonce"]
    assert names.count("IKEv2 Notify") == 2
    hdr = codec.parse_header(data)
    assert isinstance(hdr, Header) and hdr.next_payload == Payload.SA
