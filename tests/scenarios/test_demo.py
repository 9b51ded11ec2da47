"""`awsnetemu demo` (what `make demo` runs) works and writes what it promises."""

from __future__ import annotations

import filecmp
import json
import os
import subprocess
import sys
from pathlib import Path

from emulator.scenario_cli import SEED_TOPOLOGY, embedded_scenarios

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_demo_runs_and_writes_outputs(tmp_path: object) -> None:
    out = os.path.join(str(tmp_path), "out")
    r = subprocess.run([sys.executable, "-m", "emulator", "demo", "--out", out], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    for path in embedded_scenarios():
        name = os.path.splitext(os.path.basename(path))[0]
        # Every scenario writes its raw outputs and its teaching material; a VPN connection scenario (two
        # tunnels on a TGW, traffic) one sequence diagram per tunnel, under connection/.
        suffixes = [".pcap", ".jsonl", "-timeline.txt", "-keys", ".pcapng", ".html", "-timeline.svg"]
        sub = "vpn"
        if "connection:" in Path(path).read_text():
            sub = "connection"
            suffixes += ["-sequence-tunnel1.svg", "-sequence-tunnel2.svg"]
        else:
            suffixes.append("-sequence.svg")
        for suffix in suffixes:
            assert os.path.exists(os.path.join(out, sub, name + suffix)), name + suffix
    # The guided tour's index links every page (issue 17: one command from a fresh clone to the index).
    index = Path(out, "index.html").read_text()
    assert "guided tour" in index and index.count(".html") >= len(embedded_scenarios())
    off = json.loads(Path(out, "tgw", "seed-appliance-mode-off", "summary.json").read_text())
    on = json.loads(Path(out, "tgw", "seed-appliance-mode-on", "summary.json").read_text())
    assert off["drops"] == {"appliance_no_state": 1} and on["delivered"] == 2
    assert os.listdir(os.path.join(out, "tgw", "seed-appliance-mode-on", "hops"))


def test_embedded_seed_topology_is_the_fixture() -> None:
    assert filecmp.cmp(SEED_TOPOLOGY, os.path.join(ROOT, "fixtures", "tgw", "seed.yaml"), shallow=False)
