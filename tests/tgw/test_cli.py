"""``awsnetemu tgw trace`` and ``awsnetemu tgw replay``; tshark reads the per-hop captures (realpeer)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from emulator.cli import main
from emulator.pcap import LINKTYPE_ETHERNET, PcapWriter, read_pcap
from tests.tgw.conftest import FIXTURES
from tests.tools import require_tool
from tgw_dataplane.craft import build
from tgw_dataplane.packet import PROTO_ICMP, PROTO_TCP, PROTO_UDP, TCP_ACK, TCP_SYN, Packet, parse

SEED = str(FIXTURES / "seed.yaml")
DUAL = str(FIXTURES / "dualstack.yaml")
FLOW = "tcp 10.0.1.10:40000 > 10.1.2.20:443"


def test_trace_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tgw", "trace", SEED, "--flow", FLOW]) == 0
    out = capsys.readouterr().out
    assert "== forward: delivered" in out
    assert "== reverse: dropped (appliance_no_state)" in out
    for s in (
        "tgw-rtb-spoke",
        "0.0.0.0/0 -> tgw-attach-c (static)",
        "eni-c-use1-az2",
        "i-fw2",
        "use1" not in out or "az=us-east-1b",
    ):
        assert s in out


def test_trace_json_with_appliance_mode(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tgw", "trace", SEED, "--flow", FLOW, "--json", "--appliance-mode", "tgw-attach-c=on"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) == {"forward", "reverse"}
    for d in doc.values():
        assert set(d) == {"verdict", "reason", "hops"}
        assert d["verdict"] == "delivered" and d["reason"] is None
        for h in d["hops"]:
            assert {"node", "kind"} <= set(h)
    fw = [[h["node"] for h in d["hops"] if h["kind"] == "stateful-firewall"] for d in doc.values()]
    assert fw[0] == fw[1] and len(fw[0]) == 1
    tgw_hops = [h for h in doc["forward"]["hops"] if h["kind"] == "tgw"]
    assert [h["route_table"] for h in tgw_hops] == ["tgw-rtb-spoke", "tgw-rtb-inspect"]
    assert all(h["attachment"] and h["eni"] and h["az"] and h["route"] for h in tgw_hops)


def test_trace_json_off_reports_the_drop(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tgw", "trace", SEED, "--flow", FLOW, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["forward"]["verdict"] == "delivered"
    assert (doc["reverse"]["verdict"], doc["reverse"]["reason"]) == ("dropped", "appliance_no_state")


@pytest.mark.parametrize(
    ("flow", "proto"), [("udp 10.0.1.10:5000 > 10.1.2.20:53", PROTO_UDP), ("icmp 10.0.1.10 > 10.1.2.20", PROTO_ICMP)]
)
def test_trace_udp_icmp(capsys: pytest.CaptureFixture[str], flow: str, proto: int) -> None:
    assert main(["tgw", "trace", SEED, "--flow", flow, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["forward"]["verdict"] == "delivered"
    if proto == PROTO_ICMP:  # echo reply at a firewall without state
        assert doc["reverse"]["reason"] == "appliance_no_state"
    else:  # UDP: the reverse datagram creates state at FW2 (permissive policy)
        assert doc["reverse"]["verdict"] == "delivered"


@pytest.mark.parametrize(
    "args",
    [
        ["tgw", "trace", SEED, "--flow", "tcp 10.0.1.10 > 10.1.2.20"],
        ["tgw", "trace", SEED, "--flow", "tcp 10.7.7.7:1 > 10.1.2.20:2"],
        ["tgw", "trace", "/nonexistent.yaml", "--flow", FLOW],
        ["tgw", "trace", SEED, "--flow", FLOW, "--appliance-mode", "tgw-attach-z=on"],
    ],
)
def test_trace_bad_usage_is_config_error(capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    assert main(args) == 2
    assert "configuration error" in capsys.readouterr().err


def _input_pcap(path: Path, ethernet: bool = False) -> int:
    pk: list[bytes] = []
    for sp in range(40000, 40004):
        pk.append(build("10.0.1.10", "10.1.2.20", PROTO_TCP, sp, 443, flags=TCP_SYN))
        pk.append(build("10.1.2.20", "10.0.1.10", PROTO_TCP, 443, sp, flags=TCP_SYN | TCP_ACK))
        pk.append(build("10.0.1.10", "10.1.2.20", PROTO_TCP, sp, 443, flags=TCP_ACK, payload=b"\x17\x03\x03\x00\x02hi"))
    pk.append(build("10.0.1.10", "10.1.2.20", PROTO_UDP, 5353, 53, payload=b"\x12\x34" + bytes(10)))
    pk.append(b"\x45\x00\x00")  # truncated
    pk.append(build("10.9.9.9", "10.1.2.20", PROTO_TCP, 1, 2))  # nobody owns the source
    w = PcapWriter.open(str(path), LINKTYPE_ETHERNET if ethernet else 101)
    for i, p in enumerate(pk):
        frame = (b"\x02" * 12 + b"\x08\x00" + p) if ethernet else p
        w.write(1_700_000_000 + i * 0.001, frame)
    w.close()
    return len(pk)


@pytest.mark.parametrize("ethernet", [False, True])
def test_replay_writes_captures_flowlogs_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], ethernet: bool
) -> None:
    n = _input_pcap(tmp_path / "in.pcap", ethernet)
    out = tmp_path / "out"
    assert main(["tgw", "replay", SEED, str(tmp_path / "in.pcap"), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["packets"] == n
    assert summary["drops"] == {"appliance_no_state": 4, "truncated": 1, "unknown_source": 1}
    flows = summary["flows"]
    assert flows["tcp 10.0.1.10:40000 > 10.1.2.20:443"] == {"packets": 2, "delivered": 2, "dropped": 0, "reasons": {}}
    assert flows["tcp 10.1.2.20:443 > 10.0.1.10:40000"]["reasons"] == {"appliance_no_state": 1}
    assert flows["udp 10.0.1.10:5353 > 10.1.2.20:53"]["delivered"] == 1
    hops = {p.name for p in (out / "hops").iterdir()}
    assert {
        "i-a.pcap",
        "tgw-1.tgw-attach-a.pcap",
        "tgw-1.tgw-attach-c.pcap",
        "i-fw1.pcap",
        "i-fw2.pcap",
        "eni-c-use1-az1.pcap",
        "i-b.pcap",
    } <= hops
    # the TGW capture holds every packet that entered it, with the TTL it had on arrival
    tgw = [parse(f) for n in ("a", "b", "c") for _, f in read_pcap(str(out / "hops" / f"tgw-1.tgw-attach-{n}.pcap"))]
    assert all(isinstance(p, Packet) for p in tgw)
    assert sorted({p.ttl for p in tgw if isinstance(p, Packet)}) == [63, 64]
    at_b = [parse(f) for _, f in read_pcap(str(out / "hops" / "i-b.pcap"))]
    # sent by i-b: TTL 64; delivered to i-b after two TGW hops (setting ttl_decrement): 62
    ttls = {(p.dst == 0x0A010214, p.ttl) for p in at_b if isinstance(p, Packet)}
    assert ttls == {(True, 62), (False, 64)}
    lines = (out / "flowlogs.txt").read_text().splitlines()
    assert lines[0].split()[:3] == ["version", "resource-type", "account-id"] and len(lines[0].split()) == 36
    assert all(len(line.split()) == 36 for line in lines[1:])
    starts = {int(line.split()[23]) for line in lines[1:]}
    assert starts == {1_700_000_000}  # the capture's own Unix time
    assert "replay" not in capsys.readouterr().err


def _tshark_or_skip() -> str:
    return require_tool("tshark")


@pytest.mark.realpeer
def test_tshark_reads_hop_captures_without_malformed_packets(tmp_path: Path) -> None:
    tshark = _tshark_or_skip()
    _input_pcap(tmp_path / "in.pcap")
    out = tmp_path / "out"
    assert main(["tgw", "replay", SEED, str(tmp_path / "in.pcap"), "--out", str(out)]) == 0
    # IPv6 as well: a dual-stack topology, one UDP exchange
    w = PcapWriter.open(str(tmp_path / "in6.pcap"))
    w.write(1.0, build("2001:db8:a:1::10", "2001:db8:b:2::20", PROTO_UDP, 5000, 53, payload=b"\x12\x34" + bytes(10)))
    w.write(1.1, build("2001:db8:b:2::20", "2001:db8:a:1::10", PROTO_TCP, 443, 5000, flags=TCP_SYN))
    w.close()
    out6 = tmp_path / "out6"
    assert main(["tgw", "replay", DUAL, str(tmp_path / "in6.pcap"), "--out", str(out6)]) == 0
    files = sorted((out / "hops").glob("*.pcap")) + sorted((out6 / "hops").glob("*.pcap"))
    assert len(files) >= 8
    env = {**os.environ, "HOME": str(tmp_path)}
    for f in files:
        n = len(read_pcap(str(f)))
        cmd = [
            tshark,
            "-n",
            "-r",
            str(f),
            "-o",
            "tcp.check_checksum:TRUE",
            "-o",
            "udp.check_checksum:TRUE",
            "-T",
            "fields",
            "-e",
            "frame.number",
            "-e",
            "ip.version",
            "-e",
            "ipv6.version",
            "-e",
            "_ws.malformed",
            "-e",
            "_ws.expert.severity",
        ]
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60, check=True)
        rows = [r.split("\t") for r in res.stdout.splitlines()]
        assert len(rows) == n, (f, res.stdout)
        for r in rows:
            assert r[1] or r[2], (f, r)  # dissected as IPv4 or IPv6
            assert not r[3], (f, r)  # not malformed
            # no expert info at warning (0x600000) or error (0x800000) severity, e.g. bad checksums
            assert all(int(x) < 0x600000 for x in r[4].split(",") if x), (f, r)


def test_json_topology_goes_to_the_aws_import(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A file starting with '{' is AWS API JSON (tgw_dataplane.aws_import), not YAML: as YAML this document
    would be rejected for its unknown top-level key; as AWS JSON it is an empty topology."""
    p = tmp_path / "empty.json"
    p.write_text('{"Vpcs": []}\n')
    assert main(["tgw", "trace", str(p), "--flow", FLOW]) == 2
    err = capsys.readouterr().err
    assert "unknown key" not in err and "no instance owns it" in err


def test_trace_to_on_premises_replies_from_the_vpn_attachment(capsys: pytest.CaptureFixture[str]) -> None:
    """DST is on premises (no instance owns it): the reply comes from the VPN attachment the request reached;
    the TGW hop names the ECMP route and the tunnel chosen."""
    ecmp = str(FIXTURES / "story_vpn_ecmp.yaml")
    assert main(["tgw", "trace", ecmp, "--flow", "tcp 10.0.1.10:40000 > 192.168.1.1:443", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["forward"]["verdict"] == "delivered" and out["reverse"]["verdict"] == "delivered"
    tgw = next(h for h in out["forward"]["hops"] if h["kind"] == "tgw")
    assert "ECMP" in tgw["route"] and tgw["egress_tunnel"] in ("tunnel1", "tunnel2")
    assert out["reverse"]["hops"][0]["node"] == tgw["egress_attachment"]
    assert main(["tgw", "trace", ecmp, "--flow", "tcp 10.0.1.10:40000 > 192.168.1.1:443"]) == 0
    assert "egress_tunnel=" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "i-nope"], "--from: 'i-nope' is not a source in the topology"),
        (["--reply-from", "tgw-1"], "--reply-from: 'tgw-1' is not a source"),
        (["--appliance-mode", "tgw-attach-c=yes"], "expected ATTACHMENT=on|off"),
        (["--appliance-mode", "tgw-attach-zz=on"], "'tgw-attach-zz' is not a VPC attachment"),
    ],
)
def test_trace_flags_are_checked(capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    assert main(["tgw", "trace", SEED, "--flow", FLOW, *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("flow", "message"),
    [
        ("tcp 10.0.1.10:70000 > 10.1.2.20:443", "source port '70000' is not an integer in 0..65535"),
        ("sctp 10.0.1.10:1 > 10.1.2.20:2", "protocol 'sctp' is not one of tcp, udp, icmp"),
        ("tcp 10.0.1.300:1 > 10.1.2.20:2", "source '10.0.1.300' is not an IPv4 or IPv6 address"),
        ("tcp 10.0.1.10:1 > [2001:db8::1]:2", "different address families"),
        ("icmp 10.0.1.10:1 > 10.1.2.20", "icmp takes no ports"),
        ("udp 10.0.1.10 > 10.1.2.20:53", "udp needs both ports"),
    ],
)
def test_bad_flows_name_the_part(capsys: pytest.CaptureFixture[str], flow: str, message: str) -> None:
    assert main(["tgw", "trace", SEED, "--flow", flow]) == 2
    assert message in capsys.readouterr().err


def test_replay_output_and_input_paths_are_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _input_pcap(tmp_path / "in.pcap")
    afile = tmp_path / "afile"
    afile.write_text("x")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    cases = [
        ([SEED, str(tmp_path / "in.pcap"), "--out", str(afile)], "exists and is not a directory"),
        ([SEED, str(tmp_path / "in.pcap"), "--out", str(afile / "sub")], "is not a directory"),
        ([SEED, str(tmp_path), "--out", str(tmp_path / "o")], "not a regular file"),
        ([SEED, str(fifo), "--out", str(tmp_path / "o")], "not a regular file"),  # a FIFO must not block
        ([str(fifo), str(tmp_path / "in.pcap"), "--out", str(tmp_path / "o")], "not a regular file"),
        ([SEED, str(tmp_path / "none.pcap"), "--out", str(tmp_path / "o")], "no such file"),
    ]
    if os.geteuid() != 0:  # root writes anywhere
        cases.append(([SEED, str(tmp_path / "in.pcap"), "--out", str(ro / "o")], "is not writable"))
    for args, message in cases:
        assert main(["tgw", "replay", *args]) == 2, args
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, (args, err)
    assert not (tmp_path / "o").exists()  # nothing ran


def test_replay_of_a_truncated_pcap_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _input_pcap(tmp_path / "in.pcap")
    data = (tmp_path / "in.pcap").read_bytes()
    (tmp_path / "cut.pcap").write_bytes(data[:-3])
    assert main(["tgw", "replay", SEED, str(tmp_path / "cut.pcap"), "--out", str(tmp_path / "o")]) == 2
    assert "is cut short" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_replay_checks_plugin_settings_before_writing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    d = yaml.safe_load((FIXTURES / "gwlb-story12.yaml").read_text())
    next(iter(d["gwlbs"].values()))["options"] = {"tcp.idle_timeout.seconds": 5}
    topo = tmp_path / "t.yaml"
    topo.write_text(yaml.safe_dump(d))
    _input_pcap(tmp_path / "in.pcap")
    assert main(["tgw", "replay", str(topo), str(tmp_path / "in.pcap"), "--out", str(tmp_path / "o")]) == 2
    assert "tcp.idle_timeout.seconds: 5 is out of range 60..6000" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
