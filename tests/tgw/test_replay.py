"""The streaming replay (tgw_dataplane.replay): what it writes in chunks equals what one undrained dataplane run
captures and logs, whatever the chunk size; pcap input checks (tgw_dataplane.pcapfile)."""

from __future__ import annotations

import io
import random
import struct

import pytest

from emulator.errors import ConfigError
from tests.tgw.conftest import topo
from tgw_dataplane.capture import HopCaptures
from tgw_dataplane.craft import build
from tgw_dataplane.dataplane import Dataplane
from tgw_dataplane.packet import PROTO_ICMP, PROTO_TCP, PROTO_UDP, TCP_ACK, TCP_SYN
from tgw_dataplane.pcapfile import MAX_RECORD, check_pcap, iter_frames
from tgw_dataplane.replay import flow_name, replay


class MemoryOutput:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.lines: list[str] = []
        self.chunks = 0

    def hop_capture(self, node: str, file_name: str, data: bytes) -> None:
        self.files[file_name] = self.files.get(file_name, b"") + data
        self.chunks += 1

    def flow_log_lines(self, lines: list[str]) -> None:
        self.lines.extend(lines)


def _packets(n: int, seed: int = 1) -> list[tuple[float, bytes]]:
    """Random traffic between the seed's hosts (and an unknown source), spread over several 60 s windows."""
    rng = random.Random(seed)
    hosts = ["10.0.1.10", "10.1.2.20", "10.9.9.9"]
    t = 1_700_000_000.25
    out = []
    for _ in range(n):
        t += rng.choice([0.0, 0.001, 0.5, 7.0])
        a, b = rng.sample(hosts, 2)
        proto = rng.choice([PROTO_TCP, PROTO_TCP, PROTO_UDP, PROTO_ICMP])
        flags = rng.choice([TCP_SYN, TCP_SYN | TCP_ACK, TCP_ACK])
        data = build(a, b, proto, rng.randrange(40000, 40020), 443, flags=flags, icmp_type=rng.choice([0, 8]))
        out.append((t, data if rng.random() > 0.02 else data[:7]))
    return out


def _reference(pkts: list[tuple[float, bytes]]) -> tuple[HopCaptures, list[str], Dataplane]:
    """One dataplane run keeping everything in memory (what the replay did before it streamed)."""
    t0 = pkts[0][0]
    caps = HopCaptures(ts_origin=t0)
    dp = Dataplane(topo("seed"), flow_logs=True, capture_sink=caps)
    assert dp.flow_logs is not None
    dp.flow_logs.ts_origin = t0
    owner = {"10.0.1.10": "i-a", "10.1.2.20": "i-b"}
    for ts, frame in pkts:
        src = "-"
        if len(frame) >= 20:
            src = owner.get(".".join(str(x) for x in frame[12:16]), "-")
        dp.send(frame, src, ts - t0)
    return caps, dp.flow_logs.lines(), dp


@pytest.mark.parametrize("flush_every", [1, 7, 500, 10**9])
def test_streamed_outputs_equal_one_undrained_run(flush_every: int) -> None:
    pkts = _packets(1500)
    caps, lines, dp = _reference(pkts)
    out = MemoryOutput()
    s = replay(topo("seed"), iter(pkts), out, flush_every=flush_every)
    assert out.lines == lines
    assert len({line.split()[23] for line in lines[1:]}) > 3  # several aggregation windows
    want = {HopCaptures.file_name(n): caps.pcap_bytes(n) for n, r in caps.records.items() if r}
    assert out.files == want
    assert sorted(s.hop_captures) == sorted(want)
    assert (s.packets, s.delivered, s.drops) == (len(pkts), dp.delivered, dp.drops)
    assert sum(f.packets for f in s.flows.values()) == len(pkts)
    if flush_every == 1:
        assert out.chunks > len(want) * 10  # it really streamed


def test_flow_names_and_summary_document() -> None:
    syn = build("10.0.1.10", "10.1.2.20", PROTO_TCP, 40000, 443, flags=TCP_SYN)
    ping = build("10.0.1.10", "10.1.2.20", PROTO_ICMP)
    s = replay(topo("seed"), [(5.0, syn), (5.5, ping), (6.0, b"\x45")], MemoryOutput())
    doc = s.to_json()
    assert list(doc["flows"]) == [
        "tcp 10.0.1.10:40000 > 10.1.2.20:443",
        "proto1 10.0.1.10 > 10.1.2.20",
        "unparsable (truncated)",
    ]
    assert doc["drops"] == {"truncated": 1} and doc["packets"] == 3 and doc["delivered"] == 2
    from tgw_dataplane.packet import Packet, parse

    p = parse(syn)
    assert isinstance(p, Packet) and flow_name(p) == "tcp 10.0.1.10:40000 > 10.1.2.20:443"


def test_empty_capture() -> None:
    out = MemoryOutput()
    s = replay(topo("seed"), [], out)
    assert (s.packets, s.flows, out.files, len(out.lines)) == (0, {}, {}, 1)


def test_unknown_appliance_mode_override_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"tgw-attach-zz.*allowed: tgw-attach-a, tgw-attach-b, tgw-attach-c"):
        replay(topo("seed"), [], MemoryOutput(), appliance_mode={"tgw-attach-zz": True})


# -- pcap input ------------------------------------------------------------------------------------------------


def _pcap(frames: list[bytes], *, magic: int = 0xA1B2C3D4, endian: str = "<", linktype: int = 101) -> bytes:
    out = struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)
    for i, f in enumerate(frames):
        out += struct.pack(endian + "IIII", 1_700_000_000 + i, 250_000, len(f), len(f)) + f
    return out


def test_pcap_reader_streams_every_format() -> None:
    frames = [build("10.0.1.10", "10.1.2.20", PROTO_UDP, 1, 2, payload=bytes(i)) for i in range(50)]
    for magic, units in ((0xA1B2C3D4, 1e6), (0xA1B23C4D, 1e9)):
        for endian in "<>":
            data = _pcap(frames, magic=magic, endian=endian)
            f = io.BytesIO(data)
            info = check_pcap(f, "x")
            assert info.records == 50
            f.seek(0)
            got = list(iter_frames(f, info))
            assert [g[1] for g in got] == frames
            assert got[3][0] == 1_700_000_003 + 250_000 / units
    eth = _pcap([b"\x02" * 12 + b"\x08\x00" + frames[0], b"\x02" * 12 + b"\x08\x06" + bytes(28)], linktype=1)
    f = io.BytesIO(eth)
    info = check_pcap(f, "e")
    f.seek(0)
    assert [g[1] for g in iter_frames(f, info)] == [frames[0], b""]  # ARP: dropped later as truncated


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "too short for a pcap file header"),
        (b"\x0a\x0d\x0d\x0a" + bytes(40), "pcapng is not supported"),
        (b"GIF89a" + bytes(30), "magic number 47494638"),
        (_pcap([], linktype=105), "link type 105 is not supported"),
        (_pcap([b"\x45" * 30])[:-1], "record 1 .* is cut short"),
        (_pcap([b"\x45" * 30]) + b"\x01\x02", "2 stray bytes after record 1"),
        (_pcap([]) + struct.pack("<IIII", 0, 0, MAX_RECORD + 1, 0), f"captured length {MAX_RECORD + 1}"),
        (_pcap([]) + struct.pack("<IIII", 0, 0, 0xFFFFFFFF, 0), "is larger than 262144"),
    ],
)
def test_bad_pcaps_are_config_errors(data: bytes, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_pcap(io.BytesIO(data), "in.pcap")


def test_pcap_reader_with_records_straddling_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Records larger than the read size, and record headers split across reads, in both passes."""
    from tgw_dataplane import pcapfile

    monkeypatch.setattr(pcapfile, "_CHUNK", 7)
    frames = [build("10.0.1.10", "10.1.2.20", PROTO_UDP, 1, 2, payload=bytes(i * 3)) for i in range(30)]
    f = io.BytesIO(_pcap(frames))
    info = check_pcap(f, "x")
    f.seek(0)
    assert info.records == 30 and [g[1] for g in iter_frames(f, info)] == frames
    with pytest.raises(ConfigError, match=r"record 30 .* is cut short"):
        check_pcap(io.BytesIO(_pcap(frames)[:-1]), "x")
