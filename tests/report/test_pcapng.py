"""Our pcapng writer against its own reader and against scapy's pcapng reader (an independent one)."""

from __future__ import annotations

import io
from pathlib import Path

from emulator.pcap import udp_frame
from emulator.pcapng import PcapngWriter, read_pcap_us, read_pcapng


def _write(path: Path) -> list[tuple[int, bytes, str]]:
    pkts = [
        (1_767_225_600_000_000 + i * 1_000_250, udp_frame("10.0.0.1", 500, "10.0.0.2", 500, bytes(range(i + 1))), c)
        for i, c in enumerate(["first", "zweite: ü, 0x2b7f", "", "a longer comment " * 20])
    ]
    with open(path, "wb") as f:
        w = PcapngWriter(f, comment="section")
        a = w.add_interface(101, "simnet", "desc")
        b = w.add_interface(101, "other")
        for n, (ts, frame, c) in enumerate(pkts):
            w.write(frame, ts_us=ts, interface=a if n % 2 == 0 else b, comment=c or None)
    return pkts


def test_round_trip(tmp_path: Path) -> None:
    p = tmp_path / "x.pcapng"
    pkts = _write(p)
    got = read_pcapng(str(p))
    assert got.interfaces == [(101, "simnet"), (101, "other")]
    assert got.comments == ["section"]
    assert [(x.ts_us, x.data, x.comments) for x in got.packets] == [(t, f, [c] if c else []) for t, f, c in pkts]
    assert [x.interface for x in got.packets] == [0, 1, 0, 1]
    assert p.stat().st_size % 4 == 0


def test_scapy_reads_comments_and_timestamps(tmp_path: Path) -> None:
    from scapy.utils import PcapNgReader

    p = tmp_path / "x.pcapng"
    pkts = _write(p)
    with PcapNgReader(str(p)) as r:
        got = list(r)
    assert len(got) == len(pkts)
    for g, (ts, frame, c) in zip(got, pkts, strict=True):
        assert bytes(g) == frame
        assert round(float(g.time) * 1_000_000) == ts
        comment = getattr(g, "comment", None)
        assert (comment.decode() if isinstance(comment, bytes) else comment or "") == c


def test_classic_pcap_reader_keeps_microseconds(tmp_path: Path) -> None:
    from emulator.pcap import PcapWriter

    buf = io.BytesIO()
    w = PcapWriter(buf, 101, ts_origin=1_767_225_600.0)
    w.write(60.750159686, b"\x45" + b"\0" * 19)
    p = tmp_path / "a.pcap"
    p.write_bytes(buf.getvalue())
    lt, recs = read_pcap_us(str(p))
    assert lt == 101 and recs[0][0] == 1_767_225_660_750_160


def test_tgw_path_capture_in_both_formats(tour_dir: Path) -> None:
    paths = sorted((tour_dir / "tgw").glob("*-hops/path.pcapng"))
    assert len(paths) == 5
    for p in paths:
        ng = read_pcapng(str(p))
        lt, plain = read_pcap_us(str(p.with_suffix(".pcap")))
        assert lt == 101 and [(x.ts_us, x.data) for x in ng.packets] == plain
        # one named interface per capture point, and each per-point file holds that point's packets
        names = [n for _lt, n in ng.interfaces]
        for i, name in enumerate(names):
            mine = [(x.ts_us, x.data, x.comments) for x in ng.packets if x.interface == i]
            own = read_pcapng(str(p.parent / f"{name}.pcapng"))
            assert [(x.ts_us, x.data, x.comments) for x in own.packets] == mine
