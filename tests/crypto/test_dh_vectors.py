"""DH groups against published data: RFC 5903 §8 (ECP), RFC 5114 App. A (MODP with subgroups),
RFC 7748 §6.1 (Curve25519), and the RFC 2409/3526 primes rebuilt from their defining formula."""

from __future__ import annotations

import pytest

from cgw_peer.crypto import _groups, dh
from tests.crypto.vectors import h, load

ECP = load("rfc5903_ecp.json")["vectors"]
MODP_SUB = load("rfc5114_modp.json")["vectors"]
X25519 = load("rfc7748_x25519.json")["vectors"]


@pytest.mark.parametrize("v", ECP, ids=lambda v: f"rfc5903-{v['section']}")
def test_rfc5903_ecp(v: dict[str, str]) -> None:
    group = dh.get_group(int(v["group"]))
    ki = group.key_from_private(h(v["i"]))
    kr = group.key_from_private(h(v["r"]))
    # KE payload data is x | y with no 0x04 prefix (RFC 5903 §7).
    assert ki.public == h(v["gix"]) + h(v["giy"])
    assert kr.public == h(v["grx"]) + h(v["gry"])
    # The shared secret is the x coordinate only.
    assert ki.compute(kr.public) == h(v["girx"])
    assert kr.compute(ki.public) == h(v["girx"])


@pytest.mark.parametrize("v", MODP_SUB, ids=lambda v: v["name"])
@pytest.mark.parametrize("backend", ["default", "pow"])
def test_rfc5114_modp(v: dict[str, str], backend: str) -> None:
    number = int(v["group"])
    group = dh.get_group(number) if backend == "default" else dh.pow_group(number)
    ka = group.key_from_private(h(v["priv_i"]))
    kb = group.key_from_private(h(v["priv_r"]))
    assert ka.public == h(v["pub_i"])
    assert kb.public == h(v["pub_r"])
    assert ka.compute(kb.public) == h(v["shared"])
    assert kb.compute(ka.public) == h(v["shared"])


@pytest.mark.parametrize("v", X25519, ids=["rfc7748-6.1"])
def test_rfc7748_x25519(v: dict[str, str]) -> None:
    group = dh.get_group(31)
    a = group.key_from_private(h(v["a_priv"]))
    b = group.key_from_private(h(v["b_priv"]))
    assert a.public == h(v["a_pub"]) and b.public == h(v["b_pub"])
    assert a.compute(b.public) == b.compute(a.public) == h(v["shared"])


def _pi_times_2_pow(bits: int) -> int:
    """floor(pi * 2**bits) by Machin's formula in integer fixed point (64 guard bits)."""
    g = bits + 64
    one = 1 << g

    def atan_inv(x: int) -> int:
        total = term = one // x
        n, sign = 1, -1
        while term:
            term //= x * x
            n += 2
            total += sign * (term // n)
            sign = -sign
        return total

    return (16 * atan_inv(5) - 4 * atan_inv(239)) >> 64


# (group, bits, k): p = 2^n - 2^(n-64) - 1 + 2^64 * (floor(2^(n-130) * pi) + k)
# (RFC 2409 §6.2, RFC 3526 §2-§7).
_PI_PRIMES = [(2, 1024, 129093), (5, 1536, 741804), (14, 2048, 124476), (15, 3072, 1690314),
              (16, 4096, 240904), (17, 6144, 929484), (18, 8192, 4743158)]  # fmt: skip


@pytest.mark.parametrize(("number", "bits", "k"), _PI_PRIMES)
def test_modp_prime_matches_rfc_formula(number: int, bits: int, k: int) -> None:
    expected = (1 << bits) - (1 << (bits - 64)) - 1 + (1 << 64) * (_pi_times_2_pow(bits - 130) + k)
    group = dh.get_group(number)
    assert group.p == expected  # type: ignore[attr-defined]
    assert group.ke_len == bits // 8


@pytest.mark.parametrize("number", [22, 23, 24])
def test_rfc5114_group_structure(number: int) -> None:
    p, g, q = (getattr(_groups, f"_{x}{number}") for x in "PGQ")
    assert (p - 1) % q == 0
    assert pow(g, q, p) == 1 and g != 1
    assert q.bit_length() == {22: 160, 23: 224, 24: 256}[number]


@pytest.mark.parametrize("number", [19, 20, 21])
def test_curve_orders(number: int) -> None:
    group = dh.get_group(number)
    n = group.order  # type: ignore[attr-defined]
    size = (n.bit_length() + 7) // 8
    group.key_from_private((n - 1).to_bytes(size, "big"))  # largest valid scalar
    with pytest.raises(ValueError):
        group.key_from_private(n.to_bytes(size, "big"))  # n*G is the point at infinity
