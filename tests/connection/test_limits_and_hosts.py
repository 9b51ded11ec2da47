"""Token buckets (AWS's per-tunnel figures, EC2 burst credits with the seed's t3.micro figures) and the emulated
hosts' echo answers (ICMP and UDP checked by scapy, TCP by a scripted client)."""

from __future__ import annotations

import os

import pytest

from cgw_peer.connection.hosts import TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, EchoHost
from cgw_peer.connection.limits import INSTANCE_BANDWIDTH, Ec2Bandwidth, TokenBucket, TunnelLimit
from cgw_peer.connection.packets import icmp4, ip_bytes, parse4, probe_payload, read_probe, tcp4, udp4
from emulator.connection import ConnectionScenario
from emulator.scenario import Scenario

HOST = "10.0.1.10"
CLIENT = "192.168.10.5"


def test_token_bucket() -> None:
    b = TokenBucket(rate=100.0, depth=10.0)
    assert all(b.take(1, 0.0) for _ in range(10)) and not b.take(1, 0.0)
    assert b.take(1, 0.01) and not b.take(1, 0.01)  # one unit per 10 ms
    assert not b.take(1, 0.005)  # time never runs backwards
    assert b.refill(100.0) == 10.0  # capped at the depth


@pytest.mark.parametrize("seconds", [300.0, 3600.0])
def test_seed_t3_micro_bursts_then_falls_to_baseline(seconds: float) -> None:
    """The seed's example: a t3.micro (5 Gbps burst, 0.064 Gbps baseline) offered 1 Gbps, one 10-MB chunk every
    80 ms. Everything passes while the credits last: (5 - 0.064) Gbps x ``seconds`` of credit, drained at
    (1 - 0.064) Gbps, so they run out after 4.936 / 0.936 x ``seconds``; then the instance gets its baseline."""
    t3 = INSTANCE_BANDWIDTH["t3.micro"]
    assert (t3.baseline, t3.burst) == (0.064e9, 5.0e9)
    # A 10-MB chunk stands for 80 ms of packets at the offered rate; the peak bucket is made 20 ms deep (100 Mbit
    # at 5 Gbps) to hold one.
    bw = Ec2Bandwidth(t3.baseline, t3.burst, burst_seconds=seconds, peak_window=0.02)
    chunk = 10_000_000  # octets
    offered = 1e9
    dt = chunk * 8 / offered
    predicted = (t3.burst - t3.baseline) * seconds / (offered - t3.baseline)
    n = int((predicted + 600) / dt)
    passed_at = [i * dt for i in range(n) if bw.admit(chunk, i * dt)]
    assert bw.exhausted_at is not None
    assert bw.exhausted_at == pytest.approx(predicted, abs=2 * dt)
    before = [t for t in passed_at if t < bw.exhausted_at]
    assert len(before) == pytest.approx(bw.exhausted_at / dt, abs=2)  # everything, at the offered 1 Gbps
    after = [t for t in passed_at if t >= bw.exhausted_at + 1]
    rate = len(after) * chunk * 8 / (n * dt - bw.exhausted_at - 1)
    assert rate == pytest.approx(t3.baseline, rel=0.01)


def test_below_baseline_credits_refill() -> None:
    bw = Ec2Bandwidth(1e6, 10e6, burst_seconds=1.0)  # 9 Mbit of credit
    t = 0.0
    while bw.admit(1250, t):  # 10 kbit packets at 10 Mbit/s
        t += 0.001
    assert bw.exhausted_at == pytest.approx(1.0, abs=0.01)
    t += 20.0  # 20 s idle refill 20 Mbit, capped at 9
    assert bw.credits.refill(t) == pytest.approx(9e6)


def test_tunnel_limit_packets_and_bits() -> None:
    lim = TunnelLimit(bps=1.25e9, pps=140_000, window=0.01)
    ok = sum(lim.admit(100, 0.0) is None for _ in range(2000))
    assert ok == 1400 and lim.drops == {"tunnel_pps_exceeded": 600}  # 10 ms of 140,000 packets/s
    big = TunnelLimit(bps=1.25e9, pps=1e9, window=0.01)
    ok = sum(big.admit(1500, 0.0) is None for _ in range(2000))
    assert ok == 1041 and big.drops == {"tunnel_bandwidth_exceeded": 959}  # 12.5 Mbit / 12 kbit


def test_burst_scenario_end_to_end() -> None:
    path = os.path.join(
        os.path.dirname(__file__), "..", "..", "emulator", "scenarios", "17-connection-burst-credits.yaml"
    )
    sc = Scenario.load(path)
    assert isinstance(sc, ConnectionScenario)
    res = sc.run()
    assert res.ok, [r.detail for r in res.results if not r.ok]
    recs = list(res.trace)
    (ex,) = [r for r in recs if r.event == "ec2_credits_exhausted"]
    flow = next(f for f in sc.flows if f.name == "bulk")
    spec = sc.instances_bw["i-app"]
    offered = flow.rate * flow.size * 8
    predicted = flow.start + (spec.burst - spec.baseline) * spec.burst_seconds / (offered - spec.baseline)
    assert ex.t == pytest.approx(predicted, abs=2 / flow.rate)
    m = [r.fields for r in recs if r.event == "flow_metrics" and r.fields["name"] == "bulk"]
    full = [x["delivered_bps"] for x in m if flow.start <= x["start"] and x["start"] + 1 <= ex.t]
    base = [x["delivered_bps"] for x in m if x["start"] >= ex.t + 0.5 and x["start"] + 1 <= flow.until]
    assert full and all(x == pytest.approx(offered, rel=0.001) for x in full)
    assert base and all(x == pytest.approx(spec.baseline, rel=0.01) for x in base)


# -- hosts ----------------------------------------------------------------------------------------------------


def test_icmp_and_udp_echo_checked_by_scapy() -> None:
    from scapy.layers.inet import ICMP, IP, UDP

    h = EchoHost([HOST])
    req = bytes(IP(src=CLIENT, dst=HOST, ttl=60) / ICMP(type=8, id=7, seq=3) / b"payload-123")
    (rep,) = h.respond(req)
    p = IP(rep)
    assert p.src == HOST and p.dst == CLIENT and p[ICMP].type == 0 and p[ICMP].id == 7 and p[ICMP].seq == 3
    assert bytes(p[ICMP].payload) == b"payload-123"
    assert p[IP].chksum == IP(bytes(p))[IP].__class__(bytes(p)).chksum  # parses with its own checksum
    ref = IP(rep)
    del ref[IP].chksum, ref[ICMP].chksum
    assert bytes(IP(bytes(ref))) == rep  # scapy computes the same checksums
    ureq = bytes(IP(src=CLIENT, dst=HOST) / UDP(sport=40000, dport=7) / b"hello")
    (urep,) = h.respond(ureq)
    u = IP(urep)
    assert (u[UDP].sport, u[UDP].dport, bytes(u[UDP].payload)) == (7, 40000, b"hello")
    ref = IP(urep)
    del ref[IP].chksum, ref[UDP].chksum
    assert bytes(IP(bytes(ref))) == urep
    # Not ours, not echo, broken: no answer.
    assert h.respond(bytes(IP(src=CLIENT, dst="10.9.9.9") / ICMP(type=8))) == []
    assert h.respond(bytes(IP(src=CLIENT, dst=HOST) / ICMP(type=0))) == []
    assert h.respond(b"\x45\x00") == []
    assert h.ignored == 3 and h.answered == 2


def test_tcp_echo_conversation() -> None:
    h = EchoHost([HOST])
    c, s = ip_bytes(CLIENT), ip_bytes(HOST)

    def seg(seq: int, ack: int, flags: int, data: bytes = b"") -> bytes:
        return tcp4(c, s, 50000, 7, seq, ack, flags, data)

    def read(pkt: bytes) -> tuple[int, int, int, bytes]:
        ip = parse4(pkt)
        assert ip is not None
        t = pkt[ip.start : ip.end]
        return int.from_bytes(t[4:8], "big"), int.from_bytes(t[8:12], "big"), t[13], t[20:]

    (syn_ack,) = h.respond(seg(1000, 0, TCP_SYN))
    isn, ack, flags, _ = read(syn_ack)
    assert flags == TCP_SYN | TCP_ACK and ack == 1001
    assert h.respond(seg(1001, isn + 1, TCP_ACK)) == []
    (echo,) = h.respond(seg(1001, isn + 1, TCP_ACK | TCP_PSH, b"abc"))
    assert read(echo) == (isn + 1, 1004, TCP_ACK | TCP_PSH, b"abc")
    (again,) = h.respond(seg(1001, isn + 1, TCP_ACK | TCP_PSH, b"abc"))  # a retransmission: the same echo
    assert again == echo
    (dup,) = h.respond(seg(2000, isn + 4, TCP_ACK | TCP_PSH, b"zz"))  # out of order: duplicate ACK
    assert read(dup)[:3] == (isn + 4, 1004, TCP_ACK)
    (fin,) = h.respond(seg(1004, isn + 4, TCP_ACK | TCP_FIN))
    assert read(fin)[:3] == (isn + 4, 1005, TCP_FIN | TCP_ACK)
    assert h.respond(seg(1005, isn + 5, TCP_ACK)) == []  # the last ACK closes the connection
    (rst,) = h.respond(seg(1005, isn + 5, TCP_ACK | TCP_PSH, b"late"))  # no connection any more: reset
    assert read(rst)[2] == TCP_RST


def test_probe_header_round_trip() -> None:
    pkt = udp4(ip_bytes(CLIENT), ip_bytes(HOST), 40001, 5001, probe_payload(3, 77, 12.5, 100))
    assert len(pkt) == 128
    p = read_probe(pkt)
    assert p is not None and (p.flow, p.seq, p.sent_at) == (3, 77, 12.5)
    assert read_probe(icmp4(ip_bytes(CLIENT), ip_bytes(HOST), 8, 1, 1, b"ANE1" + bytes(20))) is None
