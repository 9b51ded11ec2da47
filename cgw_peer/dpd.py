"""Dead Peer Detection timing policy: pure and version-agnostic (IKEv1 R-U-THERE or IKEv2 empty INFORMATIONAL).

The model (AWS, ``ike-dpd.md`` §1.2; strongSwan ``ike_sa.c`` send_dpd for the on-demand part)::

    t0 = last authenticated inbound traffic
    probes at t0 + delay, then every `interval` while the peer stays silent
    dead at t0 + timeout                  (DeadReference.LAST_INBOUND: AWS's wording, strongSwan's behaviour)
         or first_unanswered_probe + timeout (DeadReference.FIRST_PROBE: libreswan's dpdtimeout)

Any inbound traffic that counts as liveness (the caller decides what counts) restarts the cycle. With
``periodic`` (AWS: "periodic DPDs for peers using NAT") probes go out every ``interval`` whether or not
traffic arrives; the dead time is still counted from the last inbound traffic.

The monitor only answers "when" and "what now"; it never builds messages. ``dead_at`` is armed only once a
probe has gone out unanswered: a peer that is merely idle is never declared dead without being asked.
"""

from __future__ import annotations

from enum import Enum, auto

from cgw_peer.config import DeadReference


class DpdDecision(Enum):
    IDLE = auto()
    SEND_PROBE = auto()
    PEER_DEAD = auto()


class DpdMonitor:
    """When to probe and when to declare the peer dead (instants are absolute, durations in seconds)."""

    __slots__ = (
        "dead_reported",
        "delay",
        "first_probe_at",
        "interval",
        "last_inbound_at",
        "periodic",
        "probe_at",
        "reference",
        "timeout",
    )

    def __init__(
        self,
        delay: float,
        interval: float,
        timeout: float,
        reference: DeadReference = DeadReference.LAST_INBOUND,
        periodic: bool = False,
    ) -> None:
        self.delay = delay
        self.interval = interval
        self.timeout = timeout
        self.reference = reference
        self.periodic = periodic
        self.last_inbound_at = 0.0
        self.probe_at: float | None = None
        self.first_probe_at: float | None = None
        """The first probe sent since the last inbound traffic (None: nothing outstanding)."""
        self.dead_reported = False

    def reset(self, now: float) -> None:
        """Start monitoring (SA established at ``now``): as if traffic had just arrived."""
        self.last_inbound_at = now
        self.first_probe_at = None
        self.dead_reported = False
        self.probe_at = now + self.delay

    def stop(self) -> None:
        self.probe_at = None
        self.first_probe_at = None

    def on_inbound(self, now: float) -> None:
        """Traffic that counts as liveness arrived."""
        self.last_inbound_at = now
        self.first_probe_at = None
        self.dead_reported = False
        if self.probe_at is None:
            return
        if not self.periodic:
            # On-demand DPD: the next probe is due only after `delay` of silence.
            self.probe_at = now + self.delay

    def on_probe_sent(self, now: float) -> None:
        if self.first_probe_at is None:
            self.first_probe_at = now
        self.probe_at = now + self.interval

    def on_probe_skipped(self, now: float) -> None:
        """A due probe was not sent (e.g. no probes during rekey): try again one interval later."""
        self.probe_at = now + self.interval

    @property
    def dead_at(self) -> float | None:
        if self.first_probe_at is None or self.dead_reported:
            return None
        if self.reference == DeadReference.FIRST_PROBE:
            return self.first_probe_at + self.timeout
        return self.last_inbound_at + self.timeout

    def deadline(self) -> float | None:
        """The earlier of :attr:`dead_at` and :attr:`probe_at` (None: nothing scheduled)."""
        p = self.probe_at
        first = self.first_probe_at
        if first is None or self.dead_reported:
            return p  # no dead verdict armed (as dead_at, inlined: this runs for every DPD timer)
        d = (first if self.reference == DeadReference.FIRST_PROBE else self.last_inbound_at) + self.timeout
        if p is None:
            return d
        return d if d < p else p

    def poll(self, now: float) -> DpdDecision:
        """What is due at ``now``. Dead wins over a probe due at the same instant (AWS: three probes at
        t0+10/20/30 then dead at t0+40, no fourth probe)."""
        first = self.first_probe_at
        if first is not None and not self.dead_reported:
            # dead_at, inlined (hot path)
            d = (first if self.reference == DeadReference.FIRST_PROBE else self.last_inbound_at) + self.timeout
            if now >= d:
                return DpdDecision.PEER_DEAD
        p = self.probe_at
        if p is not None and now >= p:
            return DpdDecision.SEND_PROBE
        return DpdDecision.IDLE

    def mark_dead(self) -> None:
        """The dead verdict was acted on; not reported again until traffic returns."""
        self.dead_reported = True
