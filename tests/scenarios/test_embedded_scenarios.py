"""Every embedded scenario's expectations hold, and its outputs are what Wireshark needs."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from emulator.pcap import read_pcap
from emulator.scenario import Scenario
from emulator.scenario_cli import embedded_scenarios
from tests.tools import require_tool

FILES = embedded_scenarios()


@pytest.mark.parametrize("path", FILES, ids=[os.path.basename(f) for f in FILES])
def test_embedded_scenario_holds(path: str, tmp_path: object) -> None:
    res = Scenario.load(path).run(str(tmp_path))
    failed = [f"{r.expectation}: {r.detail}" for r in res.results if not r.ok]
    assert not failed, failed
    assert os.path.getsize(res.outputs["pcap"]) > 24
    assert os.path.exists(os.path.join(res.outputs["keys"], "ikev1_decryption_table"))


def test_scenarios_are_deterministic() -> None:
    path = next(f for f in FILES if "03-" in f)
    a = [r.to_json() for r in Scenario.load(path).run().trace if r.event != "datagram_sent"]
    b = [r.to_json() for r in Scenario.load(path).run().trace if r.event != "datagram_sent"]
    assert a == b


def test_expectation_failure_exits_1(tmp_path: object) -> None:
    import yaml

    p = os.path.join(str(tmp_path), "s.yaml")
    with open(p, "w") as f:
        yaml.safe_dump(
            {"duration": 30, "tunnel": {"IKEVersions": ["ikev1"]}, "expect": [{"event": "dpd_timeout", "min": 1}]}, f
        )
    r = subprocess.run([sys.executable, "-m", "emulator", "run", p, "--json"], capture_output=True, text=True)
    assert r.returncode == 1, r.stderr
    assert '"ok": false' in r.stdout


def _tshark() -> str:
    return require_tool("tshark")


@pytest.mark.realpeer
def test_tshark_decrypts_simulated_dpd_with_our_key_table(tmp_path: object) -> None:
    """The capture of a simulated run opens in tshark with no malformed packets, and with the key table the
    engine wrote, tshark shows decrypted R-U-THERE (36136) and ACK (36137) with matching sequence numbers."""
    tshark = _tshark()
    path = next(f for f in FILES if "02-idle-dpd" in f)
    res = Scenario.load(path).run(str(tmp_path))
    env = dict(os.environ, WIRESHARK_CONFIG_DIR=res.outputs["keys"])
    pcap = res.outputs["pcap"]
    malformed = subprocess.run(
        [tshark, "-r", pcap, "-Y", '_ws.malformed || _ws.expert.severity >= "Warning"'],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert malformed.stdout.strip() == ""
    out = subprocess.run(
        [
            tshark,
            "-r",
            pcap,
            "-Y",
            "isakmp.exchangetype == 5",
            "-T",
            "fields",
            "-e",
            "ip.src",
            "-e",
            "isakmp.notify.msgtype",
            "-e",
            "isakmp.notify.data.dpd.are_you_there",
            "-e",
            "isakmp.notify.data.dpd.are_you_there_ack",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    rows = [line.split("\t") for line in out.strip().splitlines()]
    requests = [int(r[2]) for r in rows if r[1] == "36136"]
    acks = [int(r[3]) for r in rows if r[1] == "36137"]
    trace_seqs = [r.fields["seq"] for r in res.trace.select("dpd_request_sent", node="aws")]
    assert len(requests) == 6 and requests == trace_seqs
    assert acks == requests
    assert all(0 < s < 2**31 for s in requests)
    # Every datagram in the capture is there: MM (6) + QM (3) + 6 DPD pairs.
    assert len(read_pcap(pcap)) == 9 + 12
