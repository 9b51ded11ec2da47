"""HMAC PRFs and truncated integrity MACs against RFC 2202 / RFC 4231; prf+ against strongSwan's unit vector."""

from __future__ import annotations

from typing import Any

import pytest

from cgw_peer.crypto.keymat_v2 import prf_plus
from cgw_peer.crypto.prf import INTEG_NAMES, PRF_NAMES, get_integ, get_prf
from cgw_peer.errors import ConfigError
from tests.crypto.vectors import h, load

HMAC = load("hmac_rfc2202_rfc4231.json")["cases"]
PRF_PLUS = load("prf_plus_strongswan.json")
CASES = [(c, name) for c in HMAC for name in PRF_NAMES if name in c]


def _data(c: dict[str, Any]) -> bytes:
    return c["data_ascii"].encode() if "data_ascii" in c else h(c["data"])


@pytest.mark.parametrize(("case", "name"), CASES, ids=[f"{c['name']}-{n}" for c, n in CASES])
def test_hmac_vectors(case: dict[str, Any], name: str) -> None:
    prf = get_prf(name)
    key, data, want = h(case["key"]), _data(case), h(case[name])
    assert prf(key, data) == want
    mac = prf.keyed(key)
    assert mac(data) == want
    assert mac(data) == want  # the precomputed object is reusable
    assert len(want) == prf.digest_size


@pytest.mark.parametrize(("case", "name"), CASES, ids=[f"{c['name']}-{n}" for c, n in CASES])
def test_truncated_integ_vectors(case: dict[str, Any], name: str) -> None:
    # RFC 2404 / RFC 4868 §2.6: the ICV is the leftmost icv_len bytes of the HMAC.
    integ = next(get_integ(i) for i in INTEG_NAMES if get_integ(i).hash_name == name)
    key, data, full = h(case["key"]), _data(case), h(case[name])
    assert integ.mac(key, data) == full[: integ.icv_len]
    assert integ.keyed(key)(data) == full[: integ.icv_len]
    assert integ.verify(key, data, full[: integ.icv_len])
    assert not integ.verify(key, data + b"x", full[: integ.icv_len])


def test_integ_table() -> None:
    sizes = {n: (get_integ(n).key_len, get_integ(n).icv_len) for n in INTEG_NAMES}
    assert sizes == {"sha1_96": (20, 12), "sha256_128": (32, 16), "sha384_192": (48, 24), "sha512_256": (64, 32)}


def test_prf_plus_strongswan_vector() -> None:
    prf = get_prf(PRF_PLUS["prf"])
    key, seed = h(PRF_PLUS["key"]), PRF_PLUS["seed_ascii"].encode()
    want = h(PRF_PLUS["prf_plus"])
    assert len(want) == sum(PRF_PLUS["iteration_lengths"])
    assert prf_plus(prf, key, seed, len(want)) == want


def test_prf_plus_255_block_limit() -> None:
    prf = get_prf("sha256")
    limit = PRF_PLUS["max_blocks"] * prf.digest_size
    assert len(prf_plus(prf, b"k", b"s", limit)) == limit
    with pytest.raises(ValueError):
        prf_plus(prf, b"k", b"s", limit + 1)


def test_unknown_names_are_config_errors() -> None:
    for fn, field in ((get_prf, "prf"), (get_integ, "integ")):
        with pytest.raises(ConfigError) as exc:
            fn("md5")
        assert exc.value.field == field and "sha256" in str(exc.value)
