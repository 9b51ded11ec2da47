"""Tunnel status as AWS shows it, its UP/DOWN machine, and the AWS log lines (both IKE versions).

AWS ``VgwTelemetry`` per tunnel: ``Status`` UP|DOWN, ``StatusMessage`` (free text; ``IPSEC IS UP`` /
``IPSEC IS DOWN`` appear in real describe-vpn-connections output), ``LastStatusChange`` ("updated when changes
in IKE (Phase 1), IPSec (Phase 2), or BGP status are detected"). The tunnel activity log has
``TunnelIKEPhase1State`` / ``TunnelIKEPhase2State``, each Established|Rekeying|Negotiating|Down
(``ike-dpd.md`` §1.5).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from cgw_peer.events import routes_withdrawn, tunnel_down, tunnel_up
from emulator.actions import Action


class Status(StrEnum):
    UP = "UP"
    DOWN = "DOWN"


class PhaseState(StrEnum):
    """``TunnelIKEPhase1State`` / ``TunnelIKEPhase2State`` of the AWS tunnel activity log."""

    ESTABLISHED = "Established"
    REKEYING = "Rekeying"
    NEGOTIATING = "Negotiating"
    DOWN = "Down"


MSG_UP = "IPSEC IS UP"
MSG_DOWN = "IPSEC IS DOWN"

# AWS tunnel activity log lines (A-LOG, ike-dpd.md §1.2 and §1.5), reproduced verbatim.
LOG_IKEV1_PEER_DEAD = "Peer is not responsive - Declaring peer dead"
LOG_IKEV2_DPD_TIMEOUT = "AWS tunnel DPD timed out after {retry_count} retransmits"
LOG_DELETE_IKE_SA_FROM_CGW = "AWS tunnel received DELETE for IKE_SA from CGW"
LOG_CHILD_REKEY_COLLISION = "AWS tunnel detected a (CHILD_REKEY) collision as CHILD_DELETE"
LOG_REDUNDANT_CHILD_SA = "AWS tunnel (CHILD_SA) redundant SA is being deleted due to detected collision"
LOG_SENDING_CREATE_CHILD_SA = "AWS tunnel is sending request (id={id}) for CREATE_CHILD_SA"


@dataclass(slots=True)
class TunnelStatus:
    """What ``describe-vpn-connections`` (VgwTelemetry) and the tunnel log show for one tunnel."""

    status: Status = Status.DOWN
    status_message: str = MSG_DOWN
    last_status_change: float = 0.0
    """Virtual (or driver) time of the last change of status or of either phase state."""
    phase1_state: PhaseState = PhaseState.DOWN
    phase2_state: PhaseState = PhaseState.DOWN

    def update(self, now: float, *, up: bool, phase1: PhaseState, phase2: PhaseState) -> bool:
        """Apply a new state; returns True when something changed (and stamps ``last_status_change``)."""
        status = Status.UP if up else Status.DOWN
        if status == self.status and phase1 == self.phase1_state and phase2 == self.phase2_state:
            return False
        self.status = status
        self.status_message = MSG_UP if up else MSG_DOWN
        self.phase1_state = phase1
        self.phase2_state = phase2
        self.last_status_change = now
        return True

    def to_aws(self) -> dict[str, object]:
        """VgwTelemetry-shaped mapping (times as virtual seconds)."""
        return {
            "Status": self.status.value,
            "StatusMessage": self.status_message,
            "LastStatusChange": self.last_status_change,
            "TunnelIKEPhase1State": self.phase1_state.value,
            "TunnelIKEPhase2State": self.phase2_state.value,
        }


class TunnelState:
    """The tunnel's UP/DOWN machine: the one place that emits ``tunnel_up``, ``tunnel_down`` and
    ``routes_withdrawn``, exactly once per transition, and keeps :class:`TunnelStatus` in agreement with them.

    ::

        DOWN --(an SA pair / Child SA installed)--> UP          tunnel_up
        UP --(no usable SA pair left: reason)--> DOWN           tunnel_down(reason), routes_withdrawn(reason)

    Engines call :meth:`settle` whenever their SAs may have changed, with what is true now; a call that changes
    nothing emits nothing. The reason of a DOWN transition is the one given to :meth:`settle` or, when the change
    was caused earlier in the same input, the one noted with :meth:`cause`.
    """

    __slots__ = ("_cause", "status", "up")

    def __init__(self) -> None:
        self.status = TunnelStatus()
        self.up = False
        self._cause: str | None = None

    def cause(self, reason: str) -> None:
        """Note why the SAs are going away (used by the next DOWN transition)."""
        if self._cause is None:
            self._cause = reason

    def settle(
        self, now: float, up: bool, phase1: PhaseState, phase2: PhaseState, reason: str, out: list[Action]
    ) -> bool:
        """Apply the current state; append the transition events to ``out``. Returns whether UP changed."""
        self.status.update(now, up=up, phase1=phase1, phase2=phase2)
        if up == self.up:
            if up:
                self._cause = None
            return False
        self.up = up
        if up:
            self._cause = None
            out.append(tunnel_up())
        else:
            why = self._cause or reason
            self._cause = None
            out.append(tunnel_down(reason=why))
            out.append(routes_withdrawn(reason=why))
        return True
