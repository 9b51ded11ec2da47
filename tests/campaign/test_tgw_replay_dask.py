"""``awsnetemu tgw replay --dask``: partitions of whole flows on a LocalCluster, merged, give what one replay of
the whole capture gives (records, flow logs, counts), with every merged capture in time order."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from bench.bench_tgw import SEED, _write_capture
from emulator.campaign.tgw_partitioned import _pcap_records, partition_of
from emulator.cli import main
from tgw_dataplane.craft import build
from tgw_dataplane.packet import PROTO_TCP, TCP_ACK, TCP_SYN


def _records(path: Path) -> list[tuple[float, bytes]]:
    return [(t, rec) for t, _, rec in _pcap_records(path)]


def test_partitions_hold_whole_flows() -> None:
    a = build("10.0.1.10", "10.1.2.20", PROTO_TCP, 40000, 443, flags=TCP_SYN)
    b = build("10.1.2.20", "10.0.1.10", PROTO_TCP, 443, 40000, flags=TCP_SYN | TCP_ACK)
    for parts in (2, 3, 7, 64):
        assert partition_of(a, parts) == partition_of(b, parts)
    assert len({partition_of(build("10.0.1.10", "10.1.2.20", PROTO_TCP, p, 443), 7) for p in range(1000, 1100)}) == 7
    assert partition_of(b"\x45\x00", 5) == 0  # unparsable: partition 0


def test_dask_replay_matches_one_replay(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pcap = tmp_path / "in.pcap"
    _write_capture(pcap, 6000, n_flows=300, interval=0.05)  # 300 s of capture: several flow-log windows
    one, many = tmp_path / "one", tmp_path / "many"
    common = ["tgw", "replay", str(SEED), str(pcap), "--appliance-mode", "tgw-attach-c=on"]
    assert main([*common, "--out", str(one)]) == 0
    assert main([*common, "--out", str(many), "--dask", "local", "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert "6000 packets" in out
    s1 = json.loads((one / "summary.json").read_text())
    s2 = json.loads((many / "summary.json").read_text())
    assert s1 == s2  # dicts compare without order
    assert not (many / ".partitions").exists()
    names = sorted(p.name for p in (one / "hops").iterdir())
    assert names == sorted(p.name for p in (many / "hops").iterdir()) and len(names) >= 4
    for name in names:
        r1, r2 = _records(one / "hops" / name), _records(many / "hops" / name)
        assert Counter(r1) == Counter(r2), name
        assert [t for t, _ in r2] == sorted(t for t, _ in r2)  # merged in time order
        assert (one / "hops" / name).read_bytes()[:24] == (many / "hops" / name).read_bytes()[:24]
    l1 = (one / "flowlogs.txt").read_text().splitlines()
    l2 = (many / "flowlogs.txt").read_text().splitlines()
    assert l1[0] == l2[0] and Counter(l1[1:]) == Counter(l2[1:]) and len(l1) > 20
    start = l2[0].split().index("start")
    starts = [int(line.split()[start]) for line in l2[1:]]
    assert starts == sorted(starts)


def test_dask_replay_flag_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pcap = tmp_path / "in.pcap"
    _write_capture(pcap, 10, n_flows=5)
    rc = main(
        ["tgw", "replay", str(SEED), str(pcap), "--out", str(tmp_path / "o"), "--dask", "local", "--workers", "0"]
    )
    assert rc == 2 and "--workers: 0 (allowed: 1..256)" in capsys.readouterr().err
