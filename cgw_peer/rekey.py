"""Rekey schedule and restart backoff: pure, version-agnostic policy functions."""

from __future__ import annotations

import random


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


def backoff_delay(attempt: int, initial: float, maximum: float, jitter: float, rng: random.Random) -> float:
    """Restart delay before attempt ``attempt`` (0-based): ``min(max, initial * 2**attempt)``, shortened by up to
    ``jitter`` (a fraction) at random, so that two sides restarting at the same instant do not collide again
    (strongSwan issue #292: restarts without delay storm metered links)."""
    base = min(maximum, initial * (2.0 ** min(attempt, 62)))
    if jitter > 0:
        base *= 1.0 - jitter * rng.random()
    return base
