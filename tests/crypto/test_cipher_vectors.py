"""AES-CBC against RFC 3602 §4; AES-GCM-16 (RFC 4106 salt/IV split) against the NIST GCM spec cases."""

from __future__ import annotations

from typing import Any

import pytest

from cgw_peer.crypto.cipher import AesCbc, AesGcm16, aes_cbc_decrypt, aes_cbc_encrypt
from cgw_peer.errors import DecodeError
from tests.crypto.vectors import h, load

V = load("aes_rfc3602_gcm.json")


@pytest.mark.parametrize("v", V["cbc"], ids=lambda v: v["name"])
def test_rfc3602_cbc(v: dict[str, Any]) -> None:
    key, iv, ct = h(v["key"]), h(v["iv"]), h(v["ciphertext"])
    pt = v["plaintext_ascii"].encode() if "plaintext_ascii" in v else h(v["plaintext"])
    assert aes_cbc_encrypt(key, iv, pt) == ct
    assert aes_cbc_decrypt(key, iv, ct) == pt
    cbc = AesCbc(key)
    assert cbc.encrypt(iv, pt) == ct and cbc.decrypt(iv, ct) == pt


@pytest.mark.parametrize("v", V["gcm"], ids=lambda v: v["name"])
def test_gcm_spec_vectors_in_rfc4106_form(v: dict[str, Any]) -> None:
    iv12 = h(v["iv12"])
    gcm = AesGcm16(h(v["key"]) + iv12[:4])  # key material = key | 4-byte salt
    sealed = h(v["ciphertext"]) + h(v["tag"])
    assert gcm.seal(iv12[4:], h(v["plaintext"]), h(v["aad"])) == sealed
    assert gcm.open(iv12[4:], sealed, h(v["aad"])) == h(v["plaintext"])
    with pytest.raises(DecodeError):
        gcm.open(iv12[4:], sealed, h(v["aad"]) + b"\0")
