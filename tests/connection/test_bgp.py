"""The BGP session inside a tunnel: real BGP-4 messages (scapy's BGP dissector reads what we write, we read what it
writes), the session comes up whichever end starts, keepalives every third of the hold time, the hold timer takes
the session and its routes down exactly ``hold_time`` after the last message, connect retry, peer restart."""

from __future__ import annotations

from typing import Any

import pytest

from cgw_peer.connection.bgp import (
    BgpSpeaker,
    BgpTimers,
    _nlri,
    decode_messages,
    encode_keepalive,
    encode_notification,
    encode_open,
    encode_update,
)
from cgw_peer.connection.packets import PROTO_TCP, parse4
from emulator.actions import Event

AWS_IN, CGW_IN = "169.254.10.1", "169.254.10.2"


def _pair(timers: BgpTimers | None = None) -> tuple[BgpSpeaker, BgpSpeaker]:
    aws = BgpSpeaker(
        local_ip=AWS_IN, peer_ip=CGW_IN, local_asn=64512, peer_asn=65000, prefixes=["10.0.0.0/16"], active=False,
        timers=timers,
    )  # fmt: skip
    cgw = BgpSpeaker(
        local_ip=CGW_IN, peer_ip=AWS_IN, local_asn=65000, peer_asn=64512, prefixes=["192.168.0.0/16"], active=True,
        timers=timers,
    )  # fmt: skip
    return aws, cgw


class Wire:
    """Two speakers joined by a wire that can be cut: messages arrive at the same instant, in the order they
    were sent (FIFO, as TCP and the simulated network deliver them)."""

    def __init__(self, a: BgpSpeaker, b: BgpSpeaker) -> None:
        self.ends = {"a": a, "b": b}
        self.cut = False
        self.events: list[tuple[float, str, Event]] = []
        self.sent: list[tuple[float, str, bytes]] = []

    def carry(self, who: str, packets: list[bytes], events: list[Event], now: float) -> None:
        queue = [(who, p) for p in packets]
        self.events += [(now, who, e) for e in events]
        while queue:
            src, p = queue.pop(0)
            self.sent.append((now, src, p))
            if self.cut:
                continue
            dst = "b" if src == "a" else "a"
            out, evs = self.ends[dst].receive(p, now)
            self.events += [(now, dst, e) for e in evs]
            queue += [(dst, q) for q in out]

    def run(self, until: float) -> None:
        while True:
            due = [(d, w) for w, s in self.ends.items() if (d := s.next_deadline()) is not None and d <= until]
            if not due:
                return
            d, w = min(due)
            out, evs = self.ends[w].handle_timer(d)
            self.carry(w, out, evs, d)

    def names(self, who: str) -> list[tuple[float, str, dict[str, Any]]]:
        return [(t, e.name, dict(e.fields)) for t, w, e in self.events if w == who]


def test_messages_read_by_scapy() -> None:
    from scapy.contrib.bgp import BGPHeader, BGPKeepAlive, BGPNLRI_IPv4, BGPNotification, BGPOpen, BGPUpdate

    o = BGPHeader(encode_open(64512, 30, AWS_IN))
    assert o[BGPOpen].my_as == 64512 and o[BGPOpen].hold_time == 30 and o[BGPOpen].bgp_id == AWS_IN
    assert o[BGPOpen].version == 4 and o.len == 29
    u = BGPHeader(encode_update(65000, CGW_IN, ["192.168.0.0/16", "10.1.2.0/24"]))
    assert [n.prefix for n in u[BGPUpdate].nlri] == ["192.168.0.0/16", "10.1.2.0/24"]
    attrs = {a.type_code: a for a in u[BGPUpdate].path_attr}
    assert attrs[3].attribute.next_hop == CGW_IN  # NEXT_HOP
    assert attrs[2].attribute.segments[0].segment_value == [65000]  # AS_PATH
    assert BGPHeader(encode_keepalive()).haslayer(BGPKeepAlive)
    n = BGPHeader(encode_notification(4))
    assert n[BGPNotification].error_code == 4
    # And the other way: scapy's UPDATE decodes with ours.
    theirs = bytes(BGPHeader(type=2) / BGPUpdate(nlri=[BGPNLRI_IPv4(prefix="172.16.0.0/12")], path_attr=[]))
    msgs = decode_messages(theirs)
    assert msgs is not None and msgs[0][0] == 2
    assert _nlri(msgs[0][1]) == ["172.16.0.0/12"]


def test_malformed_bgp_is_counted_and_dropped() -> None:
    aws, cgw = _pair()
    broken = cgw._packet(b"\xff" * 16 + b"\x00\x05\x01")  # a message length of 5
    ip = parse4(broken)
    assert ip is not None and ip.proto == PROTO_TCP
    assert aws.receive(broken, 0.0) == ([], [])
    assert aws.counters == {"malformed": 1}
    assert aws.receive(broken[:30], 0.0) == ([], [])  # not even a whole TCP header
    assert aws.counters == {"malformed": 1, "ignored": 1}


@pytest.mark.parametrize("first", ["a", "b", "both"])
def test_session_comes_up_and_exchanges_prefixes(first: str) -> None:
    aws, cgw = _pair()
    w = Wire(aws, cgw)
    if first in ("a", "both"):
        w.carry("a", *aws.transport_up(0.0), 0.0)
    if first in ("b", "both"):
        w.carry("b", *cgw.transport_up(1.0 if first == "b" else 0.0), 1.0 if first == "b" else 0.0)
    else:
        w.carry("b", *cgw.transport_up(2.0), 2.0)
    assert aws.established and cgw.established
    assert aws.received_prefixes == ["192.168.0.0/16"] and cgw.received_prefixes == ["10.0.0.0/16"]
    assert aws.routes_usable and cgw.routes_usable
    assert [n for _, n, _ in w.names("a")] == ["bgp_session_up", "bgp_routes_received"]


def test_keepalives_and_hold_timer() -> None:
    aws, cgw = _pair(BgpTimers(hold_time=30, keepalive=10, connect_retry=5))
    w = Wire(aws, cgw)
    w.carry("b", *cgw.transport_up(0.0), 0.0)
    w.carry("a", *aws.transport_up(0.0), 0.0)
    w.run(55.0)
    keepalives = [t for t, who, p in w.sent if who == "b" and p.endswith(encode_keepalive()) and t > 0]
    assert keepalives == [10.0, 20.0, 30.0, 40.0, 50.0]
    w.cut = True  # the CGW's messages stop arriving: the last one got there at 50
    w.run(200.0)
    down = [(t, f) for t, n, f in w.names("a") if n == "bgp_session_down"]
    assert down[0] == (80.0, {"reason": "hold_timer_expired"})
    assert not aws.routes_usable and aws.received_prefixes == []
    # AWS keeps offering a new session every connect_retry while the transport is up.
    opens = [t for t, who, p in w.sent if who == "a" and t > 80 and decode_messages(p[40:]) == [(1, p[59:])]]
    assert opens[:3] == [85.0, 90.0, 95.0]
    w.cut = False
    w.run(205.0)
    assert aws.established and cgw.established


def test_transport_down_and_peer_restart() -> None:
    aws, cgw = _pair()
    w = Wire(aws, cgw)
    w.carry("b", *cgw.transport_up(0.0), 0.0)
    w.carry("a", *aws.transport_up(0.0), 0.0)
    assert aws.established
    _out, evs = aws.transport_down(5.0)
    assert [e.fields for e in evs] == [{"reason": "tunnel_down"}]
    assert aws.next_deadline() is None  # nothing retried without a transport
    # The CGW restarts (a new speaker): its OPEN reaches an established AWS end.
    aws2, cgw2 = _pair()
    w2 = Wire(aws2, cgw2)
    w2.carry("b", *cgw2.transport_up(0.0), 0.0)
    w2.carry("a", *aws2.transport_up(0.0), 0.0)
    fresh = BgpSpeaker(
        local_ip=CGW_IN, peer_ip=AWS_IN, local_asn=65000, peer_asn=64512, prefixes=["192.168.0.0/16"], active=True
    )
    w2.ends["b"] = fresh
    w2.carry("b", *fresh.transport_up(10.0), 10.0)
    names = [n for _, n, f in w2.names("a")]
    assert names.count("bgp_session_up") == 2
    assert ("bgp_session_down", {"reason": "peer_restarted"}) in [(n, f) for _, n, f in w2.names("a")]
    assert aws2.established and fresh.established


def test_notification_ends_the_session() -> None:
    aws, cgw = _pair()
    w = Wire(aws, cgw)
    w.carry("b", *cgw.transport_up(0.0), 0.0)
    w.carry("a", *aws.transport_up(0.0), 0.0)
    pkt = cgw._packet(encode_notification(6))  # Cease
    _out, evs = aws.receive(pkt, 3.0)
    assert [e.fields for e in evs] == [{"reason": "notification_received"}]
    assert aws.next_deadline() == 8.0  # connect retry


def test_bad_timers_are_refused() -> None:
    from emulator.errors import ConfigError

    with pytest.raises(ConfigError, match="hold_time"):
        BgpTimers(hold_time=2)
