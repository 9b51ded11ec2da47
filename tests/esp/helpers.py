"""Shared pieces of the ESP tests: every suite AWS allows in phase 2, SA pairs with seeded keys, inner packets,
and the matching scapy ``SecurityAssociation`` (the independent oracle)."""

from __future__ import annotations

import random
import struct
from typing import Any

from cgw_peer.esp import EspSa, EspSuite, internet_checksum

LOCAL = ("198.51.100.1", 4500)
REMOTE = ("203.0.113.1", 4500)

SUITES = (
    "aes128-sha1",
    "aes256-sha1",
    "aes128-sha256",
    "aes256-sha256",
    "aes128-sha384",
    "aes256-sha384",
    "aes128-sha512",
    "aes256-sha512",
    "aes128gcm16",
    "aes256gcm16",
)
"""Every phase-2 suite AWS allows: AES128/AES256 x SHA1/SHA2-256/384/512, and AES128/256-GCM-16 (ike-dpd.md §1.1)."""

# scapy.layers.ipsec names: CRYPT_ALGOS / AUTH_ALGOS.
SCAPY_AUTH = {
    "sha1_96": "HMAC-SHA1-96",
    "sha256_128": "SHA2-256-128",
    "sha384_192": "SHA2-384-192",
    "sha512_256": "SHA2-512-256",
}


def keys(suite: EspSuite, seed: int) -> tuple[bytes, bytes]:
    rng = random.Random(seed)
    return rng.randbytes(suite.enc_key_len), rng.randbytes(suite.integ_key_len)


def sa_pair(
    name: str, *, encap: bool = True, window: int = 1024, seed: int = 1, spi: int = 0xC0DE0001
) -> tuple[EspSa, EspSa]:
    """(outbound at LOCAL, inbound at REMOTE) for one SA with seeded keys."""
    suite = EspSuite.parse(name)
    enc, integ = keys(suite, seed)
    out = EspSa(spi, "out", suite, enc, integ, rng=random.Random(seed + 100), src=LOCAL, dst=REMOTE, encap=encap)
    inn = EspSa(spi, "in", suite, enc, integ, replay_window=window, src=LOCAL, dst=REMOTE, encap=encap)
    return out, inn


def ipv4_icmp(payload_len: int, ident: int = 1, src: str = "192.168.0.10", dst: str = "10.0.1.20") -> bytes:
    """An ICMP echo request in IPv4 with correct checksums, built with struct (independent of the ESP code)."""
    data = bytes(i & 0xFF for i in range(payload_len))
    icmp = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + data
    icmp = icmp[:2] + struct.pack("!H", internet_checksum(icmp)) + icmp[4:]
    s = bytes(int(x) for x in src.split("."))
    d = bytes(int(x) for x in dst.split("."))
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), ident, 0, 64, 1, 0, s, d)
    hdr = hdr[:10] + struct.pack("!H", internet_checksum(hdr)) + hdr[12:]
    return hdr + icmp


def scapy_sa(sa: EspSa) -> Any:
    """scapy's ``SecurityAssociation`` with the same SPI, keys and outer header as ``sa``."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.ipsec import ESP, SecurityAssociation

    assert sa.src is not None and sa.dst is not None
    suite = sa.suite
    kw: dict[str, Any] = {
        "spi": sa.spi,
        "crypt_algo": "AES-GCM" if suite.aead else "AES-CBC",
        "crypt_key": sa.enc_key,
        "tunnel_header": IP(src=sa.src[0], dst=sa.dst[0]),
    }
    if not suite.aead:
        assert suite.integ is not None
        kw["auth_algo"] = SCAPY_AUTH[suite.integ]
        kw["auth_key"] = sa.integ_key
    if sa.encap:
        kw["nat_t_header"] = UDP(sport=sa.src[1], dport=sa.dst[1])
    return SecurityAssociation(ESP, **kw)
