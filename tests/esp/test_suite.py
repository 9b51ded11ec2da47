"""Proposal strings the engines emit map to the right ESP transform, key sizes and Wireshark names; bad ones are
configuration errors naming the field."""

from __future__ import annotations

import random

import pytest

from cgw_peer.config import TunnelOptions
from cgw_peer.errors import ConfigError
from cgw_peer.esp import EspSa, EspSuite
from cgw_peer.ikev1.proposals import aws_p2_candidates
from cgw_peer.ikev2.constants import Encr, Integ
from cgw_peer.ikev2.suite import ChildSuite


@pytest.mark.parametrize(
    ("text", "aead", "bits", "integ", "enc_len", "integ_len", "icv", "ws_auth"),
    [
        ("aes128-sha1-modp2048", False, 128, "sha1_96", 16, 20, 12, "HMAC-SHA-1-96 [RFC2404]"),
        ("aes256-sha256", False, 256, "sha256_128", 32, 32, 16, "HMAC-SHA-256-128 [RFC4868]"),
        ("aes128-sha384-ecp384", False, 128, "sha384_192", 16, 48, 24, "HMAC-SHA-384-192 [RFC4868]"),
        ("aes256-sha512-noesn", False, 256, "sha512_256", 32, 64, 32, "HMAC-SHA-512-256 [RFC4868]"),
        ("aes128gcm16-modp2048", True, 128, None, 20, 0, 16, "NULL"),
        ("aes256gcm16", True, 256, None, 36, 0, 16, "NULL"),
        ("aes256gcm128-ecp256", True, 256, None, 36, 0, 16, "NULL"),
    ],
)
def test_parse(
    text: str, aead: bool, bits: int, integ: str | None, enc_len: int, integ_len: int, icv: int, ws_auth: str
) -> None:
    s = EspSuite.parse(text)
    assert (s.aead, s.key_bits, s.integ) == (aead, bits, integ)
    assert (s.enc_key_len, s.integ_key_len, s.icv_len) == (enc_len, integ_len, icv)
    assert s.iv_len == (8 if aead else 16) and s.align == (4 if aead else 16)
    assert s.ws_auth == ws_auth
    assert s.ws_encr == ("AES-GCM with 16 octet ICV [RFC4106]" if aead else "AES-CBC [RFC3602]")
    assert EspSuite.parse(s.name) == s


def test_every_engine_suite_name_parses() -> None:
    # IKEv1: every phase-2 suite the AWS role can choose (all AWS algorithms, all PFS groups).
    for p2 in aws_p2_candidates(TunnelOptions()):
        s = EspSuite.parse(p2.name)
        assert s.enc_key_len == p2.enc_key_len and s.integ_key_len == p2.integ_key_len
    # IKEv2: the Child SA suites.
    for encr, bits in ((Encr.AES_CBC, 128), (Encr.AES_CBC, 256), (Encr.AES_GCM_16, 128), (Encr.AES_GCM_16, 256)):
        for integ in (0,) if encr == Encr.AES_GCM_16 else [i for i in Integ if i]:
            for dh in (0, 14, 19):
                c = ChildSuite(encr, bits, integ, dh)
                s = EspSuite.parse(c.describe())
                assert s.enc_key_len == c.enc_key_len and s.integ_key_len == c.integ_key_len


@pytest.mark.parametrize("text", ["aes128", "3des-sha1", "aes128-sha1-esn", "aes192-sha1", "aes128-md5", ""])
def test_bad_proposals(text: str) -> None:
    with pytest.raises(ConfigError) as e:
        EspSuite.parse(text)
    assert "proposal" in str(e.value)


def test_key_lengths_are_checked() -> None:
    s = EspSuite.parse("aes128-sha1")
    with pytest.raises(ConfigError, match="enc_key"):
        EspSa(1, "in", s, bytes(15), bytes(20))
    with pytest.raises(ConfigError, match="integ_key"):
        EspSa(1, "in", s, bytes(16), bytes(32))
    with pytest.raises(ConfigError, match="spi"):
        EspSa(0, "in", s, bytes(16), bytes(20))
    with pytest.raises(ConfigError, match="rng"):
        EspSa(1, "out", s, bytes(16), bytes(20))
    with pytest.raises(ConfigError, match="replay_window"):
        EspSa(1, "in", s, bytes(16), bytes(20), replay_window=-1)
    EspSa(1, "out", s, bytes(16), bytes(20), rng=random.Random(1))
    EspSa(1, "out", EspSuite.parse("aes128gcm16"), bytes(20))  # GCM needs no RNG: its IV is a counter
