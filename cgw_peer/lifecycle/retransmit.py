"""Retransmission of IKE requests, one schedule for both IKE versions (RFC 7296 §2.1, §2.4; RFC 2408 §5).

Only the initiator of an exchange retransmits (IKEv1 Main Mode and Quick Mode initiators, every IKEv2 request),
bitwise identical, with exponential backoff. The waits are ``timeout * base**n`` for n = 0..tries, each capped
at ``limit`` and shortened by up to ``jitter`` at random (strongSwan ``retransmit_timeout``, ``_base``,
``_tries``, ``_limit``, ``_jitter``: ``ike-dpd.md`` §5.1); the request is given up when the waits are spent or
``budget`` seconds after the first send, whichever comes first (libreswan ``retransmit-timeout``, §5.2).

A :class:`RetransmitPolicy` is that schedule, computed once per configuration; :class:`Retransmission` is the
state of one request on it. The engines keep one per outstanding request: :meth:`Retransmission.due` tells when
the next copy goes out, :meth:`Retransmission.advance` moves on after a copy was sent (False: give up now).

The AWS liveness model retransmits its IKEv2 INFORMATIONAL request every ``dpd_interval`` until the DPD timeout
decides (``ike-dpd.md`` §1.2): :meth:`RetransmitPolicy.fixed` builds that schedule (no give-up of its own).
"""

from __future__ import annotations

import functools
import random
from typing import Protocol

from cgw_peer.config import Retransmit

INF = float("inf")


class RetransmitPolicy:
    """The waits of one configuration (shared, never mutated)."""

    __slots__ = ("budget", "fixed_wait", "jitter", "total", "waits")

    def __init__(self, waits: tuple[float, ...], jitter: float, budget: float | None, fixed_wait: float = 0.0):
        self.waits = waits
        """Wait after send number n (0 = the original), before jitter."""
        self.jitter = jitter
        self.budget = budget
        self.total = sum(waits) if budget is None else min(sum(waits), budget)
        """Seconds from the first send to giving up, without jitter."""
        self.fixed_wait = fixed_wait
        """> 0: every wait is this long and the request is never given up (the AWS liveness cadence)."""

    @classmethod
    def fixed(cls, interval: float) -> RetransmitPolicy:
        """Retransmit every ``interval`` seconds until answered or abandoned by the caller."""
        return _fixed(interval)

    def start(self, r: Retransmission, now: float, rng: random.Random) -> None:
        """Arm ``r`` for a request first sent at ``now``."""
        r.first_sent = now
        r.retransmits = 0
        if self.fixed_wait > 0:
            r.waits = ()
            r.next_at = now + self.fixed_wait
            r.give_up_at = INF
            return
        waits = self.waits
        if self.jitter > 0:
            # strongSwan retransmit_jitter: each wait may only be shortened, by up to this fraction.
            j = self.jitter
            waits = tuple(w * (1.0 - j * rng.random()) for w in waits)
            total = sum(waits)
            if self.budget is not None:
                total = min(total, self.budget)
        else:
            total = self.total
        r.waits = waits
        r.next_at = now + waits[0]
        r.give_up_at = now + total


@functools.lru_cache(maxsize=64)
def policy_for(r: Retransmit) -> RetransmitPolicy:
    """The policy of a ``Behaviour.retransmit`` setting (shared by every peer with the same setting)."""
    return RetransmitPolicy(tuple(r.waits()), r.jitter, r.budget)


@functools.lru_cache(maxsize=64)
def _fixed(interval: float) -> RetransmitPolicy:
    return RetransmitPolicy((interval,), 0.0, None, fixed_wait=interval)


class Retransmission:
    """One outstanding request on a :class:`RetransmitPolicy` (the engines subclass it to add their fields)."""

    __slots__ = ("data", "first_sent", "give_up_at", "kind", "next_at", "policy", "retransmits", "waits")

    def __init__(self, data: bytes, kind: str, policy: RetransmitPolicy, now: float, rng: random.Random) -> None:
        self.data = data
        """The datagram, resent bitwise identical (RFC 7296 §2.1)."""
        self.kind = kind
        self.policy = policy
        self.first_sent = now
        self.next_at = INF
        self.give_up_at = INF
        self.waits: tuple[float, ...] = ()
        self.retransmits = 0
        policy.start(self, now, rng)

    def due(self) -> float:
        """The earlier of the next copy and giving up."""
        return self.next_at if self.next_at < self.give_up_at else self.give_up_at

    def advance(self, now: float) -> bool:
        """A copy is due at ``now``: count it and schedule the next one. False: the request is given up
        instead (its waits are spent or its budget is over)."""
        if now >= self.give_up_at:
            return False
        n = self.retransmits + 1
        if self.policy.fixed_wait > 0:
            self.retransmits = n
            self.next_at = now + self.policy.fixed_wait
            return True
        if n >= len(self.waits):
            return False
        self.retransmits = n
        self.next_at = now + self.waits[n]
        return True

    def hold(self, now: float, interval: float) -> None:
        """Keep the request alive past its give-up instant, one copy every ``interval`` (DPDTimeoutAction=none:
        the peer is dead but nothing is torn down; its message ID must stay in sequence, RFC 7296 §2.2)."""
        self.policy = RetransmitPolicy.fixed(interval)
        self.give_up_at = INF
        self.next_at = now + interval


def cached(data: bytes, kind: str) -> Retransmission:
    """A sent message kept only to answer a retransmitted request with it, never retransmitted on its own
    (IKEv1 QM3: the responder's retransmitted QM2 gets it again)."""
    r = Retransmission.__new__(Retransmission)
    r.data = data
    r.kind = kind
    r.policy = _fixed(INF)
    r.first_sent = INF
    r.next_at = INF
    r.give_up_at = INF
    r.waits = ()
    r.retransmits = 0
    return r


class Answerer(Protocol):
    """What keeps a cached answer (an IKEv1 ISAKMP SA or Quick Mode, an IKEv2 IKE SA): how often it was resent."""

    answers: int
    answered_at: float


def may_resend(holder: Answerer, now: float, interval: float, limit: int | None) -> bool:
    """Whether a cached answer may go out again at ``now`` (and count it if so).

    A responder resends its answer when the request is retransmitted (RFC 7296 §2.1, RFC 2408 §5), here at most
    ``limit`` times per request and at most once per ``interval`` seconds (``Behaviour.cached_answer_limit`` /
    ``cached_answer_interval``). A retransmitted request is bitwise the same as a replayed one, so it is never a
    proof of life; the limits keep a replay storm from turning us into an amplifier towards the real peer. The
    counters are reset (``answers = 0``, ``answered_at = -inf``) when a new request is answered."""
    if limit is not None and holder.answers >= limit:
        return False
    if now - holder.answered_at < interval:
        return False
    holder.answers += 1
    holder.answered_at = now
    return True
