"""The Security Association Database of a tunnel end: rekey (the old inbound SA keeps decrypting until it is
deleted, the new outbound SA takes over at once), deletion, counters per SA and per reason."""

from __future__ import annotations

from cgw_peer.esp import EspDrop, EspSad

from .helpers import ipv4_icmp, sa_pair


def test_rekey_old_sa_decrypts_until_deleted() -> None:
    old_out, old_in = sa_pair("aes128-sha1", spi=0x1111, seed=1)
    new_out, new_in = sa_pair("aes256gcm16", spi=0x2222, seed=2)
    sender, receiver = EspSad(), EspSad()
    sender.set_outbound(old_out)
    receiver.add_inbound(old_in)
    p = ipv4_icmp(30)

    before = sender.encrypt(p, 1.0)
    assert before is not None and receiver.decrypt(before, 1.0) == (p, None)
    # Rekey: the receiver installs the new inbound SA first (as the IKE responder does); packets still in
    # flight on the old SA, and new ones on the new SA, both arrive.
    late = sender.encrypt(p, 2.0)
    receiver.add_inbound(new_in)
    sender.set_outbound(new_out)
    fresh = sender.encrypt(p, 3.0)
    assert late is not None and fresh is not None
    assert fresh[:4] == (0x2222).to_bytes(4, "big")
    assert receiver.decrypt(fresh, 3.0) == (p, None)
    assert receiver.decrypt(late, 3.1) == (p, None)
    assert [sa.spi for sa in receiver.sas()] == [0x1111, 0x2222]
    # Delete the old SA: what is still sent with it is now unknown.
    straggler = old_out.encrypt(p, 4.0)
    assert straggler is not None
    assert receiver.delete(0x1111)
    assert not receiver.delete(0x1111)
    assert receiver.decrypt(straggler, 4.0) == (None, EspDrop.UNKNOWN_SPI)
    assert receiver.drops == {EspDrop.UNKNOWN_SPI: 1}
    assert receiver.packets_in == 3
    assert old_in.packets == 2 and new_in.packets == 1
    assert old_in.last_used_at == 3.1 and new_in.last_used_at == 3.0


def test_outbound_falls_back_and_counts_no_sa() -> None:
    a_out, _ = sa_pair("aes128gcm16", spi=0x10)
    b_out, _ = sa_pair("aes128gcm16", spi=0x20)
    sad = EspSad()
    assert sad.encrypt(ipv4_icmp(1), 0.0) is None
    sad.set_outbound(a_out)
    sad.set_outbound(b_out)
    assert sad.outbound is b_out
    sad.delete(0x20)
    assert sad.outbound is a_out
    sad.delete(0x10)
    assert sad.outbound is None
    assert sad.encapsulate(ipv4_icmp(1), 0.0) is None
    assert sad.drops == {EspDrop.NO_SA: 2}


def test_counters_per_sa_and_per_reason() -> None:
    out1, in1 = sa_pair("aes128-sha256", spi=0x31, seed=5)
    out2, in2 = sa_pair("aes128-sha256", spi=0x32, seed=6)
    sad = EspSad()
    sad.add_inbound(in1)
    sad.add_inbound(in2)
    p1 = out1.encrypt(ipv4_icmp(5), 0.0)
    p2 = out2.encrypt(ipv4_icmp(5), 0.0)
    assert p1 is not None and p2 is not None
    for _ in range(3):
        sad.decrypt(p1, 0.0)
    sad.decrypt(p2, 0.0)
    sad.decrypt(p2[:-1] + bytes([p2[-1] ^ 1]), 0.0)  # seq 1 already seen: a replay, checked before the ICV
    sad.decrypt(b"\x00\x00", 0.0)
    assert in1.drops == {EspDrop.REPLAY: 2}
    assert in2.drops == {EspDrop.REPLAY: 1}
    assert sad.drops == {EspDrop.REPLAY: 3, EspDrop.TRUNCATED: 1}
    assert sad.packets_in == 2 and in1.octets == in2.octets == len(ipv4_icmp(5))
    sad.clear()
    assert sad.sas() == [] and sad.drops[EspDrop.REPLAY] == 3


def test_lookup_and_rows() -> None:
    out, inn = sa_pair("aes256-sha384", spi=0xABCDEF01)
    sad = EspSad()
    sad.install(inn, out)
    pkt = out.encrypt(ipv4_icmp(1), 0.0)
    assert pkt is not None and sad.lookup(pkt) is inn and sad.lookup(b"\x01") is None
    rows = sad.esp_sa_rows()
    assert [r["spi"] for r in rows] == ["0xabcdef01", "0xabcdef01"]
    assert rows[0]["auth_alg"] == "HMAC-SHA-384-192 [RFC4868]" and rows[0]["encr_alg"] == "AES-CBC [RFC3602]"
