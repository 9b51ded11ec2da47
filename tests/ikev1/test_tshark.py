"""tshark (an independent dissector and IKEv1 decryptor) reads our capture with the key table we write:
no malformed packet; Main Mode 5/6, Quick Mode, R-U-THERE (36136) / R-U-THERE-ACK (36137) and Deletes decrypt,
and the ACKs echo the R-U-THERE sequence numbers. Also on the NAT-T port with the non-ESP marker."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from emulator.keytables import KeyTables
from emulator.pcap import PcapWriter
from tests.ikev1.helpers import aws_config, cgw_config, make_peer
from tests.tools import require_tool

pytestmark = pytest.mark.realpeer


def _need_tshark() -> None:
    require_tool("tshark")


def _capture(tmp_path: Path, **cgw_kw: object) -> tuple[Path, Path]:
    from emulator.simnet import SimNetwork

    pcap_path = tmp_path / "ikev1.pcap"
    pcap = PcapWriter.open(str(pcap_path))
    net = SimNetwork(seed=3, pcap=pcap)
    aws = make_peer(aws_config(), 11)
    cgw = make_peer(cgw_config(**cgw_kw), 12)  # type: ignore[arg-type]
    net.add_node("aws", aws, ["203.0.113.1"])
    net.add_node("cgw", cgw, ["198.51.100.1"])
    keys = KeyTables()
    net.on_event(lambda r: keys.add(r.fields) if r.event == "sa_keys" else None)
    net.start_all()
    net.run_until(35)
    net.call("cgw", cgw.close)
    pcap.close()
    keys.write(str(tmp_path / "keys"))
    assert len(keys.v1) == 1
    return pcap_path, tmp_path / "keys"


def _fields(pcap: Path, keys: Path, *fields: str) -> list[list[str]]:
    env = dict(os.environ, WIRESHARK_CONFIG_DIR=str(keys))
    args = ["tshark", "-r", str(pcap), "-T", "fields"]
    for f in fields:
        args += ["-e", f]
    out = subprocess.run(args, capture_output=True, text=True, env=env, timeout=60, check=True).stdout
    return [line.split("\t") for line in out.splitlines()]


@pytest.mark.parametrize("force_encap", [False, True])
def test_tshark_decrypts_dpd(tmp_path: Path, force_encap: bool) -> None:
    _need_tshark()
    pcap, keys = _capture(tmp_path, force_encap=force_encap)
    rows = _fields(
        pcap,
        keys,
        "isakmp.exchangetype",
        "isakmp.nextpayload",
        "isakmp.notify.msgtype",
        "isakmp.notify.data.dpd.are_you_there",
        "isakmp.notify.data.dpd.are_you_there_ack",
        "_ws.malformed",
        "udp.dstport",
    )
    assert len(rows) == 9 + 3 * 2 + 2  # set-up, three DPD exchanges (10, 20, 30 s), two Deletes
    assert all(r[5] == "" for r in rows), "malformed packets"
    if force_encap:
        assert {r[6] for r in rows[4:]} == {"4500"}
    # Decrypted Informationals: HASH (8) then Notify (11) or Delete (12).
    req = [int(r[3]) for r in rows if r[2] == "36136"]
    ack = [int(r[4]) for r in rows if r[2] == "36137"]
    assert len(req) == 3 and req == ack and req == [req[0], req[0] + 1, req[0] + 2]
    assert sum(1 for r in rows if r[0] == "5" and r[1].split(",")[:2] == ["8", "12"]) == 2
    # Quick Mode decrypted: HASH then SA.
    assert any(r[0] == "32" and r[1].startswith("8,1") for r in rows)
