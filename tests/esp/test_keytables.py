"""The ``esp_sa`` rows and preferences :class:`KeyTables` writes (format of Wireshark's ``test/config/esp_sa.tmpl``)."""

from __future__ import annotations

from pathlib import Path

from emulator.keytables import ESP_FILE, PREFS_FILE, V1_FILE, KeyTables, esp_row

from .helpers import sa_pair


def test_row_format() -> None:
    out, _ = sa_pair("aes128-sha1", spi=0x070883C2)
    assert esp_row(out.esp_sa_row()) == (
        f'"IPv4","198.51.100.1","203.0.113.1","0x070883c2","AES-CBC [RFC3602]","0x{out.enc_key.hex()}",'
        f'"HMAC-SHA-1-96 [RFC2404]","0x{out.integ_key.hex()}"'
    )
    gcm, _ = sa_pair("aes256gcm16", spi=1)
    row = gcm.esp_sa_row()
    assert row["auth_alg"] == "NULL" and row["auth_key"] == "" and len(row["encr_key"]) == 2 + 2 * 36


def test_files_and_options(tmp_path: Path) -> None:
    kt = KeyTables(str(tmp_path / "k"))
    kt.add({"ike_version": 1, "icookie": "0102030405060708", "rcookie": "11" * 8, "enc_key": "aa" * 16})
    assert not (tmp_path / "k" / PREFS_FILE).exists()  # IKE-only directories stay as they were
    assert (tmp_path / "k" / ESP_FILE).read_text() == ""
    out, inn = sa_pair("aes128gcm16")
    kt.add_esp(out.esp_sa_row())
    kt.add_esp(inn.esp_sa_row())  # the same SA seen from the receiver: one row
    assert (tmp_path / "k" / ESP_FILE).read_text().count("\n") == 1
    assert (tmp_path / "k" / PREFS_FILE).read_text().splitlines() == [
        "esp.enable_encryption_decode: TRUE",
        "esp.enable_authentication_check: TRUE",
    ]
    assert (tmp_path / "k" / V1_FILE).read_text().startswith("0102030405060708,")
    opts = kt.tshark_options()
    assert "uat:esp_sa:" + esp_row(out.esp_sa_row()) in opts and "esp.enable_encryption_decode:TRUE" in opts


def test_add_child_sa_both_directions() -> None:
    ev = {
        "spi_in": "0000aaaa",
        "spi_out": "0000bbbb",
        "proposal": "aes256-sha256-modp2048",
        "enc_in": "01" * 32,
        "integ_in": "02" * 32,
        "enc_out": "03" * 32,
        "integ_out": "04" * 32,
        "encap": False,
    }
    kt = KeyTables()
    kt.add_child_sa(ev, "203.0.113.1", "198.51.100.1")
    rows = list(kt.esp.values())
    assert rows == [
        '"IPv4","198.51.100.1","203.0.113.1","0x0000aaaa","AES-CBC [RFC3602]","0x'
        + "01" * 32
        + '","HMAC-SHA-256-128 [RFC4868]","0x'
        + "02" * 32
        + '"',
        '"IPv4","203.0.113.1","198.51.100.1","0x0000bbbb","AES-CBC [RFC3602]","0x'
        + "03" * 32
        + '","HMAC-SHA-256-128 [RFC4868]","0x'
        + "04" * 32
        + '"',
    ]
