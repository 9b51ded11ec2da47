"""tshark as an independent oracle. IKEv2: SK payloads sealed with this package must decrypt in Wireshark,
with the ICV reported ``[correct]``, when the keys are given in Wireshark's IKEv2 decryption table using the
names from :mod:`cgw_peer.crypto.algorithms`.

This checks, against another implementation, AES-CBC + truncated HMAC (RFC 7296 §3.14), AES-GCM-16 with the
salt taken from the end of the key material and AAD = IKE header | SK header (RFC 5282), and the exact UAT
algorithm names (tshark refuses unknown names with "Error loading table"). IKEv1: a Main Mode and an
Informational exchange encrypted with Ka must decode with Wireshark's own IV derivation (RFC 2409 App. B).
"""

from __future__ import annotations

import os
import random
import re
import struct
import subprocess
from pathlib import Path

import pytest

from cgw_peer.crypto import algorithms as alg
from cgw_peer.crypto import keymat_v1 as v1
from cgw_peer.crypto.cipher import AesCbc, AesGcm16
from cgw_peer.crypto.dh import get_group
from cgw_peer.crypto.prf import get_integ, get_prf
from emulator.pcap import PcapWriter
from tests.tools import require_tool

pytestmark = pytest.mark.realpeer

SPI_R = bytes.fromhex("a1a2a3a4a5a6a7a8")
INITIAL_CONTACT = 16384


def _require_tshark() -> str:
    return require_tool("tshark")


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


# ---------------------------------------------------------------------------------------------- IKEv1

_CKY_I, _CKY_R = bytes.fromhex("c1c2c3c4c5c6c7c8"), bytes.fromhex("d1d2d3d4d5d6d7d8")


def _v1_exchange(hash_alg: alg.HashAlg, ka: bytes) -> list[bytes]:
    """Main Mode 1-6 (SA, KE/Ni, KE/Nr, ID+HASH encrypted) and one Informational (HASH(1), N(R-U-THERE))."""

    def hdr(np: int, exch: int, flags: int, mid: int, total: int, rc: bytes = _CKY_R) -> bytes:
        return _CKY_I + rc + struct.pack("!BBBBII", np, 0x10, exch, flags, mid, total)

    def pl(np: int, body: bytes) -> bytes:
        return struct.pack("!BBH", np, 0, 4 + len(body)) + body

    # Transform attributes (TV): encryption AES-CBC, key length 256, hash, auth PSK, group 14 (RFC 2409 App. A).
    enc = alg.ENC_BY_AWS["AES256"]
    attrs = struct.pack(
        "!10H", 0x8001, enc.ikev1_id, 0x800E, 256, 0x8002, hash_alg.ikev1_hash_id, 0x8003, 1, 0x8004, 14
    )
    proposal = pl(0, struct.pack("!BBBB", 1, 1, 0, 1) + pl(0, struct.pack("!BBH", 1, 1, 0) + attrs))
    sa = pl(0, struct.pack("!II", 1, 1) + proposal)
    group = get_group(14)
    rng = random.Random(5)
    a, b = group.generate(rng), group.generate(rng)
    body3 = pl(10, a.public) + pl(0, bytes(range(16)))
    body4 = pl(10, b.public) + pl(0, bytes(range(16, 32)))
    cbc = AesCbc(ka)

    def enc_msg(np: int, exch: int, mid: int, plain: bytes, iv: bytes) -> tuple[bytes, bytes]:
        plain += bytes(-len(plain) % 16)  # IKEv1 pads with zeros to the block size
        ct = cbc.encrypt(iv, plain)
        return hdr(np, exch, 1, mid, 28 + len(ct)) + ct, ct[-16:]

    idb = struct.pack("!BBH", 1, 0, 0) + bytes([192, 0, 2, 1])  # ID_IPV4_ADDR 192.0.2.1
    hash_len = get_prf(hash_alg.prf).digest_size
    # The first encrypted message uses hash(g^xi | g^xr); later ones chain on the last ciphertext block.
    mm5, last5 = enc_msg(5, 2, 0, pl(8, idb) + pl(0, bytes(hash_len)), v1.phase1_iv(hash_alg.prf, a.public, b.public))
    mm6, last6 = enc_msg(5, 2, 0, pl(8, idb) + pl(0, bytes(hash_len)), last5)
    mid = 0x12345678
    notify = struct.pack("!IBBH", 1, 1, 16, 36136) + _CKY_I + _CKY_R + struct.pack("!I", 7)
    info, _ = enc_msg(8, 5, mid, pl(11, bytes(hash_len)) + pl(0, notify), v1.phase2_iv(hash_alg.prf, last6, mid))
    return [
        hdr(1, 2, 0, 0, 28 + len(sa), rc=bytes(8)) + sa,
        hdr(1, 2, 0, 0, 28 + len(sa)) + sa,
        hdr(4, 2, 0, 0, 28 + len(body3)) + body3,
        hdr(4, 2, 0, 0, 28 + len(body4)) + body4,
        mm5,
        mm6,
        info,
    ]


def _tshark_v1(tshark: str, tmp_path: Path, msgs: list[bytes], ka: bytes) -> list[str]:
    pcap = tmp_path / "v1.pcap"
    writer = PcapWriter.open(str(pcap))
    for i, m in enumerate(msgs):
        ends = [("192.0.2.1", 500), ("192.0.2.2", 500)]
        writer.write_udp(float(i), ends[i % 2], ends[1 - i % 2], m)
    writer.close()
    cfg = tmp_path / "cfg"
    cfg.mkdir(exist_ok=True)
    (cfg / "ikev1_decryption_table").write_text(f"{_CKY_I.hex()},{ka.hex()}\n")
    out = subprocess.run(
        [tshark, "-n", "-r", str(pcap), "-V"],
        env={**os.environ, "WIRESHARK_CONFIG_DIR": str(cfg)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "Error loading table" not in out.stderr, out.stderr
    return re.split(r"^Frame \d+:", out.stdout, flags=re.M)[1:]


@pytest.mark.parametrize("hash_token", list(alg.HASH_BY_TOKEN))
def test_tshark_decrypts_ikev1_phase1_and_phase2_ivs(tmp_path: Path, hash_token: str) -> None:
    # A wrong IV garbles the first plaintext block, which holds the ID / HASH payload headers, so a clean
    # decode of frames 5-7 confirms phase1_iv, the CBC chaining and phase2_iv (RFC 2409 App. B).
    tshark = _require_tshark()
    ka = bytes(range(100, 132))
    frames = _tshark_v1(tshark, tmp_path, _v1_exchange(alg.HASH_BY_TOKEN[hash_token], ka), ka)
    assert len(frames) == 7
    for n in (4, 5):
        assert "Identification Data:192.0.2.1" in frames[n], (hash_token, n)
    assert "Notify Message Type: R-U-THERE (36136)" in frames[6], hash_token


def test_tshark_ikev1_wrong_key_does_not_decode(tmp_path: Path) -> None:
    tshark = _require_tshark()
    msgs = _v1_exchange(alg.HASH_BY_TOKEN["sha256"], bytes(range(100, 132)))
    frames = _tshark_v1(tshark, tmp_path, msgs, bytes(32))
    assert "Identification Data:192.0.2.1" not in frames[4]
    assert "R-U-THERE" not in frames[6]
