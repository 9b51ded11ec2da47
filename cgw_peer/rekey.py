"""Rekey schedule and restart backoff: pure, version-agnostic policy functions."""

from __future__ import annotations

import random


def rekey_delay(lifetime: float, margin: float, fuzz_percent: float, rng: random.Random) -> float:
    """Seconds from SA establishment to the rekey, strongSwan's formula (``ipsec.conf(5)`` EXPIRY/REKEY):

    ``rekeytime = lifetime - (margintime + random(0, margintime * rekeyfuzz))``

    AWS documents ``RekeyMarginTimeSeconds`` and ``RekeyFuzzPercentage`` with the same meaning (and caps the
    margin at lifetime/2 so the result stays positive, ``ike-dpd.md`` §1.4).
    """
    jitter = rng.uniform(0.0, margin * fuzz_percent / 100.0) if fuzz_percent > 0 else 0.0
    return max(0.0, lifetime - (margin + jitter))


def backoff_delay(attempt: int, initial: float, maximum: float, jitter: float, rng: random.Random) -> float:
    """Restart delay before attempt ``attempt`` (0-based): ``min(max, initial * 2**attempt)``, shortened by up to
    ``jitter`` (a fraction) at random, so that two sides restarting at the same instant do not collide again
    (strongSwan issue #292: restarts without delay storm metered links)."""
    base = min(maximum, initial * (2.0 ** min(attempt, 62)))
    if jitter > 0:
        base *= 1.0 - jitter * rng.random()
    return base
