"""tshark (an independent dissector) decrypts a capture of our IKEv2 exchanges with the key table we write:
IKE_AUTH, liveness, CREATE_CHILD_SA (Child and IKE rekey) and Delete all decrypt, integrity checksums are
shown correct, no packet is malformed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from cgw_peer.config import Role
from emulator.keytables import KeyTables
from emulator.pcap import PcapWriter
from emulator.simnet import SimNetwork
from tests.tools import require_tool

from .helpers import AWS_ADDR, CGW_ADDR, config, options, pair

pytestmark = pytest.mark.realpeer


def _need_tshark() -> None:
    require_tool("tshark")


def _capture(tmp_path: Path, encr: str, integ: str) -> tuple[Path, Path]:
    opts = options(phase1_encryption_algorithms=(encr,), phase1_integrity_algorithms=(integ,))
    aws, cgw = pair(config(Role.AWS, opts), config(Role.CGW, opts, force_encap=True))
    pcap_path = tmp_path / "ikev2.pcap"
    pcap = PcapWriter.open(str(pcap_path))
    net = SimNetwork(seed=1, pcap=pcap)
    net.add_node("aws", aws, [AWS_ADDR[0]])
    net.add_node("cgw", cgw, [CGW_ADDR[0]])
    keys = KeyTables()
    net.on_event(lambda r: keys.add(r.fields) if r.event == "sa_keys" else None)
    net.start_all()
    net.run_until(25)
    net.call("aws", aws.rekey_child)
    net.call("cgw", cgw.rekey_ike)
    net.run_until(45)
    net.call("cgw", cgw.close)
    pcap.close()
    keys.write(str(tmp_path / "keys"))
    assert len(keys.v2) == 2  # the first IKE SA and the rekeyed one
    return pcap_path, tmp_path / "keys"


def _tshark(pcap: Path, keys: Path, *args: str) -> str:
    env = dict(os.environ, WIRESHARK_CONFIG_DIR=str(keys))
    res = subprocess.run(
        ["tshark", "-r", str(pcap), *args], capture_output=True, text=True, env=env, timeout=60, check=True
    )
    return res.stdout


@pytest.mark.parametrize(("encr", "integ"), [("AES128", "SHA2-256"), ("AES256", "SHA1"), ("AES256-GCM-16", "SHA2-256")])
def test_tshark_decrypts_our_capture(tmp_path: Path, encr: str, integ: str) -> None:
    _need_tshark()
    pcap, keys = _capture(tmp_path, encr, integ)
    rows = [
        line.split("\t")
        for line in _tshark(
            pcap, keys, "-T", "fields", "-e", "isakmp.exchangetype", "-e", "isakmp.nextpayload", "-e", "_ws.malformed"
        ).splitlines()
    ]
    assert len(rows) >= 25
    assert all(r[2] == "" for r in rows), "malformed packets"
    # Every protected message decrypted: the inner payload types appear after SK (46).
    auth = [r for r in rows if r[0] == "35"]
    assert len(auth) == 2 and all(r[1].startswith("46,35") or r[1].startswith("46,36") for r in auth)
    assert any(r[0] == "36" and "41" in r[1].split(",") for r in rows)  # N(REKEY_SA) in the Child rekey
    assert any(r[0] == "37" and r[1].startswith("46,42") for r in rows)  # Deletes
    verbose = _tshark(pcap, keys, "-V")
    assert "Malformed" not in verbose
    protected = sum(1 for r in rows if r[1].startswith("46"))
    assert verbose.count("Decrypted Data") == protected
    if "GCM" not in encr:
        # HMAC ICVs are checked by Wireshark and marked [correct] (GCM tags are checked by decryption).
        assert verbose.count("[correct]") == protected
        assert "[incorrect" not in verbose
    expert = _tshark(pcap, keys, "-q", "-z", "expert")
    assert "Error" not in expert and "Malformed" not in expert
