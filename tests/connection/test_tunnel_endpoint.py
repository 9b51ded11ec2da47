"""The tunnel endpoint joins IKE and ESP: SAs follow the engines' own events, traffic crosses both ways in both IKE
versions with CBC+HMAC and GCM, in UDP or as IP protocol 50; rekeyed SAs keep decrypting until deleted; replayed,
tampered and out-of-window packets are dropped and counted; inbound ESP is liveness where the policy says so."""

from __future__ import annotations

import functools
import io
import random
import struct
from typing import Any

import pytest

from cgw_peer.config import LivenessTraffic
from cgw_peer.esp import EspDrop
from cgw_peer.peer import create_peer
from cgw_peer.tunnel_endpoint import IP_PROTO_PORT, TunnelEndpoint
from emulator.actions import Event, Transmit
from emulator.pcap import LINKTYPE_RAW, PcapWriter
from emulator.simnet import SimNetwork
from emulator.trace import TraceRecord

from .helpers import AWS_IP, CGW_IP, configs, endpoints, icmp_echo, udp4

CASES = [(v, esp, encap) for v in (1, 2) for esp in ("aes128-sha1", "aes256gcm16") for encap in (False, True)]


def _inner(n: int, size: int = 100) -> bytes:
    return udp4("192.168.0.10", "10.0.1.10", 40000, 5001, struct.pack("!I", n) + bytes(size), ident=n)


def _up(net: SimNetwork, until: float = 5.0) -> None:
    net.start_all()
    net.run_until(until)


def _esp_sent(net: SimNetwork) -> list[dict[str, Any]]:
    return [r.fields for r in net.trace if r.event == "datagram_sent" and r.fields["kind"] == "esp"]


@pytest.mark.parametrize(("version", "esp", "encap"), CASES)
def test_traffic_crosses_both_ways(version: int, esp: str, encap: bool) -> None:
    net, aws, cgw = endpoints(version, esp, encap=encap)
    _up(net)
    assert aws.can_send and cgw.can_send
    up, down = [_inner(i) for i in range(5)], [_inner(100 + i) for i in range(5)]
    for p in up:
        net.call("cgw", functools.partial(cgw.send, p))
    for p in down:
        net.call("aws", functools.partial(aws.send, p))
    net.run_until(6)
    assert aws.take_received() == up and cgw.take_received() == down
    assert aws.take_received() == []
    port = 4500 if encap else IP_PROTO_PORT
    sent = _esp_sent(net)
    assert len(sent) == 10
    assert {(f["src"], f["dst"]) for f in sent} == {
        (f"{CGW_IP}:{port}", f"{AWS_IP}:{port}"),
        (f"{AWS_IP}:{port}", f"{CGW_IP}:{port}"),
    }
    for ep in (aws, cgw):
        assert ep.counters["esp_in"] == 5 and ep.counters["esp_out"] == 5
        assert ep.counters["esp_in_octets"] == sum(len(p) for p in up)
        assert not [k for k in ep.counters if k.startswith("dropped:")]
    # The SAs are the engines' own: the outbound SPI at one end is the inbound SPI at the other.
    assert aws.sad.outbound is not None and cgw.sad.outbound is not None
    assert aws.sad.outbound.spi in cgw.sad.inbound and cgw.sad.outbound.spi in aws.sad.inbound


def test_no_sa_no_packet() -> None:
    _net, aws, _cgw = endpoints(1, "aes128-sha1")
    assert aws.send(_inner(1), 0.0) == []
    assert aws.counters["dropped:" + EspDrop.NO_SA] == 1


@pytest.mark.parametrize("version", [1, 2])
def test_rekeyed_sa_keeps_decrypting_until_deleted(version: int) -> None:
    """RFC 7296 §1.4.1: whoever deletes closes its own inbound SA at once, so the window where the old SA still
    decrypts is at the other end, between its installing the new pair and the Delete arriving. IKEv2: AWS rekeys
    on demand and deletes, the CGW keeps the old SA until the Delete arrives. IKEv1: a short phase-2 lifetime
    makes both rekey at 900 - 60 s; the CGW (strongSwan) deletes the old pair 5 s later, AWS keeps it till then."""
    opts = {"phase2_lifetime_seconds": 900, "rekey_margin_time_seconds": 60, "rekey_fuzz_percentage": 0}
    net, aws, cgw = endpoints(version, "aes128-sha1", delay=0.05, options=opts if version == 1 else None)
    rx, tx, rx_name = (aws, cgw, "aws") if version == 1 else (cgw, aws, "cgw")
    _up(net)
    old_in = set(rx.sad.inbound)
    # Two packets on the current (soon old) SA, held back instead of sent.
    held = [tx.send(_inner(i), 5.0) for i in (1, 2)]
    assert all(len(h) == 1 for h in held)
    results: dict[str, Any] = {}

    def deliver(tag: str, actions: list[Any]) -> None:
        t = actions[0]
        assert isinstance(t, Transmit)
        before = rx.counters["esp_in"]
        out = rx.receive_datagram(t.data, t.src, t.dst, net.now)
        results[tag] = (rx.counters["esp_in"] - before, [e.fields for e in out if isinstance(e, Event)])

    def hook(rec: TraceRecord) -> None:
        if rec.node != rx_name or "deleted" in results:
            return
        if rec.event == "rekey_done" and rec.fields["sa"] == "child" and "new" not in results:
            results["new"] = set(rx.sad.inbound)
            deliver("during", held[0])  # the new pair is in, the old one still decrypts
        elif rec.event in ("delete_received", "delete_sent") and "new" in results:
            results["deleted"] = rec.t

    net.on_event(hook)
    if version == 2:
        net.call("aws", lambda now: aws.call("rekey_child", now))
    end = 8.0 if version == 2 else 850.0
    net.run_until(end)
    assert results["during"] == (1, [])
    assert old_in < results["new"]
    assert results["deleted"] == pytest.approx(5.15 if version == 2 else 845.55)
    assert old_in.isdisjoint(rx.sad.inbound)  # gone once deleted
    deliver("after", held[1])
    assert results["after"] == (0, [{"reason": EspDrop.UNKNOWN_SPI}])
    # Traffic goes on the new SAs both ways.
    nodes = {"aws": aws, "cgw": cgw}
    for src, dst in (("aws", "cgw"), ("cgw", "aws")):
        p = _inner(9)
        net.call(src, functools.partial(nodes[src].send, p))
        net.run_until(net.now + 1)
        assert nodes[dst].take_received()[-1] == p


def _deliver_raw(ep: TunnelEndpoint, tx: Transmit, now: float) -> list[Any]:
    return ep.receive_datagram(tx.data, tx.src, tx.dst, now)


@pytest.mark.parametrize("esp", ["aes128-sha1", "aes128gcm16"])
def test_replayed_tampered_and_out_of_window_are_dropped_and_counted(esp: str) -> None:
    net, aws, cgw = endpoints(2, esp, encap=True, replay_window=64)
    aws.drop_event_interval = 0.0  # one event per drop here (the rate limit has its own test)
    _up(net)
    txs = [cgw.send(_inner(i), 5.0)[0] for i in range(70)]
    assert all(isinstance(t, Transmit) for t in txs)
    t = [x for x in txs if isinstance(x, Transmit)]
    # Packet 0 waits; 1..69 arrive: the window (64) slides past sequence number 1.
    for x in t[1:]:
        assert _deliver_raw(aws, x, 5.0) == []
    events: list[Any] = []
    events += _deliver_raw(aws, t[0], 5.1)  # left of the window
    events += _deliver_raw(aws, t[69], 5.1)  # a replay
    f1, f2 = (cgw.send(_inner(70 + i), 5.1)[0] for i in range(2))
    assert isinstance(f1, Transmit) and isinstance(f2, Transmit)
    bad = bytearray(f1.data)
    bad[-1] ^= 1  # the last ICV / tag octet
    events += _deliver_raw(aws, Transmit(bytes(bad), f1.src, f1.dst, "esp"), 5.1)
    evil = bytearray(f2.data)
    evil[20] ^= 0x80  # ciphertext
    events += _deliver_raw(aws, Transmit(bytes(evil), f2.src, f2.dst, "esp"), 5.1)
    events += _deliver_raw(aws, Transmit(b"\x12\x34\x56\x78\x00\x00\x00\x01" + bytes(40), f1.src, f1.dst), 5.1)
    reasons = [e.fields["reason"] for e in events if isinstance(e, Event) and e.name == "datagram_dropped"]
    assert reasons == [
        EspDrop.OUTSIDE_WINDOW,
        EspDrop.REPLAY,
        EspDrop.BAD_ICV,
        EspDrop.BAD_ICV,
        EspDrop.UNKNOWN_SPI,
    ]
    c = aws.counters
    assert c["esp_in"] == 69
    assert c["dropped:esp_outside_window"] == 1 and c["dropped:esp_replay"] == 1
    assert c["dropped:esp_bad_icv"] == 2 and c["dropped:esp_unknown_spi"] == 1
    # The genuine packets after the forgeries still pass (a failed ICV does not move the window).
    assert _deliver_raw(aws, f1, 5.2) == [] and _deliver_raw(aws, f2, 5.2) == [] and c["esp_in"] == 71


def test_drop_events_are_rate_limited_but_counted() -> None:
    net, aws, cgw = endpoints(1, "aes128-sha1")
    _up(net)
    tx = cgw.send(_inner(1), 5.0)[0]
    assert isinstance(tx, Transmit)
    assert _deliver_raw(aws, tx, 5.0) == []
    evs = [_deliver_raw(aws, tx, 5.0 + i * 0.1) for i in range(25)]  # 25 replays over 2.5 s
    reported = [e for es in evs for e in es]
    assert aws.counters["dropped:esp_replay"] == 25
    assert [round(5.0 + i * 0.1, 1) for i, es in enumerate(evs) if es] == [5.0, 6.0, 7.0]
    assert reported[1].fields == {
        "reason": "esp_replay",
        "detail": "9 more dropped for this reason since the last report",
    }


def test_keepalive_and_marked_ike_go_to_the_engine() -> None:
    net, aws, _cgw = endpoints(2, "aes128-sha1", encap=True)
    _up(net)
    before = dict(aws.peer.counters)
    assert aws.receive_datagram(b"\xff", (CGW_IP, 4500), (AWS_IP, 4500), 5.0) == []
    assert aws.peer.counters.get("nat_keepalive_received", 0) == before.get("nat_keepalive_received", 0) + 1
    out = aws.receive_datagram(b"\0\0\0\0" + bytes(30), (CGW_IP, 4500), (AWS_IP, 4500), 5.0)
    assert [e.name for e in out if isinstance(e, Event)] == ["datagram_dropped"]
    assert not [k for k in aws.counters if k.startswith("dropped:")]  # the engine's drop, not ESP's


@pytest.mark.parametrize(("liveness", "probes"), [(LivenessTraffic.IKE_ESP, 0), (LivenessTraffic.IKE, 4)])
def test_inbound_esp_is_liveness_where_the_policy_says_so(liveness: LivenessTraffic, probes: int) -> None:
    net, _aws, cgw = endpoints(1, "aes128-sha1", aws={"liveness_traffic": liveness}, cgw={"dpd_enabled": False})
    _up(net, 1.0)

    def tick(t: float) -> None:
        net.call("cgw", lambda now: cgw.send(_inner(int(t)), now))
        if t < 40:
            net.at(t + 1.0, lambda: tick(t + 1.0))

    net.at(1.0, lambda: tick(1.0))
    net.run_until(40.5)
    sent = [r for r in net.trace if r.node == "aws" and r.event == "dpd_request_sent"]
    assert len(sent) == probes


def test_tunnel_down_empties_the_sad() -> None:
    net, aws, cgw = endpoints(2, "aes128-sha1")
    _up(net)
    assert aws.sad.sas()
    net.call("cgw", cgw.close)
    net.run_until(6)
    assert not aws.sad.sas() and not cgw.sad.sas()
    assert not aws.can_send


def test_ip_protocol_50_is_captured_as_esp() -> None:
    buf = io.BytesIO()
    net, aws, cgw = endpoints(1, "aes128-sha1")
    net.pcap = PcapWriter(buf, LINKTYPE_RAW)
    _up(net)
    p = icmp_echo("192.168.0.10", "10.0.1.10")
    net.call("cgw", lambda now: cgw.send(p, now))
    net.run_until(6)
    data = buf.getvalue()
    # Exactly one record is IPv4 protocol 50, with the tunnel's outer addresses.
    frames = []
    off = 24
    while off < len(data):
        incl = struct.unpack_from("<I", data, off + 8)[0]
        frames.append(data[off + 16 : off + 16 + incl])
        off += 16 + incl
    esp = [f for f in frames if f[9] == 50]
    assert len(esp) == 1
    assert esp[0][12:16] == bytes(int(x) for x in CGW_IP.split("."))
    _inner_pkt, reason = aws.sad.decrypt(esp[0][20:], 7.0)
    assert reason == EspDrop.REPLAY  # the same packet, already accepted: proof it is the ESP that crossed


def test_nodes_share_an_address_by_peer() -> None:
    """The network delivers by (destination, source) when nodes share an address (a CGW's two tunnels)."""
    aws_ips = ["203.0.113.1", "203.0.113.2"]
    net = SimNetwork(seed=2)
    eps: dict[str, TunnelEndpoint] = {}
    for i, aip in enumerate(aws_ips, 1):
        acfg, ccfg = configs(1, "aes128-sha1")
        a = create_peer(acfg, local=(aip, 500), remote=(CGW_IP, 500), rng=random.Random(i))
        c = create_peer(ccfg, local=(CGW_IP, 500), remote=(aip, 500), rng=random.Random(10 + i))
        eps[f"aws{i}"] = TunnelEndpoint(a, rng=random.Random(20 + i))
        eps[f"cgw{i}"] = TunnelEndpoint(c, rng=random.Random(30 + i))
        net.add_node(f"aws{i}", eps[f"aws{i}"], [aip])
        net.add_node(f"cgw{i}", eps[f"cgw{i}"], [CGW_IP], peers=[aip])
    with pytest.raises(ValueError, match="shared by peer"):
        net.add_node("other", eps["aws1"], [CGW_IP])
    with pytest.raises(ValueError, match="already takes"):
        net.add_node("dup", eps["aws1"], [CGW_IP], peers=[aws_ips[0]])
    net.start_all()
    net.run_until(5)
    assert all(ep.can_send for ep in eps.values())
    for i in (1, 2):
        p = _inner(i)
        net.call(f"aws{i}", functools.partial(eps[f"aws{i}"].send, p))
        net.run_until(5 + i)
        assert eps[f"cgw{i}"].take_received() == [p]
        assert eps[f"cgw{3 - i}"].take_received() == []
