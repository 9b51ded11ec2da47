"""Every capture of the tour opens in tshark (an independent dissector): no malformed packet, a comment on
every packet, and with the key tables the engine wrote, the DPD notifies (IKEv1) and the INFORMATIONAL
exchanges (IKEv2) decrypt, matching the engine's events. The connection stop's ESP decrypts to its inner
packets: ``test_connection_material.py``."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.tools import require_tool

pytestmark = pytest.mark.realpeer


def _tshark(pcap: Path, *args: str, keys: Path | None = None) -> str:
    env = dict(os.environ)
    if keys is not None:
        env["WIRESHARK_CONFIG_DIR"] = str(keys)
    r = subprocess.run(
        ["tshark", "-r", str(pcap), *args], capture_output=True, text=True, env=env, timeout=120, check=True
    )
    return r.stdout


def _captures(tour: Path) -> list[tuple[Path, Path | None]]:
    out: list[tuple[Path, Path | None]] = []
    for sub in ("vpn", "connection"):
        for p in sorted((tour / sub).glob("*.pcapng")):
            out.append((p, p.with_name(p.stem + "-keys")))
    # path.pcapng holds every hop of every packet of a story (the per-point files hold the same packets, split)
    for p in sorted((tour / "tgw").glob("*-hops/path.pcapng")):
        out.append((p, None))
    return out


def test_every_capture_is_clean_and_commented(tour_dir: Path) -> None:
    require_tool("tshark")
    caps = _captures(tour_dir)
    assert len([c for c in caps if c[1] is not None]) >= 15 and len(caps) >= 20
    assert any(c[0].parent.name == "connection" for c in caps)
    for pcap, keys in caps:
        rows = [
            line.split("\t")
            for line in _tshark(
                pcap, "-T", "fields", "-E", "occurrence=a", "-e", "_ws.malformed", "-e", "frame.comment", keys=keys
            ).splitlines()
        ]
        assert rows, pcap
        assert all(r[0] == "" for r in rows), f"{pcap}: malformed packets"
        assert all(len(r) > 1 and r[1].strip() for r in rows), f"{pcap}: a packet without a comment"


def _trace(tour: Path, name: str) -> list[dict[str, object]]:
    return [json.loads(x) for x in (tour / "vpn" / f"{name}.jsonl").read_text().splitlines()]


def test_ikev1_dpd_notifies_decrypt(tour_dir: Path) -> None:
    require_tool("tshark")
    checked = 0
    for m in sorted((tour_dir / "vpn").glob("*-run.json")):
        man = json.loads(m.read_text())
        if man["context"]["ike_version"] != 1:
            continue
        name = man["name"]
        trace = _trace(tour_dir, name)
        sent = [r for r in trace if r["event"] == "datagram_sent" and r["kind"] in ("dpd_request", "dpd_ack")]
        if not sent:
            continue
        pcap = tour_dir / "vpn" / f"{name}.pcapng"
        rows = [
            line.split("\t")
            for line in _tshark(
                pcap,
                "-Y",
                "isakmp.exchangetype==5",
                "-T",
                "fields",
                "-e",
                "isakmp.notify.msgtype",
                "-e",
                "isakmp.notify.data.dpd.are_you_there",
                "-e",
                "isakmp.notify.data.dpd.are_you_there_ack",
                "-e",
                "frame.comment",
                keys=tour_dir / "vpn" / f"{name}-keys",
            ).splitlines()
        ]
        dpd = [r for r in rows if r[0] in ("36136", "36137")]
        assert [("36136" if s["kind"] == "dpd_request" else "36137") for s in sent] == [r[0] for r in dpd], name
        # the sequence number tshark decrypts is the one the comment names (which the engine's event gave)
        for r in dpd:
            seq = int(r[1] or r[2])
            assert f"seq 0x{seq:08x}" in r[3], (name, r)
        checked += 1
    assert checked >= 8


def test_ikev2_informationals_decrypt(tour_dir: Path) -> None:
    require_tool("tshark")
    checked = 0
    for m in sorted((tour_dir / "vpn").glob("*-run.json")):
        man = json.loads(m.read_text())
        if man["context"]["ike_version"] != 2:
            continue
        name = man["name"]
        trace = _trace(tour_dir, name)
        n_info = sum(
            1
            for r in trace
            if r["event"] == "datagram_sent" and str(r["kind"]).startswith(("liveness_", "delete_", "informational_"))
        )
        if not n_info:
            continue
        pcap = tour_dir / "vpn" / f"{name}.pcapng"
        keys = tour_dir / "vpn" / f"{name}-keys"
        verbose = _tshark(pcap, "-Y", "isakmp.exchangetype==37", "-V", keys=keys)
        assert verbose.count("Decrypted Data") == n_info, name
        assert verbose.count("[correct]") == n_info and "[incorrect" not in verbose, name
        assert verbose.count("INFORMATIONAL") >= n_info  # each packet's comment says what it is
        checked += 1
    assert checked >= 5
