"""When to probe a silent peer and when to declare it dead: one monitor for both IKE versions.

The monitor answers "when" and "what now"; it never builds a message. The engine tells it what arrived
(:meth:`Liveness.on_inbound`, only for authenticated messages that count as liveness) and what it sent
(:meth:`Liveness.on_probe_sent`, :meth:`Liveness.on_probe_repeated`), and asks :meth:`Liveness.poll` at the
instant :meth:`Liveness.deadline` names. The rules are in :mod:`cgw_peer.lifecycle` (module docstring).

A peer that is merely idle is never declared dead without being asked: the dead instant is armed only while a
request of ours is unanswered (``awaiting``).
"""

from __future__ import annotations

from enum import Enum

from cgw_peer.config import LivenessModel


class DeadRule(Enum):
    """From which instant the DPD timeout counts, or whether the retransmission budget decides instead."""

    LAST_INBOUND = "last-inbound"
    """Dead at the last authenticated inbound message + timeout (AWS; strongSwan IKEv1 ``dpd_timeout``)."""
    FIRST_PROBE = "first-probe"
    """Dead at the first unanswered probe + timeout (libreswan IKEv1 ``dpdtimeout``)."""
    RETRANSMIT_BUDGET = "retransmit-budget"
    """Dead when the unanswered request's retransmissions are spent (strongSwan and libreswan IKEv2: "any
    retransmit timeout implies that the IKE SA is dead")."""


_RULES: dict[tuple[LivenessModel, int], DeadRule] = {
    (LivenessModel.AWS, 1): DeadRule.LAST_INBOUND,
    (LivenessModel.AWS, 2): DeadRule.LAST_INBOUND,
    (LivenessModel.STRONGSWAN, 1): DeadRule.LAST_INBOUND,
    (LivenessModel.STRONGSWAN, 2): DeadRule.RETRANSMIT_BUDGET,
    (LivenessModel.LIBRESWAN, 1): DeadRule.FIRST_PROBE,
    (LivenessModel.LIBRESWAN, 2): DeadRule.RETRANSMIT_BUDGET,
}


def dead_rule(model: LivenessModel, version: int) -> DeadRule:
    """The rule a liveness model applies in an IKE version (the table in :mod:`cgw_peer.lifecycle`)."""
    return _RULES[(model, version)]


IDLE = 0
"""poll(): nothing due."""
PROBE = 1
"""poll(): send a liveness probe now (or, IKEv1, the next R-U-THERE of a round)."""
DEAD = 2
"""poll(): the peer is dead now; run the DPD timeout action."""


class Liveness:
    """Probe and dead instants of one tunnel (absolute instants ``*_at``, durations in seconds)."""

    __slots__ = (
        "active",
        "awaiting",
        "dead_reported",
        "delay",
        "first_probe_at",
        "interval",
        "last_inbound_at",
        "periodic",
        "probe_at",
        "probes",
        "repeat_probes",
        "rule",
        "timeout",
    )

    def __init__(self, delay: float, interval: float, timeout: float, rule: DeadRule, *, repeat_probes: bool):
        self.delay = delay
        """Idle time before the first probe (AWS 10 s)."""
        self.interval = interval
        """Between probes of a round (IKEv1) / periodic probes behind NAT (AWS 10 s)."""
        self.timeout = timeout
        """DPDTimeoutSeconds (AWS role) or the behaviour's ``dpd_timeout``; unused by RETRANSMIT_BUDGET."""
        self.rule = rule
        self.repeat_probes = repeat_probes
        """IKEv1: an unanswered probe is followed by a new R-U-THERE every ``interval`` (RFC 3706 §5.5). IKEv2:
        one request, retransmitted on its own schedule (RFC 7296 §2.4); the monitor then only arms the dead
        instant."""
        self.periodic = False
        """Probe every ``interval`` even while traffic arrives (AWS: "periodic DPDs for peers using NAT")."""
        self.active = False
        self.last_inbound_at = 0.0
        """When the last authenticated message that counts as liveness arrived (or the SA was established)."""
        self.first_probe_at: float | None = None
        """The first probe since :attr:`last_inbound_at` (None: none sent)."""
        self.probes = 0
        """Probes sent since :attr:`last_inbound_at` (IKEv2: the request and each retransmission)."""
        self.awaiting = False
        """A request of ours is unanswered: the dead instant is armed."""
        self.probe_at: float | None = None
        self.dead_reported = False

    # -- inputs ----------------------------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """An SA was established at ``now`` and the peer runs DPD: monitor it, as if traffic had just arrived."""
        self.active = True
        self.last_inbound_at = now
        self.first_probe_at = None
        self.probes = 0
        self.awaiting = False
        self.dead_reported = False
        self.probe_at = now + self.delay

    def stop(self) -> None:
        """No SA to monitor (torn down, or DPD not negotiated)."""
        self.active = False
        self.probe_at = None
        self.first_probe_at = None
        self.probes = 0
        self.awaiting = False

    def on_inbound(self, now: float, awaiting: bool = False) -> None:
        """An authenticated message that counts as liveness arrived at ``now``. ``awaiting``: a request of ours is
        still unanswered after it (IKEv2: the peer's own request crossed ours), so the dead instant stays armed,
        counted from now."""
        if now > self.last_inbound_at:
            self.last_inbound_at = now
        self.dead_reported = False
        self.probes = 0
        if awaiting:
            self.first_probe_at = now
            self.awaiting = True
        else:
            self.first_probe_at = None
            self.awaiting = False
        if self.active and (not self.periodic or self.probe_at is None):
            # On-demand DPD: the next probe is due only after `delay` of silence (strongSwan ike_sa.c send_dpd).
            self.probe_at = now + self.delay

    def on_probe_sent(self, now: float) -> None:
        """A new probe went out (IKEv1 R-U-THERE; IKEv2: any request on the established IKE SA)."""
        if self.first_probe_at is None:
            self.first_probe_at = now
        self.probes += 1
        self.awaiting = True
        # IKEv1 repeats R-U-THERE every interval; an IKEv2 request is retransmitted on its own schedule, and the
        # next new probe waits for an answer (RFC 7296 §2.3: a window of one).
        self.probe_at = now + self.interval if self.repeat_probes else None

    def on_probe_repeated(self) -> None:
        """IKEv2: the unanswered request was retransmitted."""
        self.probes += 1

    def on_probe_skipped(self, now: float) -> None:
        """A due probe could not go out (an exchange is in progress, or a rekey and ``dpd_during_rekey`` is
        off): try again one interval later."""
        self.probe_at = now + self.interval

    def on_answered(self) -> None:
        """IKEv2: our request was answered (the response itself went through :meth:`on_inbound`)."""
        self.awaiting = False

    # -- outputs ---------------------------------------------------------------------------------------------

    @property
    def dead_at(self) -> float | None:
        """When the peer will be declared dead unless something arrives (None: not armed)."""
        if not self.awaiting or self.dead_reported or self.rule is DeadRule.RETRANSMIT_BUDGET:
            return None
        first = self.first_probe_at
        assert first is not None
        return (first if self.rule is DeadRule.FIRST_PROBE else self.last_inbound_at) + self.timeout

    def deadline(self) -> float | None:
        """The earlier of :attr:`dead_at` and the next probe (None: nothing scheduled)."""
        p = self.probe_at
        if not self.awaiting or self.dead_reported or self.rule is DeadRule.RETRANSMIT_BUDGET:
            return p
        # dead_at, inlined: this runs for every DPD timer.
        d = (self.first_probe_at if self.rule is DeadRule.FIRST_PROBE else self.last_inbound_at) + self.timeout  # type: ignore[operator]
        if p is None:
            return d
        return d if d < p else p

    def poll(self, now: float) -> int:
        """What is due at ``now``: :data:`DEAD`, :data:`PROBE` or :data:`IDLE`. Dead wins over a probe due at the
        same instant (AWS: probes at t0+10/20/30, dead at t0+40, no fourth probe)."""
        if self.awaiting and not self.dead_reported and self.rule is not DeadRule.RETRANSMIT_BUDGET:
            d = (self.first_probe_at if self.rule is DeadRule.FIRST_PROBE else self.last_inbound_at) + self.timeout  # type: ignore[operator]
            if now >= d:
                return DEAD
        p = self.probe_at
        if p is not None and now >= p:
            return PROBE
        return IDLE

    def mark_dead(self) -> None:
        """The dead verdict was acted on; not reported again until something arrives."""
        self.dead_reported = True
