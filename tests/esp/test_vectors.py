"""Published ESP packets, byte for byte.

* RFC 3602 §4, cases 5-8: AES-CBC-128 ESP packets (SPI, sequence number, IV, ciphertext) for given payloads,
  next headers and IVs; cases 7 and 8 are tunnel mode (next header 4, an inner IPv4 ICMP packet). The RFC
  vectors carry no ICV (encryption only), so the ICV we append is checked against the standard library's HMAC.
  Values as printed in the RFC (also reproduced in two independent test suites we compared them with).
* draft-mcgrew-gcm-test-01 ("Test Cases for the use of GCM in IPsec ESP"): the cases with 32-bit sequence numbers
  and 128/256-bit keys, each a whole ESP packet: AAD = SPI | sequence number, nonce = salt | IV, padding 1, 2, ...
  to the 4-octet boundary, 16-octet ICV. Those vectors use next header 1, so we build them through
  :meth:`EspSa.build` and check that the tunnel-mode receiver verifies them and then refuses the next header.
"""

from __future__ import annotations

import hashlib
import hmac
import random

import pytest

from cgw_peer.esp import EspDrop, EspSa, EspSuite

# (key, spi, seq, iv, payload, next header, ESP packet without ICV)
RFC3602 = {
    "case5": (
        "90d382b410eeba7ad938c46cec1a82bf",
        0x4321,
        1,
        "e96e8c08ab465763fd098d45dd3ff893",
        "08000ebda70a00008e9c083db95b070008090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
        "202122232425262728292a2b2c2d2e2f3031323334353637",
        1,
        "0000432100000001e96e8c08ab465763fd098d45dd3ff893f663c25d325c18c6a9453e194e120849"
        "a4870b66cc6b9965330013b4898dc856a4699e523a55db080b59ec3a8e4b7e52775b07d1db34ed9c"
        "538ab50c551b874aa269add047ad2d5913ac19b7cfbad4a6",
    ),
    "case6": (
        "90d382b410eeba7ad938c46cec1a82bf",
        0x4321,
        8,
        "69d08df7d203329db093fc4924e5bd80",
        "0800b5e8a80a0500a69c083d0b660e00777777777777777777777777",
        1,
        "000043210000000869d08df7d203329db093fc4924e5bd80f51995881ec4e0c4488987ce742e8109"
        "689bb379d2d750c0d915dca346a89f75",
    ),
    "case7": (
        "0123456789abcdef0123456789abcdef",
        0x8765,
        2,
        "f4e765244f6407adf13dc1380f673f37",
        "45000054090400004001f988c0a87b03c0a87bc808009f76a90a0100b49c083d02a2040008090a0b"
        "0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f30313233"
        "34353637",
        4,
        "0000876500000002f4e765244f6407adf13dc1380f673f37773b5241a4c449225e4f3ce5ed611b0c"
        "237ca96cf74a93013c1b0ea1a0cf70f8e4ecaec78ac53aad7a0f022b859243c647752e94a859352b"
        "8a4d4d2decd136e5c177f132ad3fbfb2201ac9904c74ee0a109e0ca1e4dfe9d5a100b842f1c22f0d",
    ),
    "case8": (
        "0123456789abcdef0123456789abcdef",
        0x8765,
        5,
        "85d47224b5f3dd5d2101d4ea8dffab22",
        "45000044090c00004001f990c0a87b03c0a87bc80800d63caa0a0200c69c083da3de0300ffffffff"
        "ffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        4,
        "000087650000000585d47224b5f3dd5d2101d4ea8dffab2215b92683819596a8047232cc00f7048f"
        "e45318e11f8a0f62ede3c3fc61203bb50f980a08c9843fd3a1b06d5c07ff9639b7eb7dfb3512e5de"
        "435e7207ed971ef3d2726d9b5ef6affc6d17a0decbb13892",
    ),
}

_INTEG_KEY = bytes(range(20))


@pytest.mark.parametrize("case", sorted(RFC3602))
def test_rfc3602_cbc_packets(case: str) -> None:
    key, spi, seq, iv, payload, nh, expect = RFC3602[case]
    sa = EspSa(spi, "out", EspSuite.parse("aes128-sha1"), bytes.fromhex(key), _INTEG_KEY, rng=random.Random(0))
    esp = sa.build(bytes.fromhex(payload), nh, seq, bytes.fromhex(iv))
    body = bytes.fromhex(expect)
    assert esp[:-12] == body
    # RFC 2404: HMAC-SHA1 over SPI .. ciphertext, truncated to 96 bits.
    assert esp[-12:] == hmac.new(_INTEG_KEY, body, hashlib.sha1).digest()[:12]


@pytest.mark.parametrize("case", ["case7", "case8"])
def test_rfc3602_tunnel_packets_decrypt(case: str) -> None:
    key, spi, seq, _iv, payload, _nh, expect = RFC3602[case]
    sa = EspSa(spi, "in", EspSuite.parse("aes128-sha1"), bytes.fromhex(key), _INTEG_KEY)
    body = bytes.fromhex(expect)
    esp = body + hmac.new(_INTEG_KEY, body, hashlib.sha1).digest()[:12]
    assert sa.decrypt(esp, 0.0) == (bytes.fromhex(payload), None)
    assert sa.window is not None and sa.window.top == seq


# (key, salt, spi|seq (AAD), iv, plaintext incl. padding, pad length and next header, ciphertext, tag)
GCM = {
    "gcm128-spi0000a5f8": (
        "feffe9928665731c6d6a8f9467308308",
        "cafebabe",
        "0000a5f80000000a",
        "facedbaddecaf888",
        "4500003e698f000080114dccc0a80102c0a801010a980035002a2343b2d001000001000000000000"
        "037369700963796265726369747902646b00000100010001",
        "deb22cd9b07c72c16e3a65beeb8df304a5a5897d33ae530f1ba76d5d114d2a5c3de81827c10e9a4f"
        "51330d0eec416642cfbb85a5b47e48a4ec3b9ba95d918bd1",
        "83b70d3aa8bc6ee4c309e9d85a41ad4a",
    ),
    "gcm256-spi4a2cbfe3": (
        "abbccddef00112233445566778899aababbccddef00112233445566778899aab",
        "11223344",
        "4a2cbfe300000002",
        "0102030405060708",
        "4500003069a6400080062690c0a801029389155e0a9e008b2dc57ee0000000007002400020bf0000020405b40101040201020201",
        "ff425c9b724599df7a3bcd510194e00d6a78107f1b0b1cbf06efae9d65a5d763748a637985771d347f0545659f14e99def842d8e",
        "b335f4eecfdbf831824b4c4915956c96",
    ),
    "gcm128-seq-ffffffff-empty": (
        "7d773d00c144c525ac619d18c84a3f47",
        "d9664267",
        "335467aeffffffff",
        "43457e9182443bc6",
        "01020201",
        "437f866b",
        "cb3f699fe9b0822bac961c4504bef270",
    ),
}


@pytest.mark.parametrize("case", sorted(GCM))
def test_gcm_esp_packets(case: str) -> None:
    key, salt, aad, iv, plain, ct, tag = (bytes.fromhex(x) for x in GCM[case])
    suite = EspSuite.parse(f"aes{len(key) * 8}gcm16")
    spi, seq = int.from_bytes(aad[:4], "big"), int.from_bytes(aad[4:], "big")
    pad_len, nh = plain[-2], plain[-1]
    payload = plain[: len(plain) - 2 - pad_len]
    out = EspSa(spi, "out", suite, key + salt)
    expect = aad + iv + ct + tag
    # Our padding for this payload is the vector's padding, and the packet is the vector byte for byte.
    assert out.build(payload, nh, seq, iv) == expect
    inn = EspSa(spi, "in", suite, key + salt)
    # The ICV and the padding verify; a tunnel-mode SA then refuses next header 1 (not an IP packet).
    assert inn.decrypt(expect, 0.0) == (None, EspDrop.BAD_NEXT_HEADER)
    assert inn.window is not None and inn.window.top == seq
    tampered = expect[:-1] + bytes([expect[-1] ^ 1])
    assert EspSa(spi, "in", suite, key + salt).decrypt(tampered, 0.0) == (None, EspDrop.BAD_ICV)
