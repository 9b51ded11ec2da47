"""tshark (Wireshark's dissector, an independent ESP implementation) decrypts our ESP with the ``esp_sa`` table
:class:`KeyTables` writes: every suite AWS allows, ESP in UDP 4500 and as IP protocol 50, both directions of each
SA pair, with the inner IPv4/ICMP fields intact, the ICVs marked good and nothing malformed."""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

import pytest

from cgw_peer.esp import EspSa, EspSuite
from emulator.keytables import ESP_FILE, PREFS_FILE, KeyTables
from emulator.pcap import PcapWriter
from tests.tools import require_tool

from .helpers import SUITES, ipv4_icmp

pytestmark = pytest.mark.realpeer

AWS_IP, CGW_IP = "203.0.113.1", "198.51.100.1"


def _event(name: str, seed: int, encap: bool) -> dict[str, object]:
    """A ``child_sa_established`` event as the AWS end would emit it."""
    s = EspSuite.parse(name)
    r = random.Random(seed)
    return {
        "spi_in": f"{r.getrandbits(32) | 0x100:08x}",
        "spi_out": f"{r.getrandbits(32) | 0x100:08x}",
        "proposal": f"{name}-modp2048",
        "ts_local": [],
        "ts_remote": [],
        "enc_in": r.randbytes(s.enc_key_len).hex(),
        "integ_in": r.randbytes(s.integ_key_len).hex(),
        "enc_out": r.randbytes(s.enc_key_len).hex(),
        "integ_out": r.randbytes(s.integ_key_len).hex(),
        "encap": encap,
    }


def _mirror(ev: dict[str, object]) -> dict[str, object]:
    """The same SA pair seen from the other end."""
    m = dict(ev)
    for a, b in (("spi_in", "spi_out"), ("enc_in", "enc_out"), ("integ_in", "integ_out")):
        m[a], m[b] = ev[b], ev[a]
    return m


def test_tshark_decrypts_both_directions(tmp_path: Path) -> None:
    require_tool("tshark")
    pcap_path = tmp_path / "esp.pcap"
    pcap = PcapWriter.open(str(pcap_path))
    keys = KeyTables()
    expect: list[tuple[str, str, str, int, int]] = []  # outer src, SPI, inner src, ICMP id, seq
    t = 0.0
    for i, name in enumerate(SUITES):
        for encap in (True, False):
            ev = _event(name, i * 2 + encap, encap)
            # Keys from the AWS end's event only: the table must cover both directions of the pair.
            keys.add_child_sa(ev, AWS_IP, CGW_IP)
            rng = random.Random(i)
            aws_out = EspSa.from_child_event(ev, "out", (AWS_IP, 4500), (CGW_IP, 4500), rng=rng)
            cgw_out = EspSa.from_child_event(_mirror(ev), "out", (CGW_IP, 4500), (AWS_IP, 4500), rng=rng)
            for k, (sa, inner_src, inner_dst) in enumerate(
                [(cgw_out, "192.168.0.10", "10.0.1.20"), (aws_out, "10.0.1.20", "192.168.0.10")] * 2
            ):
                ident = 100 * i + 10 * encap + k
                packet = sa.encapsulate(ipv4_icmp(48 + k, ident=ident, src=inner_src, dst=inner_dst), t)
                assert packet is not None
                pcap.write(t, packet)
                t += 0.001
                expect.append((sa.src[0] if sa.src else "", f"0x{sa.spi:08x}", inner_src, ident, sa.seq))
    pcap.close()
    keydir = tmp_path / "keys"
    keys.write(str(keydir))
    assert (keydir / ESP_FILE).read_text().count("\n") == 2 * 2 * len(SUITES)
    assert "esp.enable_encryption_decode: TRUE" in (keydir / PREFS_FILE).read_text()
    env = dict(os.environ, WIRESHARK_CONFIG_DIR=str(keydir))
    fields = ["ip.src", "esp.spi", "esp.sequence", "icmp.ident", "esp.icv_good", "esp.pad_len", "_ws.malformed"]
    cmd = ["tshark", "-r", str(pcap_path), "-T", "fields", "-E", "occurrence=a"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60, check=True).stdout
    rows = [line.split("\t") for line in out.splitlines()]
    assert len(rows) == len(expect)
    for row, (outer_src, spi, inner_src, ident, seq) in zip(rows, expect, strict=True):
        ip_src, esp_spi, esp_seq, icmp_id, icv_good, pad_len, malformed = row
        assert ip_src == f"{outer_src},{inner_src}"  # outer, then the decrypted inner header
        assert (esp_spi, int(esp_seq), int(icmp_id, 0)) == (spi, seq, ident)
        assert icv_good == "1" and malformed == ""
        assert int(pad_len) >= 0
    # The same capture without the table: nothing inside ESP is visible.
    bare = subprocess.run(
        ["tshark", "-r", str(pcap_path), "-T", "fields", "-e", "icmp.ident"],
        capture_output=True,
        text=True,
        env=dict(os.environ, WIRESHARK_CONFIG_DIR=str(tmp_path)),
        timeout=60,
        check=True,
    ).stdout
    assert bare.splitlines() == [""] * len(expect)
