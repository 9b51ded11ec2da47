"""When to rekey, and which SA survives when both sides rekey (or set up) the same SA at once.

* :func:`rekey_delay`: strongSwan's schedule, which AWS's ``RekeyMarginTimeSeconds`` / ``RekeyFuzzPercentage``
  mirror (``ike-dpd.md`` §1.4).
* :func:`redundant`: the collision rule. RFC 7296 §2.8.1: of two SAs created by a simultaneous rekey, "the SA
  created with the lowest of the four nonces SHOULD be closed by the endpoint that created it". RFC 2409 has no
  rule for IKEv1; the IKEv1 engine applies the same one (see :mod:`cgw_peer.lifecycle`), so that in both
  versions exactly one new SA survives and both sides agree on which without talking.
"""

from __future__ import annotations

import random
from typing import TypeVar

_T = TypeVar("_T")


def rekey_delay(lifetime: float, margin: float, fuzz_percent: float, rng: random.Random) -> float:
    """Seconds from SA establishment to the rekey, strongSwan's formula (``ipsec.conf(5)`` EXPIRY/REKEY):

    ``rekeytime = lifetime - (margintime + random(0, margintime * rekeyfuzz))``

    AWS documents ``RekeyMarginTimeSeconds`` and ``RekeyFuzzPercentage`` with the same meaning (and caps the
    margin at lifetime/2 so the result stays positive, ``ike-dpd.md`` §1.4).

    The lifetime used is the *negotiated* one, which the peer may have made much shorter than the configured
    one. When the margin plus its fuzz would eat more than two thirds of that lifetime, the margin is scaled
    down to a third of it, so the rekey lands between a third and two thirds of the lifetime instead of
    immediately (an immediate rekey of every new SA would collide with the peer's own rekeys forever).
    """
    fuzz = max(0.0, fuzz_percent) / 100.0
    if margin * (1.0 + fuzz) > lifetime * 2.0 / 3.0:
        margin = lifetime / 3.0
        fuzz = min(fuzz, 1.0)
    jitter = rng.uniform(0.0, margin * fuzz) if fuzz > 0 else 0.0
    return max(0.0, lifetime - (margin + jitter))


def redundant(candidates: list[tuple[bytes, bytes, _T]]) -> _T:
    """The collision loser among SAs given as (nonce_i, nonce_r, sa): the one holding the lowest of all their
    nonces (octet-wise; a shorter nonce that is a prefix of a longer one is lower), RFC 7296 §2.8.1."""
    best = min(candidates, key=lambda c: min(c[0], c[1]))
    return best[2]
