"""Connection scenario files: validation names the field; ``awsnetemu run --out`` writes the capture, the key
tables with ``esp_sa`` and the trace; tshark opens the capture clean and, with our keys, shows every ESP packet's
inner packet (the flows' UDP, the echo ICMP/UDP, BGP inside the tunnels)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from typing import Any

import pytest
import yaml

from emulator.errors import ConfigError
from emulator.scenario import Scenario
from tests.tools import require_tool

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCENARIOS = os.path.join(ROOT, "emulator", "scenarios")


def _doc(name: str) -> dict[str, Any]:
    with open(os.path.join(SCENARIOS, name)) as f:
        doc: dict[str, Any] = yaml.safe_load(f)
    doc["connection"]["topology"] = os.path.join(SCENARIOS, doc["connection"]["topology"])
    return doc


BASE = "14-connection-dpd-clear.yaml"


def _set(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    d = copy.deepcopy(doc)
    cur: Any = d
    keys = path.split(".")
    for k in keys[:-1]:
        cur = cur[int(k)] if isinstance(cur, list) else cur.setdefault(k, {})
    last = keys[-1]
    if isinstance(cur, list):
        cur[int(last)] = value
    else:
        cur[last] = value
    return d


BAD = [
    ("connection.attachment", "tgw-attach-app", "connection.attachment: no VPN attachment"),
    ("connection.routing", "ospf", "connection.routing"),
    ("connection.tunnels", [{"address": "198.51.100.20"}], "connection.tunnels[0].address"),
    ("connection.tunnels", [{"options": {"TunnelInsideCidr": "169.254.1.0/30"}}], "TunnelInsideCidr"),
    (
        "connection.tunnels",
        [{"options": {"TunnelInsideCidr": "169.254.9.0/30"}}, {"options": {"TunnelInsideCidr": "169.254.9.0/30"}}],
        "connection.tunnels[1].options.TunnelInsideCidr",
    ),
    ("connection.tunnel.DPDTimeoutSeconds", 5, "DPDTimeoutSeconds"),
    ("connection.cgw.routing", "random", "connection.cgw.routing"),
    ("connection.cgw.hosts", ["::1"], "connection.cgw.hosts[0]"),
    ("connection.instances", {"i-nope": {"type": "t3.micro"}}, "connection.instances.i-nope"),
    ("connection.instances", {"i-app": {"type": "t9.huge"}}, "connection.instances.i-app.type"),
    ("connection.instances", {"i-app": {"baseline_gbps": 2, "burst_gbps": 1}}, "baseline_gbps"),
    ("connection.links", {"tunnel9": {}}, "connection.links.tunnel9"),
    ("connection.bgp.hold_time", 1, "connection.bgp.hold_time"),
    ("connection.limits", {"tunnel_bps": 5}, "connection.limits.tunnel_bps"),
    ("flows.0.from", "10.9.9.9", "flows[0].from"),
    ("flows.0.size", 20, "flows[0].size"),
    ("flows.0.until", 1, "flows[0].until"),
    ("flows.0.kind", "tcp", "flows[0].kind"),
    ("flows.1.name", "vpc-to-dc", "flows[1].name"),
    ("schedule.0.node", "aws3", "schedule[0].node"),
    ("schedule.0", {"at": 1, "do": "blackhole", "tunnel": "tunnel7"}, "schedule[0].tunnel"),
    ("schedule.0", {"at": 1, "do": "initiate", "node": "cgw"}, "schedule[0].node"),
    ("expect.0.node", "aws", "expect[0].node"),
    ("expect.0", {"tgw_flow": {"name": "x"}}, "expect[0].tgw_flow"),
    ("expect.0", {"status": {"node": "tgw", "Status": "UP"}}, "expect[0].status.node"),
    ("metrics_period", 0.5, "metrics_period"),
]


@pytest.mark.parametrize(("path", "value", "needle"), BAD, ids=[b[2] for b in BAD])
def test_bad_files_name_the_field(path: str, value: Any, needle: str) -> None:
    with pytest.raises(ConfigError) as ei:
        Scenario.from_mapping(_set(_doc(BASE), path, value))
    assert needle in str(ei.value)


def test_unknown_keys_are_refused() -> None:
    for where in ("", "connection", "connection.cgw", "connection.aws", "connection.bgp"):
        doc = _doc(BASE)
        target = doc
        for k in [x for x in where.split(".") if x]:
            target = target.setdefault(k, {})
        target["bogus"] = 1
        with pytest.raises(ConfigError, match="bogus"):
            Scenario.from_mapping(doc)


def test_run_writes_outputs_with_esp_keys(tmp_path: Any) -> None:
    out = str(tmp_path / "out")
    r = subprocess.run(
        [sys.executable, "-m", "emulator", "run", os.path.join(SCENARIOS, BASE), "--out", out, "--json"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert doc["ok"] and set(doc["status"]) == {"aws1", "aws2", "cgw1", "cgw2"}
    name = "14-connection-dpd-clear"
    raw = [f"{name}-keys", f"{name}-timeline.txt", f"{name}.jsonl", f"{name}.pcap"]
    material = [
        f"{name}-run.json",
        f"{name}-sequence-tunnel1.svg",
        f"{name}-sequence-tunnel2.svg",
        f"{name}-timeline.png",
        f"{name}-timeline.svg",
        f"{name}.html",
        f"{name}.pcapng",
    ]
    assert sorted(os.listdir(out)) == sorted(raw + material)
    with open(os.path.join(out, f"{name}-keys", "esp_sa")) as f:
        rows = f.read().splitlines()
    assert len(rows) == 6  # both directions of tunnel1, tunnel2 and tunnel1's new pair after the CGW returned
    with open(os.path.join(out, f"{name}.jsonl")) as f:
        events = [json.loads(line)["event"] for line in f]
    # The timeline shows the DPD timeout, then the routes leaving the TGW.
    i = events.index("dpd_timeout")
    assert events[i : i + 5] == ["dpd_timeout", "aws_log", "tunnel_down", "routes_withdrawn", "tgw_routes_changed"]


def _tshark(pcap: str, keys: str, fields: list[str], display: str) -> list[list[str]]:
    argv = [require_tool("tshark"), "-r", pcap, "-Y", display, "-T", "fields"]
    for f in fields:
        argv += ["-e", f]
    r = subprocess.run(argv, capture_output=True, text=True, env=dict(os.environ, WIRESHARK_CONFIG_DIR=keys))
    assert r.returncode == 0, r.stderr
    return [line.split("\t") for line in r.stdout.splitlines() if line]


@pytest.mark.realpeer
@pytest.mark.parametrize("name", ["14-connection-dpd-clear", "18-connection-bgp-ecmp"])
def test_tshark_decrypts_every_esp_packet(name: str, tmp_path: Any) -> None:
    sc = Scenario.load(os.path.join(SCENARIOS, f"{name}.yaml"))
    res = sc.run(str(tmp_path))
    assert res.ok
    pcap, keys = res.outputs["pcap"], res.outputs["keys"]
    assert _tshark(pcap, keys, ["frame.number"], '_ws.malformed || _ws.expert.severity >= "Warning"') == []
    esp = _tshark(pcap, keys, ["frame.number"], "esp")
    inner = _tshark(pcap, keys, ["frame.number"], "esp && ip.version == 4 && (udp || icmp || tcp)")
    assert len(esp) == len(inner) > 1000
    # The flow packets the AWS endpoints encrypted are all in the capture, decrypted.
    records = [r.fields for r in res.trace if r.event == "flow_summary"]
    sent_by_aws = sum(n for s in records for k, n in s["via"].items() if k.startswith("aws:"))
    rows = _tshark(pcap, keys, ["ip.src"], "esp && udp.srcport >= 40000 && udp.srcport < 41000")
    from_vpc = [r for r in rows if r[0].split(",")[0] in ("203.0.113.10", "203.0.113.20")]
    assert len(from_vpc) == sent_by_aws
    if name.startswith("18"):
        ups = _tshark(pcap, keys, ["ip.src", "bgp.nlri_prefix"], "esp && bgp.type == 2")
        prefixes = {p for r in ups for p in r[1].split(",")}
        assert {"192.168.0.0", "10.0.0.0", "10.2.0.0"} <= prefixes
        keepalives = _tshark(pcap, keys, ["frame.number"], "esp && bgp.type == 4")
        assert len(keepalives) > 20


@pytest.mark.parametrize("name", sorted(f for f in os.listdir(SCENARIOS) if "-connection-" in f))
def test_every_record_matches_its_declaration(name: str) -> None:
    """The connection's own events (routes, metrics, flows, EC2, BGP) are recorded outside the network's strict
    check: check every record of each embedded connection scenario against cgw_peer/events.py here."""
    from cgw_peer.events import check_event

    res = Scenario.load(os.path.join(SCENARIOS, name)).run()
    assert res.ok
    problems = [p for r in res.trace for p in check_event(r.event, r.fields)]
    assert problems == []
    assert len(res.trace) * 100 <= 1_000_000  # well inside the default budget (tests/scenarios checks it too)
