"""IKEv1/IKEv2 key derivation against published ACVP vectors."""

from __future__ import annotations

from cgw_peer.crypto import keymat_v1 as v1
from cgw_peer.crypto import keymat_v2 as v2
from cgw_peer.crypto.prf import get_prf
from tests.crypto.vectors import h, load

ACVP = load("ike_kdf_acvp.json")


def test_ikev1_psk_skeyid_chain_acvp() -> None:
    v = ACVP["ikev1_psk_sha1"]
    prf = get_prf(v["prf"])
    skeyid = v1.skeyid_psk(prf, h(v["psk"]), h(v["ni_b"]), h(v["nr_b"]))
    assert skeyid == h(v["skeyid"])
    d, a, e = v1.skeyid_chain(prf, skeyid, h(v["gxy"]), h(v["cky_i"]), h(v["cky_r"]))
    assert (d, a, e) == (h(v["skeyid_d"]), h(v["skeyid_a"]), h(v["skeyid_e"]))


def test_ikev2_acvp_skeyseed_dkm_child_rekey() -> None:
    v = ACVP["ikev2_sha1"]
    prf = get_prf(v["prf"])
    ni, nr = h(v["ni"]), h(v["nr"])
    seed = v2.skeyseed(prf, ni, nr, h(v["g_ir"]))
    assert seed == h(v["skeyseed"])
    dkm = v2.prf_plus(prf, seed, ni + nr + h(v["spi_i"]) + h(v["spi_r"]), v["dkm_len"])
    assert len(dkm) == v["dkm_len"]
    assert dkm.startswith(h(v["dkm_prefix"]))
    sk_d = dkm[: prf.digest_size]
    assert v2.child_keymat(prf, sk_d, ni, nr, v["dkm_len"]).startswith(h(v["child_dkm_prefix"]))
    child_dh = v2.child_keymat(prf, sk_d, ni, nr, v["dkm_len"], h(v["g_ir_new"]))
    assert child_dh.startswith(h(v["child_dkm_dh_prefix"]))
    assert v2.rekey_skeyseed(prf, sk_d, h(v["g_ir_new"]), ni, nr) == h(v["skeyseed_rekey"])


def test_derive_ike_keys_splits_prf_plus_in_rfc_order() -> None:
    v = ACVP["ikev2_sha1"]
    prf = get_prf("sha1")
    ni, nr, spi_i, spi_r = h(v["ni"]), h(v["nr"]), h(v["spi_i"]), h(v["spi_r"])
    seed = h(v["skeyseed"])
    keys = v2.derive_ike_keys(prf, seed, ni, nr, spi_i, spi_r, enc_key_len=16, integ_key_len=20)
    dkm = v2.prf_plus(prf, seed, ni + nr + spi_i + spi_r, 3 * 20 + 2 * 20 + 2 * 16)
    assert keys.sk_d + keys.sk_ai + keys.sk_ar + keys.sk_ei + keys.sk_er + keys.sk_pi + keys.sk_pr == dkm
    assert [len(x) for x in (keys.sk_d, keys.sk_ai, keys.sk_ei, keys.sk_pi)] == [20, 20, 16, 20]
    gcm = v2.derive_ike_keys(prf, seed, ni, nr, spi_i, spi_r, enc_key_len=36, integ_key_len=0)
    assert gcm.sk_ai == gcm.sk_ar == b""
    assert len(gcm.sk_ei) == 36 and gcm.sk_d == keys.sk_d
