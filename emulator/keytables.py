"""Wireshark decryption tables (UAT files) built from the engine's ``sa_keys`` events.

IKE engines emit ``Event("sa_keys", fields)`` whenever an IKE SA gets keys:

* IKEv1: ``{"ike_version": 1, "icookie": hex16, "rcookie": hex16, "enc_key": hex}`` where ``enc_key`` is Ka.
* IKEv2: ``{"ike_version": 2, "spi_i": hex16, "spi_r": hex16, "sk_ei": hex, "sk_er": hex,
  "encr_alg": str, "sk_ai": hex, "sk_ar": hex, "integ_alg": str}`` with Wireshark's exact algorithm names
  (``"AES-CBC-128 [RFC3602]"``, ``"AES-GCM with 16 octet ICV [RFC4106]"``, ``"HMAC_SHA2_256_128 [RFC4868]"``,
  ``"NONE [RFC4306]"``...).

:class:`KeyTables` keeps the rows (deduplicated, insertion order) and writes ``ikev1_decryption_table`` /
``ikev2_decryption_table`` into a directory, so ``WIRESHARK_CONFIG_DIR=DIR tshark -r FILE`` decrypts.
Formats (checked against tshark 4.0, ``real-peers.md`` §4): IKEv1 rows ``icookie,key`` (hex, unquoted);
IKEv2 rows ``spi_i,spi_r,sk_ei,sk_er,"encr",sk_ai,sk_ar,"integ"`` (hex unquoted, names quoted).

ESP SAs (:meth:`KeyTables.add_esp`, fed with :meth:`cgw_peer.esp.EspSa.esp_sa_row`, or
:meth:`KeyTables.add_child_sa` from a ``child_sa_established`` event) go into Wireshark's ``esp_sa`` table: eight
quoted fields ``"IPv4","src","dst","0xSPI","encr alg","0xkey","auth alg","0xkey"`` (the format of Wireshark's own
``test/config/esp_sa.tmpl``; algorithm names from ``packet-ipsec.c``, checked against tshark 4.0.17 here). tshark
decrypts ESP only when the ESP preferences say so, so a directory holding ESP rows also gets a ``preferences``
file that turns on ``esp.enable_encryption_decode`` and ``esp.enable_authentication_check``.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from typing import Any

from cgw_peer.esp import EspSa

V1_FILE = "ikev1_decryption_table"
V2_FILE = "ikev2_decryption_table"
ESP_FILE = "esp_sa"
PREFS_FILE = "preferences"
ESP_PREFS = ("esp.enable_encryption_decode: TRUE", "esp.enable_authentication_check: TRUE")
"""Wireshark preferences an ``esp_sa`` table needs: decryption is off by default (``tshark -G defaultprefs``)."""
_NO_RNG = random.Random(0)  # add_child_sa builds SAs only to read their rows; they never encrypt
_ESP_FIELDS = ("protocol", "src", "dst", "spi", "encr_alg", "encr_key", "auth_alg", "auth_key")


def v1_row(f: Mapping[str, Any]) -> str:
    return f"{f['icookie']},{f['enc_key']}"


def v2_row(f: Mapping[str, Any]) -> str:
    return ",".join(
        [
            str(f["spi_i"]),
            str(f["spi_r"]),
            str(f["sk_ei"]),
            str(f["sk_er"]),
            f'"{f["encr_alg"]}"',
            str(f.get("sk_ai", "")),
            str(f.get("sk_ar", "")),
            f'"{f["integ_alg"]}"',
        ]
    )


def esp_row(f: Mapping[str, Any]) -> str:
    """One ``esp_sa`` row from the keys of :meth:`cgw_peer.esp.EspSa.esp_sa_row` (every field quoted)."""
    return ",".join(f'"{f.get(k, "")}"' for k in _ESP_FIELDS)


class KeyTables:
    """Collects IKE and ESP keys and writes Wireshark's decryption tables."""

    def __init__(self, directory: str | None = None) -> None:
        self.directory = directory
        self.v1: dict[str, str] = {}
        self.v2: dict[str, str] = {}
        self.esp: dict[str, str] = {}
        """``esp_sa`` rows keyed by (src, dst, SPI)."""

    def add(self, fields: Mapping[str, Any]) -> None:
        """Add one ``sa_keys`` event's fields; rewrites the files when a directory is set."""
        version = int(fields.get("ike_version", 1))
        if version == 1:
            self.v1[str(fields["icookie"])] = v1_row(fields)
        else:
            self.v2[f"{fields['spi_i']}{fields['spi_r']}"] = v2_row(fields)
        if self.directory is not None:
            self.write(self.directory)

    def add_esp(self, row: Mapping[str, Any]) -> None:
        """Add one ESP SA (the mapping :meth:`cgw_peer.esp.EspSa.esp_sa_row` returns); rewrites the files when a
        directory is set."""
        self.esp[_esp_key(row)] = esp_row(row)
        if self.directory is not None:
            self.write(self.directory)

    def add_child_sa(self, fields: Mapping[str, Any], local: str, remote: str, encap: bool | None = None) -> None:
        """Add both ESP SAs of a ``child_sa_established`` event seen at the node whose outer address is ``local``
        (the peer's is ``remote``). Wireshark matches on addresses, not ports, so ports are not needed; ``encap``
        overrides the event's field as in :meth:`cgw_peer.esp.EspSa.from_child_event`."""
        for direction in ("in", "out"):
            sa = EspSa.from_child_event(fields, direction, (local, 0), (remote, 0), rng=_NO_RNG, encap=encap)
            row = sa.esp_sa_row()
            self.esp[_esp_key(row)] = esp_row(row)
        if self.directory is not None:
            self.write(self.directory)

    def write(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)
        for name, rows in ((V1_FILE, self.v1), (V2_FILE, self.v2), (ESP_FILE, self.esp)):
            _write_lines(os.path.join(directory, name), list(rows.values()))
        if self.esp:
            _write_lines(os.path.join(directory, PREFS_FILE), list(ESP_PREFS))

    def tshark_options(self) -> list[str]:
        """``-o uat:...`` arguments equivalent to the files (for one-off tshark runs)."""
        out: list[str] = []
        for row in self.v1.values():
            out += ["-o", f"uat:{V1_FILE}:{row}"]
        for row in self.v2.values():
            out += ["-o", f"uat:{V2_FILE}:{row}"]
        for row in self.esp.values():
            out += ["-o", f"uat:{ESP_FILE}:{row}"]
        if self.esp:
            for pref in ESP_PREFS:
                out += ["-o", pref.replace(": ", ":")]
        return out


def _esp_key(row: Mapping[str, Any]) -> str:
    return f"{row['src']}|{row['dst']}|{row['spi']}"


def _write_lines(path: str, lines: list[str]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        for line in lines:
            f.write(line + "\n")
    os.replace(tmp, path)
