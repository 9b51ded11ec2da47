"""AES-CBC and AES-GCM-16 basics (RFC vectors live in test_vectors_cipher.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cgw_peer.crypto.cipher import AesCbc, AesGcm16, aes_cbc_decrypt, aes_cbc_encrypt
from cgw_peer.errors import DecodeError


def test_cbc_round_trip_and_alignment() -> None:
    key, iv = bytes(range(16)), bytes(16)
    data = b"A" * 48
    ct = aes_cbc_encrypt(key, iv, data)
    assert len(ct) == 48 and ct != data
    assert aes_cbc_decrypt(key, iv, ct) == data
    with pytest.raises(DecodeError) as exc:
        aes_cbc_decrypt(key, iv, ct[:-1])
    assert exc.value.reason == "bad_ciphertext_length"


def test_gcm_round_trip_and_tamper() -> None:
    g = AesGcm16(bytes(range(36)))
    sealed = g.seal(b"12345678", b"hello", b"aad")
    assert len(sealed) == 5 + 16
    assert g.open(b"12345678", sealed, b"aad") == b"hello"
    for bad_iv, bad_ct, bad_aad in (
        (b"12345679", sealed, b"aad"),
        (b"12345678", sealed[:-1] + bytes([sealed[-1] ^ 1]), b"aad"),
        (b"12345678", sealed, b"aaD"),
        (b"12345678", sealed[:10], b"aad"),
    ):
        with pytest.raises(DecodeError) as exc:
            g.open(bad_iv, bad_ct, bad_aad)
        assert exc.value.reason == "icv_mismatch"


@settings(max_examples=80, deadline=None)
@given(
    key=st.sampled_from([16, 24, 32]).flatmap(lambda n: st.binary(min_size=n, max_size=n)),
    iv=st.binary(min_size=16, max_size=16),
    blocks=st.integers(min_value=0, max_value=12).flatmap(lambda n: st.binary(min_size=16 * n, max_size=16 * n)),
)
def test_cbc_round_trip_property(key: bytes, iv: bytes, blocks: bytes) -> None:
    ct = aes_cbc_encrypt(key, iv, blocks)
    assert len(ct) == len(blocks)
    assert aes_cbc_decrypt(key, iv, ct) == blocks
    # AesCbc (ECB chaining / one-pass XOR) against the library's CBC mode used by the functions.
    cbc = AesCbc(key)
    assert cbc.encrypt(iv, blocks) == ct
    assert cbc.decrypt(iv, ct) == blocks


@settings(max_examples=50, deadline=None)
@given(
    key=st.sampled_from([20, 28, 36]).flatmap(lambda n: st.binary(min_size=n, max_size=n)),
    iv=st.binary(min_size=8, max_size=8),
    pt=st.binary(max_size=200),
    aad=st.binary(max_size=40),
)
def test_gcm_round_trip_property(key: bytes, iv: bytes, pt: bytes, aad: bytes) -> None:
    g = AesGcm16(key)
    sealed = g.seal(iv, pt, aad)
    assert len(sealed) == len(pt) + 16
    assert g.open(iv, sealed, aad) == pt
