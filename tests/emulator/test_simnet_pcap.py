from __future__ import annotations

import io
import struct

import pytest

from emulator.actions import Action, Address, Event, Transmit
from emulator.keytables import KeyTables
from emulator.link import FaultPlan
from emulator.pcap import LINKTYPE_RAW, PcapWriter, read_pcap, udp_frame
from emulator.simnet import SimNetwork
from emulator.trace import Trace

pytestmark = pytest.mark.toy_events  # toy ping/pong nodes


class PingNode:
    """A tiny sans-I/O node: sends a ping every `period` seconds, answers pings with pongs."""

    def __init__(self, me: Address, peer: Address, period: float | None) -> None:
        self.me, self.peer, self.period = me, peer, period
        self.next_at: float | None = None
        self.pongs: list[float] = []

    def start(self, now: float) -> list[Action]:
        if self.period is not None:
            self.next_at = now
        return []

    def receive_datagram(self, data: bytes, src: Address, dst: Address, now: float) -> list[Action]:
        if data == b"ping":
            return [Transmit(b"pong", self.me, src, "pong"), Event("ping_received")]
        self.pongs.append(now)
        return [Event("pong_received", {"at": now})]

    def next_deadline(self) -> float | None:
        return self.next_at

    def handle_timer(self, now: float) -> list[Action]:
        if self.next_at is None or now < self.next_at:
            return []
        assert self.period is not None
        self.next_at = now + self.period
        return [Transmit(b"ping", self.me, self.peer, "ping")]


def _net(seed: int = 0, **kw: object) -> tuple[SimNetwork, PingNode, PingNode]:
    a = PingNode(("10.0.0.1", 500), ("10.0.0.2", 500), 10.0)
    b = PingNode(("10.0.0.2", 500), ("10.0.0.1", 500), None)
    net = SimNetwork(seed, **kw)  # type: ignore[arg-type]
    net.add_node("a", a, ["10.0.0.1"])
    net.add_node("b", b, ["10.0.0.2"])
    return net, a, b


def test_simnet_timers_and_delivery() -> None:
    net, a, _ = _net()
    net.set_faults("10.0.0.1", "10.0.0.2", FaultPlan(delay=0.5))
    net.start_all()
    net.run_until(35)
    assert a.pongs == [0.5, 10.5, 20.5, 30.5]
    assert [r.t for r in net.trace.select("ping_received")] == [0.5, 10.5, 20.5, 30.5]


def test_simnet_one_way_blackhole_and_kind_drop() -> None:
    net, a, _ = _net()
    net.set_faults("10.0.0.2", "10.0.0.1", FaultPlan(drop_kinds=frozenset({"pong"}), drop_kinds_window=(5, 25)))
    net.start_all()
    net.run_until(35)
    assert a.pongs == [0.0, 30.0]
    assert len(net.trace.select("ping_received")) == 4


def test_simnet_crash_and_revive() -> None:
    net, a, _b = _net()
    net.start_all()
    net.at(5, lambda: net.crash("b"))
    net.at(25, lambda: net.revive("b"))
    net.run_until(35)
    assert a.pongs == [0.0, 30.0]
    assert [r.event for r in net.trace.select(node="b") if r.event.startswith("node_")] == [
        "node_crashed",
        "node_revived",
    ]


def test_simnet_pcap_is_valid_ipv4_udp() -> None:
    buf = io.BytesIO()
    net, _, _ = _net(pcap=PcapWriter(buf, LINKTYPE_RAW, ts_origin=1_700_000_000))
    net.start_all()
    net.run_until(15)
    raw = buf.getvalue()
    magic, _, _, _, _, _, linktype = struct.unpack("<IHHiIII", raw[:24])
    assert magic == 0xA1B2C3D4 and linktype == LINKTYPE_RAW
    # 2 pings + 2 pongs
    assert raw.count(b"ping") == 2 and raw.count(b"pong") == 2


def test_udp_frame_checksums(tmp_path: object) -> None:
    frame = udp_frame("192.0.2.1", 500, "192.0.2.2", 4500, b"\x00\x00\x00\x00hello")
    # IPv4 header checksum verifies to zero
    words = struct.unpack("!10H", frame[:20])
    s = sum(words)
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    assert s == 0xFFFF
    assert frame[9] == 17 and struct.unpack("!H", frame[22:24])[0] == 4500
    v6 = udp_frame("2001:db8::1", 500, "2001:db8::2", 500, b"x")
    assert v6[0] >> 4 == 6 and len(v6) == 40 + 8 + 1


def test_pcap_round_trip(tmp_path: object) -> None:
    import os

    path = os.path.join(str(tmp_path), "x.pcap")
    w = PcapWriter.open(path, ts_origin=100.0)
    w.write_udp(1.25, ("10.0.0.1", 500), ("10.0.0.2", 500), b"abc")
    w.close()
    ((ts, frame),) = read_pcap(path)
    assert ts == 101.25 and frame.endswith(b"abc")


def test_trace_jsonl(tmp_path: object) -> None:
    out = io.StringIO()
    t = Trace(out)
    t.add(1.5, "aws", "dpd_request_sent", {"seq": 7})
    assert out.getvalue() == '{"t": 1.5, "node": "aws", "event": "dpd_request_sent", "seq": 7}\n'
    assert t.first("dpd_request_sent", seq=7) is not None
    assert t.first("dpd_request_sent", seq=8) is None


def test_keytables_format(tmp_path: object) -> None:
    import os

    d = os.path.join(str(tmp_path), "keys")
    kt = KeyTables(d)
    kt.add({"ike_version": 1, "icookie": "0102030405060708", "rcookie": "1112131415161718", "enc_key": "aa" * 16})
    kt.add(
        {
            "ike_version": 2,
            "spi_i": "01" * 8,
            "spi_r": "02" * 8,
            "sk_ei": "03" * 16,
            "sk_er": "04" * 16,
            "encr_alg": "AES-CBC-128 [RFC3602]",
            "sk_ai": "05" * 32,
            "sk_ar": "06" * 32,
            "integ_alg": "HMAC_SHA2_256_128 [RFC4868]",
        }
    )
    with open(os.path.join(d, "ikev1_decryption_table")) as f:
        assert f.read() == "0102030405060708," + "aa" * 16 + "\n"
    with open(os.path.join(d, "ikev2_decryption_table")) as f:
        line = f.read().strip()
    assert line.split(",")[4] == '"AES-CBC-128 [RFC3602]"' and line.endswith('"HMAC_SHA2_256_128 [RFC4868]"')
    assert kt.tshark_options()[0] == "-o"
