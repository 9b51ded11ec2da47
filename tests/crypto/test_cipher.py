"""AES-CBC and AES-GCM-16 basics (RFC vectors live in test_vectors_cipher.py)."""

from __future__ import annotations

import pytest

from cgw_peer.crypto.cipher import AesGcm16, aes_cbc_decrypt, aes_cbc_encrypt
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
