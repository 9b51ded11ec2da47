"""Bad input from the wire is counted and dropped with a typed reason; the SA stays up (hypothesis)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cgw_peer.ikev2 import codec
from cgw_peer.ikev2.peer import IkeV2Peer
from emulator.actions import Event, Transmit, events, transmits

from .helpers import AWS_ADDR, CGW_ADDR, converse, establish, pair


def _still_up(aws: IkeV2Peer, cgw: IkeV2Peer, now: float) -> None:
    assert aws.status.status.value == "UP" and cgw.status.status.value == "UP"
    log = converse(aws, cgw, aws.check_liveness(now), now)
    assert "dpd_ack_received" in [x.name for _, x in log if isinstance(x, Event)]


def _feed(peer: IkeV2Peer, data: bytes) -> list[str]:
    out = peer.receive_datagram(data, AWS_ADDR, CGW_ADDR, 2.0)
    assert not transmits(out) or all(isinstance(t, Transmit) for t in out)
    return [e.fields["reason"] for e in events(out, "datagram_dropped")]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_arbitrary_bytes_are_dropped(data: bytes) -> None:
    aws, cgw = pair()
    establish(aws, cgw)
    out = cgw.receive_datagram(data, AWS_ADDR, CGW_ADDR, 2.0)
    # Dropped with a reason, or (only for a well-formed IKE_SA_INIT request) answered; never an exception.
    assert events(out, "datagram_dropped") or [t.kind for t in transmits(out)] == ["ike_sa_init_response"]
    assert cgw.status.status.value == "UP"
    _still_up(aws, cgw, 3.0)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_mutated_liveness_request_is_dropped(data: st.DataObject) -> None:
    """Flip, truncate or extend a valid protected request: the ICV or parsing rejects it, counted."""
    aws, cgw = pair()
    establish(aws, cgw)
    (tx,) = transmits(aws.check_liveness(1.0))
    raw = bytearray(tx.data)
    how = data.draw(st.sampled_from(["flip", "truncate", "extend"]))
    if how == "flip":
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] ^= data.draw(st.integers(1, 255))
    elif how == "truncate":
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    else:
        raw += data.draw(st.binary(min_size=1, max_size=40))
    before = sum(v for k, v in cgw.counters.items() if k.startswith("dropped:"))
    out = cgw.receive_datagram(bytes(raw), tx.src, tx.dst, 1.0)
    assert transmits(out) == []
    assert len(events(out, "datagram_dropped")) == 1
    assert sum(v for k, v in cgw.counters.items() if k.startswith("dropped:")) == before + 1
    # The original, intact request is still accepted afterwards: the SA is up and the window unmoved.
    ok = cgw.receive_datagram(tx.data, tx.src, tx.dst, 1.0)
    assert [e.name for e in events(ok)] == ["dpd_request_received", "dpd_ack_sent"]
    (resp,) = transmits(ok)
    assert [e.name for e in events(aws.receive_datagram(resp.data, resp.src, resp.dst, 1.0))] == ["dpd_ack_received"]
    _still_up(aws, cgw, 3.0)


def test_typed_reasons() -> None:
    aws, cgw = pair()
    establish(aws, cgw)
    (tx,) = transmits(aws.check_liveness(1.0))
    good = tx.data
    hdr = codec.parse_header(good)
    # Wrong SPI (unknown to us).
    assert _feed(cgw, b"\x01" * 8 + good[8:]) == ["unknown_spi"]
    # Bad ICV (last octet changed).
    assert _feed(cgw, good[:-1] + bytes([good[-1] ^ 1])) == ["icv_mismatch"]
    # Out-of-window message ID (ahead).
    ahead = good[:20] + struct.pack("!I", hdr.message_id + 5) + good[24:]
    assert _feed(cgw, ahead) == ["out_of_window"]
    # Accept it once, then replaying it is answered from the cache (a retransmission), not processed again.
    ok = cgw.receive_datagram(good, tx.src, tx.dst, 1.0)
    assert [e.name for e in events(ok)] == ["dpd_request_received", "dpd_ack_sent"]
    again = cgw.receive_datagram(good, tx.src, tx.dst, 1.5)
    assert [e.name for e in events(again)] == ["response_retransmitted"]
    assert transmits(again)[0].data == transmits(ok)[0].data
    (resp,) = transmits(ok)
    aws.receive_datagram(resp.data, resp.src, resp.dst, 1.5)
    # A second exchange moves the window on; replaying the first request is then an old message ID.
    converse(aws, cgw, aws.check_liveness(2.0), 2.0)
    assert _feed(cgw, good) == ["old_message_id"]
    assert cgw.counters["dropped:unknown_spi"] == 1 and cgw.counters["dropped:icv_mismatch"] >= 1
    assert cgw.status.status.value == "UP"


def test_unexpected_response_and_esp_on_encap_port() -> None:
    aws, cgw = pair()
    establish(aws, cgw)
    (tx,) = transmits(aws.check_liveness(1.0))
    resp = transmits(cgw.receive_datagram(tx.data, tx.src, tx.dst, 1.0))[0]
    assert [e.name for e in events(aws.receive_datagram(resp.data, resp.src, resp.dst, 1.0))] == ["dpd_ack_received"]
    # The same response again: nothing outstanding any more.
    dup = aws.receive_datagram(resp.data, resp.src, resp.dst, 1.1)
    assert [e.fields["reason"] for e in events(dup, "datagram_dropped")] == ["unexpected_response"]
    # ESP (non-zero SPI where the marker should be) on port 4500 is not IKE.
    esp = aws.receive_datagram(b"\x00\x00\x10\x00" + b"x" * 40, (CGW_ADDR[0], 4500), (AWS_ADDR[0], 4500), 1.2)
    assert [e.fields["reason"] for e in events(esp, "datagram_dropped")] == ["not_ike"]
    _still_up(aws, cgw, 2.0)


def test_authenticated_peer_choosing_unoffered_transform_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    """A (misbehaving) authenticated responder picks an ESP integrity algorithm we never offered: the IKE_AUTH
    response is dropped with a typed reason; nothing raises."""
    from cgw_peer.ikev2 import peer as peer_mod
    from cgw_peer.ikev2.constants import Integ
    from cgw_peer.ikev2.suite import ChildSuite

    real = peer_mod.select_child

    def evil(*a: object, **kw: object) -> object:
        got = real(*a, **kw)  # type: ignore[arg-type]
        assert got is not None
        num, spi, suite = got
        return num, spi, ChildSuite(suite.encr, suite.key_bits, Integ.HMAC_SHA2_384_192, suite.dh)

    aws, cgw = pair()
    monkeypatch.setattr(peer_mod, "select_child", evil)
    log = establish(aws, cgw)
    assert cgw.counters["dropped:bad_proposal_choice"] == 1
    assert "tunnel_up" not in [x.name for w, x in log if w == "a" and isinstance(x, Event)]
