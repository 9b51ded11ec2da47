"""IKEv1/IKEv2 key derivation: ACVP vectors where published, otherwise checks against the RFC formulas
written out independently with the standard library (``hmac``/``hashlib``), plus hypothesis properties."""

from __future__ import annotations

import hashlib
import hmac
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cgw_peer.crypto import keymat_v1 as v1
from cgw_peer.crypto import keymat_v2 as v2
from cgw_peer.crypto.prf import PRF_NAMES, get_prf
from tests.crypto.vectors import h, load

ACVP = load("ike_kdf_acvp.json")


def _hm(name: str, key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, getattr(hashlib, name)).digest()


# ---------------------------------------------------------------------------------------------- IKEv1


def test_ikev1_psk_skeyid_chain_acvp() -> None:
    v = ACVP["ikev1_psk_sha1"]
    prf = get_prf(v["prf"])
    skeyid = v1.skeyid_psk(prf, h(v["psk"]), h(v["ni_b"]), h(v["nr_b"]))
    assert skeyid == h(v["skeyid"])
    d, a, e = v1.skeyid_chain(prf, skeyid, h(v["gxy"]), h(v["cky_i"]), h(v["cky_r"]))
    assert (d, a, e) == (h(v["skeyid_d"]), h(v["skeyid_a"]), h(v["skeyid_e"]))


def test_expand_ka_short_prf_long_key() -> None:
    # AES-256 with HMAC-SHA1: SKEYID_e is 20 bytes, Ka needs 32 (RFC 2409 App. B).
    e = h(ACVP["ikev1_psk_sha1"]["skeyid_e"])
    k1 = _hm("sha1", e, b"\x00")
    k2 = _hm("sha1", e, k1)
    assert v1.expand_ka(get_prf("sha1"), e, 32) == (k1 + k2)[:32]
    assert v1.expand_ka(get_prf("sha1"), e, 16) == e[:16]  # long enough: plain prefix
    assert v1.expand_ka(get_prf("sha1"), e, 20) == e


def test_ivs() -> None:
    gxi, gxr = b"\x01" * 256, b"\x02" * 256
    assert v1.phase1_iv("sha256", gxi, gxr) == hashlib.sha256(gxi + gxr).digest()[:16]
    last = bytes(range(16))
    assert v1.phase2_iv("sha1", last, 0x01020304) == hashlib.sha1(last + b"\x01\x02\x03\x04").digest()[:16]


def test_hash_i_hash_r_mirror() -> None:
    prf = get_prf("sha256")
    args = (b"SKEYID", b"gxi", b"gxr", b"CKYIxxxx", b"CKYRxxxx", b"SAi_b")
    assert v1.hash_i(prf, *args, b"IDii") == _hm("sha256", b"SKEYID", b"gxigxrCKYIxxxxCKYRxxxxSAi_bIDii")
    assert v1.hash_r(prf, *args, b"IDir") == _hm("sha256", b"SKEYID", b"gxrgxiCKYRxxxxCKYIxxxxSAi_bIDir")


def test_qm_hashes() -> None:
    prf = get_prf("sha1")
    mid = struct.pack("!I", 0xDEADBEEF)
    assert v1.qm_hash1(prf, b"A", 0xDEADBEEF, b"rest") == _hm("sha1", b"A", mid + b"rest")
    assert v1.qm_hash2(prf, b"A", 0xDEADBEEF, b"Ni", b"rest") == _hm("sha1", b"A", mid + b"Nirest")
    assert v1.qm_hash3(prf, b"A", 0xDEADBEEF, b"Ni", b"Nr") == _hm("sha1", b"A", b"\x00" + mid + b"NiNr")


@pytest.mark.parametrize("pfs", [None, b"\x07" * 256])
def test_qm_keymat(pfs: bytes | None) -> None:
    prf = get_prf("sha1")
    seed = (pfs or b"") + b"\x03" + b"SPI!" + b"ni" + b"nr"
    k1 = _hm("sha1", b"D", seed)
    k2 = _hm("sha1", b"D", k1 + seed)
    k3 = _hm("sha1", b"D", k2 + seed)
    assert v1.qm_keymat(prf, b"D", 3, b"SPI!", b"ni", b"nr", 52, pfs) == (k1 + k2 + k3)[:52]


# ---------------------------------------------------------------------------------------------- IKEv2


def test_ikev2_acvp_skeyseed_dkm_child_rekey() -> None:
    v = ACVP["ikev2_sha1"]
    prf = get_prf(v["prf"])
    ni, nr = h(v["ni"]), h(v["nr"])
    seed = v2.skeyseed(prf, ni, nr, h(v["g_ir"]))
    assert seed == h(v["skeyseed"])
    dkm = v2.prf_plus(prf, seed, ni + nr + h(v["spi_i"]) + h(v["spi_r"]), v["dkm_len"])
    assert dkm == h(v["dkm"])
    sk_d = dkm[: prf.digest_size]
    assert v2.child_keymat(prf, sk_d, ni, nr, v["dkm_len"]) == h(v["child_dkm"])
    assert v2.child_keymat(prf, sk_d, ni, nr, v["dkm_len"], h(v["g_ir_new"])) == h(v["child_dkm_dh"])
    assert v2.rekey_skeyseed(prf, sk_d, h(v["g_ir_new"]), ni, nr) == h(v["skeyseed_rekey"])


def test_derive_ike_keys_splits_prf_plus_in_rfc_order() -> None:
    v = ACVP["ikev2_sha1"]
    prf = get_prf("sha1")
    ni, nr, spi_i, spi_r = h(v["ni"]), h(v["nr"]), h(v["spi_i"]), h(v["spi_r"])
    seed = h(v["skeyseed"])
    keys = v2.derive_ike_keys(prf, seed, ni, nr, spi_i, spi_r, enc_key_len=16, integ_key_len=20)
    parts = (keys.sk_d, keys.sk_ai, keys.sk_ar, keys.sk_ei, keys.sk_er, keys.sk_pi, keys.sk_pr)
    assert b"".join(parts) == h(v["dkm"])[: 3 * 20 + 2 * 20 + 2 * 16]
    assert [len(x) for x in parts] == [20, 20, 20, 16, 16, 20, 20]
    gcm = v2.derive_ike_keys(prf, seed, ni, nr, spi_i, spi_r, enc_key_len=36, integ_key_len=0)
    assert gcm.sk_ai == gcm.sk_ar == b""
    assert len(gcm.sk_ei) == 36 and gcm.sk_d == keys.sk_d
    assert gcm.sk_ei == h(v["dkm"])[20:56]


@pytest.mark.parametrize("name", PRF_NAMES)
def test_psk_auth_formula(name: str) -> None:
    prf = get_prf(name)
    inner = _hm(name, b"secret", b"Key Pad for IKEv2")
    want = _hm(name, inner, b"MSG1" + b"NonceR" + _hm(name, b"SK_pi", b"\x01\0\0\0id"))
    assert v2.psk_auth(prf, b"secret", b"MSG1", b"NonceR", b"SK_pi", b"\x01\0\0\0id") == want
    assert len(v2.KEY_PAD) == 17


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(PRF_NAMES),
    key=st.binary(max_size=80),
    seed=st.binary(max_size=80),
    n=st.integers(min_value=0, max_value=600),
    m=st.integers(min_value=0, max_value=600),
)
def test_prf_plus_prefix_consistent(name: str, key: bytes, seed: bytes, n: int, m: int) -> None:
    prf = get_prf(name)
    a, b = v2.prf_plus(prf, key, seed, n), v2.prf_plus(prf, key, seed, m)
    assert len(a) == n and len(b) == m
    short, long_ = (a, b) if n <= m else (b, a)
    assert long_.startswith(short)
    if n:
        # T1 = prf(K, S | 0x01) (RFC 7296 §2.13)
        assert a[: prf.digest_size] == _hm(name, key, seed + b"\x01")[:n]
