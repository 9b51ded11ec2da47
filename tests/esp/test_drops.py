"""Bad ESP is dropped with the right reason and counted, never raised: replays, packets left of the window,
every single-bit flip, every truncation, wrong padding, wrong next header, unknown SPIs; and the sender refuses
to let its 32-bit sequence number cycle.

Packets with wrong padding or next header can only come from someone holding the keys, so they are built here
with ``cryptography`` and ``hmac`` directly (an ESP encoder independent of the one under test)."""

from __future__ import annotations

import hashlib
import hmac
import struct

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6

from cgw_peer.esp import SEQ_MAX, EspDrop, EspSa, EspSad

from .helpers import SUITES, ipv4_icmp, sa_pair, scapy_sa

_HASH = {
    "sha1_96": hashlib.sha1,
    "sha256_128": hashlib.sha256,
    "sha384_192": hashlib.sha384,
    "sha512_256": hashlib.sha512,
}


def craft(sa: EspSa, plain: bytes, seq: int, iv: bytes | None = None) -> bytes:
    """An ESP packet whose encrypted part is exactly ``plain`` (payload, padding, pad length, next header)."""
    hdr = struct.pack("!II", sa.spi, seq)
    if sa.suite.aead:
        iv = iv or struct.pack("!Q", seq)
        return hdr + iv + AESGCM(sa.enc_key[:-4]).encrypt(sa.enc_key[-4:] + iv, plain, hdr)
    assert sa.suite.integ is not None and len(plain) % 16 == 0
    iv = iv or bytes(range(16))
    enc = Cipher(algorithms.AES(sa.enc_key), modes.CBC(iv)).encryptor()
    body = hdr + iv + enc.update(plain) + enc.finalize()
    icv = hmac.new(sa.integ_key, body, _HASH[sa.suite.integ]).digest()[: sa.suite.icv_len]
    return body + icv


def trailer(payload_len: int, align: int, nh: int, pad_byte: int | None = None) -> bytes:
    pad = -(payload_len + 2) % align
    padding = bytes(range(1, pad + 1)) if pad_byte is None else bytes([pad_byte] * pad)
    return padding + bytes((pad, nh))


@pytest.mark.parametrize("name", SUITES)
def test_replay_and_window(name: str) -> None:
    out, inn = sa_pair(name, window=64)
    pkts = [out.encrypt(ipv4_icmp(10, ident=i), float(i)) for i in range(1, 101)]
    assert all(p is not None for p in pkts)
    assert inn.decrypt(pkts[99], 1.0)[1] is None  # seq 100 first: the window is now 37..100
    assert inn.decrypt(pkts[99], 1.0) == (None, EspDrop.REPLAY)
    assert inn.decrypt(pkts[35], 1.0) == (None, EspDrop.OUTSIDE_WINDOW)  # seq 36: 64 below the top
    assert inn.decrypt(pkts[36], 1.0)[1] is None  # seq 37: the left edge, still new
    assert inn.decrypt(pkts[36], 1.0) == (None, EspDrop.REPLAY)
    assert inn.drops == {EspDrop.REPLAY: 2, EspDrop.OUTSIDE_WINDOW: 1}
    assert inn.packets == 2


def test_window_off_accepts_replays() -> None:
    out, inn = sa_pair("aes128gcm16", window=0)
    pkt = out.encrypt(ipv4_icmp(10), 0.0)
    assert pkt is not None
    assert inn.decrypt(pkt, 0.0)[1] is None and inn.decrypt(pkt, 0.0)[1] is None
    assert inn.window is None


@pytest.mark.parametrize("name", ["aes128-sha1", "aes256-sha512", "aes128gcm16", "aes256gcm16"])
def test_every_bit_flip_is_dropped(name: str) -> None:
    out, _ = sa_pair(name)
    pkt = out.encrypt(ipv4_icmp(20), 0.0)
    assert pkt is not None
    for bit in range(len(pkt) * 8):
        _, inn = sa_pair(name)
        sad = EspSad()
        sad.add_inbound(inn)
        bad = bytearray(pkt)
        bad[bit // 8] ^= 0x80 >> (bit % 8)
        if bit < 32:
            expect = EspDrop.UNKNOWN_SPI
        elif bit == 63:  # seq 1 -> 0, left of every window
            expect = EspDrop.OUTSIDE_WINDOW
        else:
            expect = EspDrop.BAD_ICV
        assert sad.decrypt(bytes(bad), 0.0) == (None, expect), bit
        assert sad.drops == {expect: 1}
        # Nothing but an authentic packet moves the window: the original still goes through afterwards.
        assert sad.decrypt(pkt, 0.0)[1] is None, bit


@pytest.mark.parametrize("name", ["aes128-sha1", "aes256-sha256", "aes128gcm16"])
def test_every_truncation_is_dropped(name: str) -> None:
    out, inn = sa_pair(name)
    pkt = out.encrypt(ipv4_icmp(40), 0.0)
    assert pkt is not None
    icv = inn.suite.icv_len
    smallest = 8 + inn.suite.iv_len + (2 if inn.suite.aead else 16) + icv
    for n in range(len(pkt)):
        got = inn.decrypt(pkt[:n], 0.0)
        if n < smallest or (not inn.suite.aead and (n - 24 - icv) % 16):
            assert got == (None, EspDrop.TRUNCATED), n
        else:
            assert got == (None, EspDrop.BAD_ICV), n
    assert inn.decrypt(pkt, 0.0)[1] is None


@pytest.mark.parametrize("name", SUITES)
def test_forged_high_sequence_does_not_move_the_window(name: str) -> None:
    out, inn = sa_pair(name, window=64)
    pkt = out.encrypt(ipv4_icmp(10), 0.0)
    assert pkt is not None
    forged = pkt[:4] + struct.pack("!I", 1_000_000) + pkt[8:]
    assert inn.decrypt(forged, 0.0) == (None, EspDrop.BAD_ICV)
    assert inn.decrypt(pkt, 0.0)[1] is None  # seq 1 is still inside the (unmoved) window


@pytest.mark.parametrize("name", SUITES)
def test_bad_padding(name: str) -> None:
    _, inn = sa_pair(name)
    inner = ipv4_icmp(11)
    align = inn.suite.align
    # Padding octets that are not 1, 2, 3, ... (here: all zero; 11 + 28 = 39 octets needs pad >= 1).
    plain = inner + trailer(len(inner), align, 4, pad_byte=0)
    assert plain[-2] > 0
    assert inn.decrypt(craft(inn, plain, 1), 0.0) == (None, EspDrop.BAD_PADDING)
    # A pad length longer than the plaintext.
    plain = inner + trailer(len(inner), align, 4)
    plain = plain[:-2] + bytes((200, 4))
    assert inn.decrypt(craft(inn, plain, 2), 0.0) == (None, EspDrop.BAD_PADDING)
    # Both were authentic, so the window moved past them (RFC 4303 §3.4.3) ...
    assert inn.decrypt(craft(inn, plain, 2), 0.0) == (None, EspDrop.REPLAY)
    # ... and the same payload with correct padding is accepted.
    good = inner + trailer(len(inner), align, 4)
    assert inn.decrypt(craft(inn, good, 3), 0.0) == (inner, None)
    # Extra padding is fine as long as it counts 1, 2, 3, ... (RFC 4303 §2.4 allows up to 255 octets).
    pad = -(len(inner) + 2) % align + 32
    extra = inner + bytes(range(1, pad + 1)) + bytes((pad, 4))
    assert inn.decrypt(craft(inn, extra, 4), 0.0) == (inner, None)
    assert inn.drops == {EspDrop.BAD_PADDING: 2, EspDrop.REPLAY: 1}


@pytest.mark.parametrize("name", SUITES)
def test_bad_next_header_and_dummy(name: str) -> None:
    _, inn = sa_pair(name)
    inner = ipv4_icmp(20)
    align = inn.suite.align
    # Next header 17 (UDP, transport mode) on a tunnel-mode SA.
    assert inn.decrypt(craft(inn, inner + trailer(len(inner), align, 17), 1), 0.0) == (None, EspDrop.BAD_NEXT_HEADER)
    # Next header 41 (IPv6) with an IPv4 packet inside.
    assert inn.decrypt(craft(inn, inner + trailer(len(inner), align, 41), 2), 0.0) == (None, EspDrop.BAD_NEXT_HEADER)
    # An empty payload with next header 4.
    assert inn.decrypt(craft(inn, trailer(0, align, 4), 3), 0.0) == (None, EspDrop.BAD_NEXT_HEADER)
    # A dummy packet (RFC 4303 §2.6) is discarded without complaint.
    junk = bytes(24)
    assert inn.decrypt(craft(inn, junk + trailer(len(junk), align, 59), 4), 0.0) == (None, EspDrop.DUMMY)
    assert inn.drops == {EspDrop.BAD_NEXT_HEADER: 3, EspDrop.DUMMY: 1}
    assert inn.packets == 0


def test_dummy_packets_from_our_sender() -> None:
    out, inn = sa_pair("aes128-sha256")
    pkt = out.encrypt(b"\x00" * 33, 0.0, next_header=59)
    assert pkt is not None
    assert inn.decrypt(pkt, 0.0) == (None, EspDrop.DUMMY)


def test_ipv6_inner_packets() -> None:
    inner = bytes(IPv6(src="fd00::1", dst="fd00::2") / ICMPv6EchoRequest(data=b"x" * 30))
    for name in ("aes128-sha1", "aes256gcm16"):
        out, inn = sa_pair(name)
        pkt = out.encrypt(inner, 0.0)
        assert pkt is not None
        assert inn.decrypt(pkt, 0.0) == (inner, None)
        assert out.framer is not None
        assert bytes(scapy_sa(out).decrypt(IP(out.framer.frame(pkt)))) == inner


@pytest.mark.parametrize("name", ["aes128-sha1", "aes128gcm16"])
def test_sequence_number_never_cycles(name: str) -> None:
    out, inn = sa_pair(name)
    out.seq = SEQ_MAX - 1
    last = out.encrypt(ipv4_icmp(8), 0.0)
    assert last is not None and struct.unpack("!I", last[4:8])[0] == SEQ_MAX
    assert out.exhausted
    assert out.encrypt(ipv4_icmp(8), 0.0) is None
    assert out.encrypt(ipv4_icmp(8), 0.0) is None
    assert out.drops == {EspDrop.SEQ_OVERFLOW: 2}
    assert out.seq == SEQ_MAX and out.packets == 1
    assert inn.decrypt(last, 0.0) == (ipv4_icmp(8), None)
    sad = EspSad()
    sad.set_outbound(out)
    assert sad.encrypt(ipv4_icmp(8), 0.0) is None
    assert sad.drops == {EspDrop.SEQ_OVERFLOW: 1}


def test_wrong_direction_and_spi() -> None:
    out, inn = sa_pair("aes128-sha1")
    pkt = out.encrypt(ipv4_icmp(8), 0.0)
    assert pkt is not None
    other = sa_pair("aes128-sha1", spi=0x1234)[1]
    assert other.decrypt(pkt, 0.0) == (None, EspDrop.UNKNOWN_SPI)
    assert out.decrypt(pkt, 0.0) == (None, EspDrop.UNKNOWN_SPI)
    with pytest.raises(ValueError):
        inn.encrypt(ipv4_icmp(8), 0.0)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200), name=st.sampled_from(SUITES))
def test_arbitrary_bytes_never_raise(data: bytes, name: str) -> None:
    _, inn = sa_pair(name)
    sad = EspSad()
    sad.add_inbound(inn)
    inner, reason = sad.decrypt(data, 0.0)
    assert inner is None and reason in set(EspDrop)
    inner, reason = sad.decrypt(struct.pack("!II", inn.spi, 1) + data, 0.0)
    assert inner is None and reason in (EspDrop.TRUNCATED, EspDrop.BAD_ICV)
