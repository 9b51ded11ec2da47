"""IKEv1 codecs: round trips, verify() length rules, the RFC 3706 worked example, strict errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cgw_peer.errors import DecodeError
from cgw_peer.wire.constants import NotifyType, PayloadType, ProtocolId
from cgw_peer.wire.header import IsakmpHeader, encode_header, parse_header
from cgw_peer.wire.payloads import (
    Attribute,
    DeletePayload,
    GenericPayload,
    HashPayload,
    IdPayload,
    KePayload,
    NatDPayload,
    NoncePayload,
    NotifyPayload,
    Payload,
    Proposal,
    SaPayload,
    Transform,
    VendorIdPayload,
    dpd_notify,
    encode_chain,
    parse_chain,
    split_chain,
)

# ike-dpd.md §2.2: CKY-I=0102030405060708, CKY-R=1112131415161718, seq=0x00001234.
WORKED_R_U_THERE = bytes.fromhex(
    "00 00 00 20 00 00 00 01 01 10 8D 28 01 02 03 04 05 06 07 08 11 12 13 14 15 16 17 18 00 00 12 34".replace(" ", "")
)


def test_worked_r_u_there_byte_for_byte() -> None:
    got = dpd_notify(NotifyType.R_U_THERE, bytes.fromhex("0102030405060708"), bytes.fromhex("1112131415161718"), 0x1234)
    assert got == WORKED_R_U_THERE
    (p,) = parse_chain(PayloadType.NOTIFY, got)
    assert p == NotifyPayload(36136, 1, bytes.fromhex("01020304050607081112131415161718"), b"\x00\x00\x12\x34", 1)
    # The generic encoder gives the same bytes as the fast path.
    assert encode_chain([p]) == (PayloadType.NOTIFY, WORKED_R_U_THERE)


def test_ack_differs_only_in_type() -> None:
    ack = dpd_notify(NotifyType.R_U_THERE_ACK, bytes(8), bytes(8), 7)
    assert ack[10:12] == b"\x8d\x29"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (NotifyPayload(NotifyType.R_U_THERE, 1, bytes(8), b"\x00\x00\x00\x01"), "bad_dpd_spi_size"),
        (NotifyPayload(NotifyType.R_U_THERE, 1, bytes(16), b"\x00\x00\x01"), "bad_dpd_data_length"),
        (NotifyPayload(NotifyType.R_U_THERE_ACK, 1, bytes(16), b"\x00\x00\x00\x00\x01"), "bad_dpd_data_length"),
        (NotifyPayload(NotifyType.INITIAL_CONTACT, 1, bytes(5)), "bad_notify_spi_size"),
        (NotifyPayload(NotifyType.NO_PROPOSAL_CHOSEN, 3, bytes(3)), "bad_notify_spi_size"),
        (DeletePayload(ProtocolId.ISAKMP, 8, (bytes(8),)), "bad_delete_spi_size"),
        (DeletePayload(ProtocolId.ESP, 16, (bytes(16),)), "bad_delete_spi_size"),
        (DeletePayload(ProtocolId.ESP, 4, ()), "empty_delete"),
        (NoncePayload(bytes(7)), "bad_nonce_length"),
        (NoncePayload(bytes(257)), "bad_nonce_length"),
        (KePayload(b""), "empty_ke"),
        (HashPayload(b""), "empty_hash"),
    ],
)
def test_verify_rules(payload: Payload, reason: str) -> None:
    _np, chain = encode_chain([payload])
    with pytest.raises(DecodeError) as e:
        parse_chain(_np, chain)
    assert e.value.reason == reason


def test_length_rules_of_the_chain() -> None:
    np, chain = encode_chain([NoncePayload(bytes(16)), VendorIdPayload(b"x")])
    with pytest.raises(DecodeError, match="trailing_bytes"):
        parse_chain(np, chain + b"\x00")
    assert len(parse_chain(np, chain + bytes(15), allow_trailing=True)) == 2
    raw, end = split_chain(np, chain + bytes(3), allow_trailing=True)
    assert end == len(chain) and [t for t, _ in raw] == [PayloadType.NONCE, PayloadType.VENDOR_ID]
    bad = bytearray(chain)
    bad[3] = 3  # payload length < 4
    with pytest.raises(DecodeError, match="bad_payload_length"):
        parse_chain(np, bytes(bad))
    with pytest.raises(DecodeError, match="truncated_payload"):
        parse_chain(np, chain[:2])


def test_header_rules() -> None:
    h = IsakmpHeader(bytes(range(8)), bytes(8), 1, 0x10, 2, 0, 0, 28)
    b = encode_header(h)
    assert parse_header(b) == h
    with pytest.raises(DecodeError, match="length_mismatch"):
        parse_header(b + b"\x00")
    with pytest.raises(DecodeError, match="truncated_header"):
        parse_header(b[:27])
    with pytest.raises(DecodeError, match="bad_version"):
        parse_header(b[:17] + b"\x20" + b[18:])


# -- hypothesis round trips ------------------------------------------------------------------------------------

_attr = st.one_of(
    st.builds(Attribute, st.integers(1, 0x7FFF), st.integers(0, 0xFFFF)),
    st.integers(1, 8).flatmap(
        lambda n: st.builds(Attribute, st.integers(1, 0x7FFF), st.integers(0, 256**n - 1), st.just(n))
    ),
)
_transform = st.builds(Transform, st.integers(0, 255), st.integers(0, 255), st.tuples(_attr, _attr) | st.tuples())
_proposal = st.one_of(
    st.builds(
        Proposal,
        st.integers(0, 255),
        st.just(1),
        st.sampled_from([b"", bytes(8)]),
        st.lists(_transform, min_size=1, max_size=3).map(tuple),
    ),
    st.builds(
        Proposal,
        st.integers(0, 255),
        st.just(3),
        st.binary(min_size=4, max_size=4),
        st.lists(_transform, min_size=1, max_size=3).map(tuple),
    ),
)
_data = st.binary(min_size=1, max_size=80)
_payload = st.one_of(
    st.builds(SaPayload, st.lists(_proposal, min_size=1, max_size=3).map(tuple), st.just(1), st.integers(0, 2**32 - 1)),
    st.builds(KePayload, _data),
    st.builds(IdPayload, st.integers(0, 255), st.integers(0, 255), st.integers(0, 65535), st.binary(max_size=20)),
    st.builds(HashPayload, _data),
    st.builds(NoncePayload, st.binary(min_size=8, max_size=256)),
    st.builds(
        NotifyPayload,
        st.sampled_from([14, 24578, 36136, 36137]),
        st.just(1),
        st.just(bytes(16)),
        st.binary(min_size=4, max_size=4),
    ),
    st.builds(
        DeletePayload,
        st.just(3),
        st.just(4),
        st.lists(st.binary(min_size=4, max_size=4), min_size=1, max_size=4).map(tuple),
    ),
    st.builds(VendorIdPayload, _data),
    st.builds(NatDPayload, _data),
    st.builds(GenericPayload, st.sampled_from([6, 7, 9, 130]), st.binary(max_size=20)),
)


@given(st.lists(_payload, min_size=1, max_size=6))
def test_chain_round_trip(payloads: list[Payload]) -> None:
    np, chain = encode_chain(payloads)
    assert parse_chain(np, chain) == payloads
    assert encode_chain(parse_chain(np, chain)) == (np, chain)


@given(st.integers(0, 255), st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_decode_error(first: int, buf: bytes) -> None:
    try:
        parse_chain(first, buf, allow_trailing=True)
    except DecodeError as e:
        assert e.reason
