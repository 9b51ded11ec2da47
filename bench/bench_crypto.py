"""Micro-benchmarks of the IKE crypto layer (:mod:`cgw_peer.crypto`).

Rows are "one side" costs as an engine pays them: DH = keygen (incl. KE encoding) + compute(peer KE);
symmetric rows = one message. Targets follow from the tunnel-setup goals (>= 300 IKEv1 setups/s with
modp2048 and >= 1000/s with ecp256, both sides in one process): a group-14 side must stay well under 1 ms,
an ecp256 side near 0.1 ms.

Baselines measured in the same run: OpenSSL's own (non-deterministic) FFDH keygen for group 14, the
pure-``pow()`` path for group 14, and a fresh HMAC / AES object per message for the symmetric rows.
"""

from __future__ import annotations

import random
import warnings

from bench.common import Row, rate
from cgw_peer.crypto import dh
from cgw_peer.crypto.cipher import AesCbc, AesGcm16, aes_cbc_decrypt, aes_cbc_encrypt
from cgw_peer.crypto.keymat_v1 import skeyid_chain, skeyid_psk
from cgw_peer.crypto.keymat_v2 import derive_ike_keys, skeyseed
from cgw_peer.crypto.prf import get_integ, get_prf

# Target one-side DH rates (ops/s): 1000/s = 1 ms per side.
DH_TARGETS = {14: 1000.0, 19: 5000.0, 31: 5000.0}


def _dh_rate(group: dh.DhGroup, t: float) -> float:
    rng = random.Random(1)
    peer = group.generate(rng).public

    def one_side() -> None:
        group.generate(rng).compute(peer)

    return rate(one_side, t)


def _openssl_native_group14(t: float) -> float:
    """OpenSSL keygen (its own random exponent) + load peer + exchange: the non-deterministic baseline."""
    pn_cls, pub_cls, _ = dh._DH
    g14 = dh.get_group(14)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        params = pn_cls(g14.p, 2).parameters()  # type: ignore[attr-defined]
    peer = int.from_bytes(g14.generate(random.Random(2)).public, "big")

    def one_side() -> None:
        k = params.generate_private_key()
        k.public_key().public_numbers().y.to_bytes(256, "big")
        k.exchange(pub_cls(peer, params.parameter_numbers()).public_key())

    return rate(one_side, t)


def run(quick: bool) -> list[Row]:
    t = 0.3 if quick else 1.0
    rows: list[Row] = []
    for number in (2, 5, 14, 15, 19, 20, 21, 24, 31):
        g = dh.get_group(number)
        r = _dh_rate(g, t)
        target = DH_TARGETS.get(number)
        rows.append(
            Row(
                f"DH {g.name} (group {number}) keygen+compute, one side",
                r,
                "ops/s",
                f">= {target:,.0f}/s" if target else "",
                (r >= target) if target else None,
                f"{1e3 / r:.3f} ms",
            )
        )
        if number == 14 and dh._DH is not None:
            base = _openssl_native_group14(t)
            rows.append(Row("  baseline: OpenSSL native keygen, group 14", base, "ops/s", note=f"ratio {r / base:.2f}"))
            pw = _dh_rate(dh.pow_group(14), t)
            rows.append(Row("  baseline: pure pow(), group 14", pw, "ops/s", note=f"ratio {r / pw:.2f}"))

    key16, iv, msg92 = bytes(range(16)), bytes(16), bytes(96)  # 92 B payload padded to 96
    cbc = AesCbc(key16)
    fresh = rate(lambda: aes_cbc_decrypt(key16, iv, aes_cbc_encrypt(key16, iv, msg92)), t)
    reuse = rate(lambda: cbc.decrypt(iv, cbc.encrypt(iv, msg92)), t)
    rows.append(Row("AES-128-CBC 96B enc+dec, functions (new AES per call)", fresh, "ops/s"))
    rows.append(Row("AES-128-CBC 96B enc+dec, AesCbc(key) reused", reuse, "ops/s", note=f"ratio {reuse / fresh:.2f}"))
    gcm = AesGcm16(bytes(range(20)))
    sealed = gcm.seal(b"8bytesiv", bytes(92), b"hdr" * 8)
    rows.append(
        Row(
            "AES-128-GCM-16 92B seal+open, AesGcm16 reused",
            rate(lambda: gcm.open(b"8bytesiv", gcm.seal(b"8bytesiv", bytes(92), b"hdr" * 8), b"hdr" * 8), t),
            "ops/s",
            note=f"sealed {len(sealed)} B",
        )
    )

    prf = get_prf("sha256")
    k32, d100 = bytes(32), bytes(100)
    one_shot = rate(lambda: prf(k32, d100), t)
    keyed = prf.keyed(k32)
    fast = rate(lambda: keyed(d100), t)
    rows.append(Row("HMAC-SHA256 100B, prf(key, data)", one_shot, "ops/s"))
    rows.append(Row("HMAC-SHA256 100B, prf.keyed(key) copy()", fast, "ops/s", note=f"ratio {fast / one_shot:.2f}"))
    integ = get_integ("sha256_128").keyed(k32)
    rows.append(Row("ICV SHA2-256-128 100B, Integ.keyed", rate(lambda: integ(d100), t), "ops/s"))

    g256, n16 = bytes(256), bytes(16)

    def v1_chain() -> None:
        s = skeyid_psk(get_prf("sha1"), b"psk", n16, n16)
        skeyid_chain(get_prf("sha1"), s, g256, bytes(8), bytes(8))

    def v2_keys() -> None:
        seed = skeyseed(prf, n16, n16, g256)
        derive_ike_keys(prf, seed, n16, n16, bytes(8), bytes(8), enc_key_len=32, integ_key_len=32)

    rows.append(Row("IKEv1 SKEYID + chain (SHA1)", rate(v1_chain, t), "ops/s"))
    rows.append(Row("IKEv2 SKEYSEED + 7 keys (SHA256, AES256)", rate(v2_keys, t), "ops/s"))
    return rows
