"""Algorithm tables and the strongSwan-style proposal parser."""

from __future__ import annotations

import pytest

from cgw_peer.crypto import algorithms as alg
from cgw_peer.crypto.dh import SUPPORTED_GROUPS, get_group
from cgw_peer.crypto.prf import get_integ, get_prf
from cgw_peer.errors import ConfigError


def test_aws_names_cover_the_tunnel_options() -> None:
    assert set(alg.ENC_BY_AWS) == {"AES128", "AES256", "AES128-GCM-16", "AES256-GCM-16"}
    assert set(alg.HASH_BY_AWS) == {"SHA1", "SHA2-256", "SHA2-384", "SHA2-512"}


def test_ids() -> None:
    # RFC 7296 §3.3.2 / IANA; RFC 2409 App. A; ike-dpd.md §2.6-2.7, §3.1.
    assert {e.token: e.ikev2_id for e in alg.ENC_BY_TOKEN.values()} == {
        "aes128": 12, "aes256": 12, "aes128gcm16": 20, "aes256gcm16": 20,
    }  # fmt: skip
    assert alg.ENC_BY_TOKEN["aes256"].ikev1_id == 7 and alg.ENC_BY_TOKEN["aes256gcm16"].ikev1_id is None
    rows = {h.token: (h.ikev1_hash_id, h.ikev1_auth_alg, h.ikev2_prf_id, h.ikev2_integ_id) for h in alg._HASHES}
    assert rows == {"sha1": (2, 2, 2, 2), "sha256": (4, 5, 5, 12), "sha384": (5, 6, 6, 13), "sha512": (6, 7, 7, 14)}
    assert alg.enc_by_ikev2(20, 256) is alg.ENC_BY_TOKEN["aes256gcm16"]
    assert alg.enc_by_ikev2(20, 192) is None
    assert alg.enc_by_ikev1(7, 128) is alg.ENC_BY_TOKEN["aes128"]
    assert alg.enc_by_ikev1(20, 128) is None  # no GCM in IKEv1 Phase 1
    assert alg.enc_by_esp_v1(20, 128) is alg.ENC_BY_TOKEN["aes128gcm16"]
    assert alg.HASH_BY_IKEV1_AUTH_ALG[5] is alg.HASH_BY_IKEV1_ID[4] is alg.HASH_BY_IKEV2_INTEG[12]
    assert alg.HASH_BY_IKEV2_PRF[7].token == "sha512"


def test_rows_agree_with_primitives() -> None:
    for hrow in alg.HASH_BY_TOKEN.values():
        integ = get_integ(hrow.integ)
        assert (integ.key_len, integ.icv_len) == (hrow.integ_key_len, hrow.icv_len)
        assert get_prf(hrow.prf).hash_name == integ.hash_name
    for token, number in alg.DH_BY_TOKEN.items():
        assert number in SUPPORTED_GROUPS
        group = get_group(number)
        assert token in (group.name, "x25519")


def test_wireshark_names() -> None:
    # Spelled as in epan/dissectors/packet-isakmp.c vs_ikev2_encr_algs / vs_ikev2_auth_algs.
    assert alg.wireshark_names(alg.ENC_BY_AWS["AES128"], alg.HASH_BY_AWS["SHA2-256"]) == (
        "AES-CBC-128 [RFC3602]",
        "HMAC_SHA2_256_128 [RFC4868]",
    )
    assert alg.wireshark_names(alg.ENC_BY_AWS["AES256-GCM-16"], alg.HASH_BY_AWS["SHA1"]) == (
        "AES-GCM-256 with 16 octet ICV [RFC5282]",
        "NONE [RFC4306]",
    )
    assert alg.HASH_BY_AWS["SHA1"].wireshark_integ == "HMAC_SHA1_96 [RFC2404]"


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("aes256-sha256-modp2048", ("aes256", 256, "sha256_128", "sha256", 14, (14,))),
        ("aes128-sha1-modp1024", ("aes128", 128, "sha1_96", "sha1", 2, (2,))),
        ("AES128GCM16-PRFSHA384-ECP384", ("aes128gcm16", 128, None, "sha384", 20, (20,))),
        ("aes256gcm16-sha512-x25519-ecp256", ("aes256gcm16", 256, None, "sha512", 31, (31, 19))),
        ("aes256gcm128", ("aes256gcm16", 256, None, None, None, ())),
        ("aes128-sha256", ("aes128", 128, "sha256_128", "sha256", None, ())),
        ("aes128-sha256-prfsha512-modp2048s256", ("aes128", 128, "sha256_128", "sha512", 24, (24,))),
    ],
)
def test_parse_proposal(text: str, want: tuple[object, ...]) -> None:
    p = alg.parse_proposal(text)
    assert (p.enc, p.key_bits, p.integ, p.prf, p.dh_group, p.dh_groups) == want
    assert p.hash == p.prf


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("aes256-md5-modp2048", "'md5'"),
        ("3des-sha1", "'3des'"),
        ("sha256-modp2048", "no encryption"),
        ("aes256-modp2048", "needs an integrity"),
        ("aes256--sha1", "empty token"),
        ("aes128-aes256-sha1", "more than one encryption"),
    ],
)
def test_parse_proposal_errors(text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as exc:
        alg.parse_proposal(text)
    assert exc.value.field == "proposal"
    assert needle in str(exc.value)
    if "unknown token" in str(exc.value):
        assert "aes256gcm16" in str(exc.value) and "modp2048" in str(exc.value)
