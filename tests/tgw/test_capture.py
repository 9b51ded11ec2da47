"""HopCaptures writes the same pcap bytes as emulator.pcap.PcapWriter (the shared reference writer)."""

from __future__ import annotations

import io
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from emulator.pcap import PcapWriter, read_pcap
from tgw_dataplane.capture import HopCaptures


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
