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
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

V1_FILE = "ikev1_decryption_table"
V2_FILE = "ikev2_decryption_table"


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


class KeyTables:
    """Collects IKE keys and writes Wireshark's two decryption tables."""

    def __init__(self, directory: str | None = None) -> None:
        self.directory = directory
        self.v1: dict[str, str] = {}
        self.v2: dict[str, str] = {}

    def add(self, fields: Mapping[str, Any]) -> None:
        """Add one ``sa_keys`` event's fields; rewrites the files when a directory is set."""
        version = int(fields.get("ike_version", 1))
        if version == 1:
            self.v1[str(fields["icookie"])] = v1_row(fields)
        else:
            self.v2[f"{fields['spi_i']}{fields['spi_r']}"] = v2_row(fields)
        if self.directory is not None:
            self.write(self.directory)

    def write(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)
        for name, rows in ((V1_FILE, self.v1), (V2_FILE, self.v2)):
            tmp = os.path.join(directory, name + ".tmp")
            with open(tmp, "w") as f:
                for row in rows.values():
                    f.write(row + "\n")
            os.replace(tmp, os.path.join(directory, name))

    def tshark_options(self) -> list[str]:
        """``-o uat:...`` arguments equivalent to the files (for one-off tshark runs)."""
        out: list[str] = []
        for row in self.v1.values():
            out += ["-o", f"uat:{V1_FILE}:{row}"]
        for row in self.v2.values():
            out += ["-o", f"uat:{V2_FILE}:{row}"]
        return out
