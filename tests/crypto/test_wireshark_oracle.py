"""tshark as an independent oracle: IKEv2 SK payloads sealed with this package must decrypt in Wireshark,
with the ICV reported ``[correct]``, when the keys are given in Wireshark's IKEv2 decryption table using the
names from :mod:`cgw_peer.crypto.algorithms`.

This checks, against another implementation, AES-CBC + truncated HMAC (RFC 7296 §3.14), AES-GCM-16 with the
salt taken from the end of the key material and AAD = IKE header | SK header (RFC 5282), and the exact UAT
algorithm names (tshark refuses unknown names with "Error loading table").
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from cgw_peer.crypto import algorithms as alg
from cgw_peer.crypto.cipher import AesCbc, AesGcm16
from cgw_peer.crypto.prf import get_integ
from emulator.pcap import PcapWriter

pytestmark = pytest.mark.realpeer

SPI_R = bytes.fromhex("a1a2a3a4a5a6a7a8")
INITIAL_CONTACT = 16384


def _require_tshark() -> str:
    path = shutil.which("tshark")
    if path is None:
        msg = "tshark is needed (run `make system`)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def _message(enc: alg.EncAlg, hash_alg: alg.HashAlg | None, spi_i: bytes, n: int) -> tuple[bytes, str]:
    """One INFORMATIONAL request carrying SK{N(INITIAL_CONTACT)}, and its decryption-table row."""
    inner = struct.pack("!BBHBBH", 0, 0, 8, 0, 0, INITIAL_CONTACT)
    ek = bytes((n * 7 + i) & 0xFF for i in range(enc.keymat_len))

    def header(total: int) -> bytes:
        return spi_i + SPI_R + struct.pack("!BBBBII", 46, 0x20, 37, 0x08, n, total)

    enc_name, integ_name = alg.wireshark_names(enc, hash_alg)
    if enc.aead:
        iv = bytes((n + i) & 0xFF for i in range(8))
        plain = inner + b"\x00"  # no padding, Pad Length 0 (RFC 5282 §3)
        sk_len = 4 + 8 + len(plain) + 16
        aad = header(28 + sk_len) + struct.pack("!BBH", 41, 0, sk_len)
        msg = aad + iv + AesGcm16(ek).seal(iv, plain, aad)
        row = f'{spi_i.hex()},{SPI_R.hex()},{ek.hex()},{ek.hex()},"{enc_name}",,,"{integ_name}"'
        return msg, row
    assert hash_alg is not None
    integ = get_integ(hash_alg.integ)
    ak = bytes((n * 13 + i) & 0xFF for i in range(integ.key_len))
    iv = bytes((n * 3 + i) & 0xFF for i in range(16))
    plain = inner + bytes(7) + b"\x07"  # 8 + 7 + 1 = one block
    ct = AesCbc(ek).encrypt(iv, plain)
    sk_len = 4 + 16 + len(ct) + integ.icv_len
    msg = header(28 + sk_len) + struct.pack("!BBH", 41, 0, sk_len) + iv + ct
    msg += integ.mac(ak, msg)
    row = f'{spi_i.hex()},{SPI_R.hex()},{ek.hex()},{ek.hex()},"{enc_name}",{ak.hex()},{ak.hex()},"{integ_name}"'
    return msg, row


def test_tshark_decrypts_every_suite(tmp_path: Path) -> None:
    tshark = _require_tshark()
    suites: list[tuple[alg.EncAlg, alg.HashAlg | None]] = []
    for enc in alg.ENC_BY_TOKEN.values():
        if enc.aead:
            suites.append((enc, None))
        else:
            suites.extend((enc, h) for h in alg.HASH_BY_TOKEN.values())
    rows = []
    pcap = tmp_path / "sk.pcap"
    writer = PcapWriter.open(str(pcap))
    for n, (enc, h) in enumerate(suites, start=1):
        msg, row = _message(enc, h, struct.pack("!Q", 0x0100000000000000 + n), n)
        writer.write_udp(float(n), ("192.0.2.1", 500), ("192.0.2.2", 500), msg)
        rows.append(row)
    writer.close()
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "ikev2_decryption_table").write_text("\n".join(rows) + "\n")
    out = subprocess.run(
        [tshark, "-n", "-r", str(pcap), "-V"],
        env={**os.environ, "WIRESHARK_CONFIG_DIR": str(cfg)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "Error loading table" not in out.stderr, out.stderr
    frames = re.split(r"^Frame \d+:", out.stdout, flags=re.M)[1:]
    assert len(frames) == len(suites)
    for (enc, h), text in zip(suites, frames, strict=True):
        label = f"{enc.token}/{h.token if h else '-'}"
        assert "Notify Message Type: INITIAL_CONTACT (16384)" in text, label
        icv = [line for line in text.splitlines() if "Integrity Checksum Data" in line]
        assert len(icv) == 1 and icv[0].rstrip().endswith("[correct]"), (label, icv)


def test_tshark_flags_a_wrong_key(tmp_path: Path) -> None:
    # The oracle must be able to say no: the same message with a different SK_a is reported incorrect.
    tshark = _require_tshark()
    enc, h = alg.ENC_BY_AWS["AES128"], alg.HASH_BY_AWS["SHA2-256"]
    msg, row = _message(enc, h, bytes.fromhex("0badc0de0badc0de"), 1)
    fields = row.split(",")
    fields[5] = fields[6] = "00" * 32
    pcap = tmp_path / "bad.pcap"
    writer = PcapWriter.open(str(pcap))
    writer.write_udp(0.0, ("192.0.2.1", 500), ("192.0.2.2", 500), msg)
    writer.close()
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "ikev2_decryption_table").write_text(",".join(fields) + "\n")
    out = subprocess.run(
        [tshark, "-n", "-r", str(pcap), "-V"],
        env={**os.environ, "WIRESHARK_CONFIG_DIR": str(cfg)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    icv = [line for line in out.stdout.splitlines() if "Integrity Checksum Data" in line]
    assert icv and "[incorrect" in icv[0], icv
    assert not any(line.rstrip().endswith("[correct]") for line in icv)
