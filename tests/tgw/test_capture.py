"""HopCaptures writes the same pcap bytes as emulator.pcap.PcapWriter (the shared reference writer)."""

from __future__ import annotations

import io
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from emulator.pcap import PcapWriter, read_pcap
from tests.tgw.conftest import topo
from tgw_dataplane.capture import HopCaptures
from tgw_dataplane.craft import build, checksum
from tgw_dataplane.dataplane import Dataplane
from tgw_dataplane.packet import PROTO_TCP, TCP_ACK, TCP_PSH, TCP_SYN


@given(
    st.lists(st.tuples(st.floats(0, 1e6, allow_nan=False), st.binary(min_size=1, max_size=80)), max_size=20),
    st.sampled_from([0.0, 1_700_000_000.0]),
)
def test_same_bytes_as_pcapwriter(recs: list[tuple[float, bytes]], origin: float) -> None:
    ref = io.BytesIO()
    w = PcapWriter(ref, ts_origin=origin)
    cap = HopCaptures(ts_origin=origin)
    for ts, frame in recs:
        w.write(ts, frame)
        cap("n", ts, frame)
    assert cap.pcap_bytes("n") == ref.getvalue()
    assert [f for _, f in cap.frames("n")] == [f for _, f in recs]


def test_write_and_clear(tmp_path: Path) -> None:
    cap = HopCaptures()
    cap("tgw-1.tgw-attach-a", 1.5, b"\x45" + bytes(19))
    cap("i/a", 2.0, b"\x60" + bytes(39))
    paths = cap.write(tmp_path)
    assert sorted(p.name for p in paths) == ["i_a.pcap", "tgw-1.tgw-attach-a.pcap"]
    assert read_pcap(str(tmp_path / "tgw-1.tgw-attach-a.pcap")) == [(1.5, b"\x45" + bytes(19))]
    keep = cap.pieces("i/a")
    cap.clear()
    assert keep == [] and cap.pieces("i/a") is keep and cap.file_names() == {}


def test_fast_path_records_share_the_rest_of_the_frame() -> None:
    """Through the seed topology (two TGW hops), a flow's later packets take the plan's capture path: a record
    whose TTL the TGW lowered is stored as (header + first 12 bytes, shared rest of the frame). The decoded
    frames carry the lowered TTL and a correct IPv4 header checksum, and the pcap files are the bytes the
    slow path writes."""
    flow = [
        (build("10.0.1.10", "10.1.2.20", PROTO_TCP, 40000, 443, flags=TCP_SYN), "i-a"),
        (build("10.1.2.20", "10.0.1.10", PROTO_TCP, 443, 40000, flags=TCP_SYN | TCP_ACK), "i-b"),
        (build("10.0.1.10", "10.1.2.20", PROTO_TCP, 40000, 443, flags=TCP_ACK), "i-a"),
        (build("10.0.1.10", "10.1.2.20", PROTO_TCP, 40000, 443, flags=TCP_ACK | TCP_PSH, payload=bytes(300)), "i-a"),
    ]
    caps = {}
    for cache in (False, True):
        t = topo("seed")
        t.tgws["tgw-1"].attachments["tgw-attach-c"].appliance_mode = True  # type: ignore[union-attr]
        cap = HopCaptures()
        dp = Dataplane(t, flow_cache=cache, capture_sink=cap)
        for i, (data, src) in enumerate(flow):
            assert dp.send(data, src, 0.25 * i).verdict == "delivered"
        caps[cache] = cap
    fast = caps[True]
    last = fast.records["i-b"][-2:]  # the data packet's record at the far end: two TGW hops, TTL 64 - 2
    assert len(last[0]) == 16 + 12 and len(last[1]) == len(flow[-1][0]) - 12
    assert fast.records["i-a"][-1] is flow[-1][0]  # TTL unchanged at the source: the packet itself
    for node in caps[False].records:
        assert fast.pcap_bytes(node) == caps[False].pcap_bytes(node), node
    frame = fast.frames("i-b")[-1][1]
    assert frame[8] == 62 and checksum(frame[:20]) == 0 and frame[12:] == flow[-1][0][12:]
