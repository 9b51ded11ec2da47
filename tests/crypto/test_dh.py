"""DH groups: both sides agree, sizes match the RFC wire formats, bad KE values are rejected."""

from __future__ import annotations

import random

import pytest

from cgw_peer.crypto import dh
from cgw_peer.errors import ConfigError, DecodeError


@pytest.mark.parametrize("number", dh.SUPPORTED_GROUPS)
def test_round_trip_every_group(number: int) -> None:
    group = dh.get_group(number)
    rng = random.Random(number)
    a, b = group.generate(rng), group.generate(rng)
    assert len(a.public) == len(b.public) == group.ke_len
    secret = a.compute(b.public)
    assert secret == b.compute(a.public)
    assert len(secret) == group.secret_len


def test_required_groups_present() -> None:
    assert set(dh.SUPPORTED_GROUPS) >= {2, 5, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24}


def test_unknown_group_is_config_error() -> None:
    with pytest.raises(ConfigError) as exc:
        dh.get_group(3)
    assert exc.value.field == "dh_group"
    assert "14" in str(exc.value)


@pytest.mark.parametrize("number", [2, 14, 22, 24])
def test_modp_rejects_trivial_values(number: int) -> None:
    group = dh.get_group(number)
    key = group.generate(random.Random(1))
    p = group.p  # type: ignore[attr-defined]
    for bad in (0, 1, p - 1, p, p + 1):
        with pytest.raises(DecodeError) as exc:
            key.compute(bad.to_bytes(group.ke_len + 1, "big")[-group.ke_len :])
        assert exc.value.reason == "invalid_ke"
    with pytest.raises(DecodeError):
        key.compute(key.public[1:])


@pytest.mark.parametrize("number", [19, 20, 21, 31])
def test_ec_rejects_wrong_length_and_bad_points(number: int) -> None:
    group = dh.get_group(number)
    key = group.generate(random.Random(2))
    with pytest.raises(DecodeError):
        key.compute(key.public + b"\0")
    if group.kind == "ecp":
        bad = bytearray(key.public)
        bad[-1] ^= 1  # y no longer matches x: off the curve
        with pytest.raises(DecodeError):
            key.compute(bytes(bad))
    else:
        with pytest.raises(DecodeError):
            key.compute(bytes(32))  # small-order point: all-zero shared secret


def test_same_seed_same_keys() -> None:
    for number in dh.SUPPORTED_GROUPS:
        g = dh.get_group(number)
        assert g.generate(random.Random(7)).public == g.generate(random.Random(7)).public


@pytest.mark.parametrize("number", [2, 5, 14, 15, 22, 23, 24])
def test_openssl_and_pow_backends_agree(number: int) -> None:
    # Two independent modexp implementations (OpenSSL via cryptography, Python's pow) must interoperate.
    a = dh.get_group(number).generate(random.Random(11))
    b = dh.pow_group(number).generate(random.Random(12))
    assert a.compute(b.public) == b.compute(a.public)
    assert dh.pow_group(number).generate(random.Random(11)).public == a.public


@pytest.mark.parametrize("number", [14, 19, 31])
def test_system_random_is_accepted(number: int) -> None:
    group = dh.get_group(number)
    a, b = group.generate(random.SystemRandom()), group.generate(random.SystemRandom())
    assert a.compute(b.public) == b.compute(a.public)


def test_modp_exponent_sizes() -> None:
    # Twice the security strength, top bit set: every key costs the same (dh.py docstring).
    for number, bits in ((2, 160), (14, 224), (15, 256), (18, 400)):
        group = dh.get_group(number)
        assert group.exp_bits == bits  # type: ignore[attr-defined]
        x = group._private_value(random.Random(number))  # type: ignore[attr-defined]
        assert x.bit_length() == bits


def test_key_reuse() -> None:
    g14, g19 = dh.get_group(14), dh.get_group(19)
    rng = random.Random(3)
    never = dh.DhKeyReuse()
    assert never.key(g19, rng) is not never.key(g19, rng)
    reuse = dh.DhKeyReuse(max_uses=3)
    keys = [reuse.key(g19, rng) for _ in range(7)]
    assert [id(k) for k in keys].count(id(keys[0])) == 3
    assert keys[3] is keys[4] is keys[5] and keys[6] is not keys[5]
    assert reuse.key(g14, rng).group is g14  # per-group cache
    with pytest.raises(ConfigError):
        dh.DhKeyReuse(max_uses=0)
